"""A rollout's files: its state, its decisions, and the pause marker.

They live in the serving directory, beside the models.config the rollout edits
(`<base>/rollouts/<model>/`): the state is what a restarted server resumes from, the
decisions (one JSON line per interval and per transition) are the record `mlops rollout
status` and `mlops history` show, and the pause marker is how `mlops rollout pause` reaches
a running server without a port of its own. Plain JSON, readable without this package.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional

IDLE, PROGRESSING, HOLDING, PROMOTED, ABORTED = (
    "idle", "progressing", "holding", "promoted", "aborted")
STATES = (IDLE, PROGRESSING, HOLDING, PROMOTED, ABORTED)
ROLLOUTS_FOLDER = "rollouts"


def now_iso() -> str:
    """UTC, to the second: what every record's `time` holds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class RolloutState:
    """Where one model's rollout stands.

    `candidate` is set while a rollout runs (progressing or holding); after it ends the
    state keeps the outcome (promoted or aborted) and `decided` remembers the version, so a
    candidate aborted once is not tried again until a newer version is pushed.
    """

    model_name: str
    state: str = IDLE
    champion: Optional[int] = None
    candidate: Optional[int] = None
    step: int = 0  # index into the policy's steps
    weight: float = 0.0  # the candidate's share now, per cent
    intervals: int = 0  # judged intervals of the running rollout
    failed_intervals: int = 0
    started_at: Optional[str] = None
    updated_at: Optional[str] = None
    reason: str = ""  # why the state is what it is, in a sentence
    decided: list[int] = dataclasses.field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.candidate is not None and self.state in (PROGRESSING, HOLDING)


class RolloutFiles:
    """The files of one model's rollout under a serving directory."""

    def __init__(self, base_directory: str | Path, model_name: str) -> None:
        self.model_name = model_name
        self.folder = Path(base_directory) / ROLLOUTS_FOLDER / model_name
        self.state_file = self.folder / "state.json"
        self.decisions_file = self.folder / "decisions.jsonl"
        self.pause_file = self.folder / "paused"
        self.checks_folder = self.folder / "checks"

    def read_state(self) -> RolloutState:
        """The saved state, or an idle one before the first rollout.

        Raises:
            ValueError: the state file is not a state this package wrote (named in the
                message).
        """
        if not self.state_file.exists():
            return RolloutState(self.model_name)
        try:
            fields = json.loads(self.state_file.read_text())
            return RolloutState(**fields)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{self.state_file}: not a rollout state ({err})") from None

    def write_state(self, state: RolloutState) -> None:
        """Replaces the state file whole (a reader never sees half of one)."""
        state.updated_at = now_iso()
        _write_atomically(self.state_file, json.dumps(dataclasses.asdict(state), indent=1))

    def append_decision(self, record: dict) -> None:
        """Adds one decision record (a line), stamped with the time and model."""
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": now_iso(), "model": self.model_name, **record})
        with open(self.decisions_file, "a", encoding="utf-8") as out:
            out.write(line + "\n")

    def decisions(self, candidate: Optional[int] = None) -> Iterator[dict]:
        """The decision records, oldest first (only `candidate`'s when given); a line cut
        short by a crash is skipped."""
        if not self.decisions_file.exists():
            return
        with open(self.decisions_file, encoding="utf-8") as lines:
            for line in lines:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if candidate is None or record.get("candidate") == candidate:
                    yield record

    def write_external_check(self, candidate: int, check: dict) -> Path:
        """Records a check judged outside the server (e.g. `mlops skew --rollout`: TFDV
        on the request log against the candidate's training data) for the loop to count
        in its next interval; the newest per check name wins. `check` has the keys of
        `checks.Check` (name, value, threshold, verdict, detail)."""
        path = self.checks_folder / f"{check['name']}.json"
        _write_atomically(path, json.dumps({"candidate": candidate, "time": now_iso(),
                                            "check": check}, indent=1))
        return path

    def external_checks(self, candidate: int, since: Optional[str]) -> list[dict]:
        """The outside checks recorded for `candidate` at or after `since` (ISO time: the
        rollout's start, so an earlier rollout's verdict is never reused); unreadable
        files are skipped."""
        found = []
        for path in sorted(self.checks_folder.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if not isinstance(record, dict) or not isinstance(record.get("check"), dict):
                continue
            if record.get("candidate") == candidate and (since is None or
                                                         record.get("time", "") >= since):
                found.append(record["check"])
        return found

    def status(self) -> dict:
        """What `mlops rollout status --json` prints: the state, whether it is paused, and
        the decisions of the running rollout (else of the last one).

        Raises:
            ValueError: as `read_state`.
        """
        state = self.read_state()
        latest = state.candidate if state.candidate is not None else (
            state.decided[-1] if state.decided and state.state in (PROMOTED, ABORTED)
            else None)
        decisions = list(self.decisions(latest)) if latest is not None else []
        return {"model": self.model_name, **dataclasses.asdict(state),
                "paused": self.paused, "decisions": decisions}

    @property
    def paused(self) -> bool:
        return self.pause_file.exists()

    def pause(self) -> bool:
        """Marks the rollout paused; False when it already was."""
        if self.paused:
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pause_file.write_text(now_iso() + "\n")
        return True

    def resume(self) -> bool:
        """Removes the pause marker; False when there was none."""
        try:
            self.pause_file.unlink()
            return True
        except FileNotFoundError:
            return False


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
