"""A pushed version's automatic rollout, read back from the server's decision records: what
`mlops lineage`, `mlops history` and the run report say of it.

The embedded server's rollout loop (`serving/rollout/`) writes every decision it takes as a
JSON line in `<serving.base_directory>/rollouts/<model>/decisions.jsonl` (read here through
`serving.rollout.records`, the package that writes them): a start, one record per judged
interval with its checks, and the end (promoted or aborted, by the checks, by hand or because
the candidate did not load). This module is the pipeline's one reader of those lines: it
cuts them into each version's rollout and sums each up (`RolloutSummary`), so the three views
cannot tell different stories of the same rollout.

A version is rolled out once (the loop never retries a version it decided), but a serving
directory that was emptied and pushed to again numbers its versions anew: the newest rollout
of a version number is the one told.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Optional

from pipeline.definition.config import PipelineConfig
from serving.rollout.records import ABORTED, PROMOTED, RolloutFiles, RolloutState

IN_PROGRESS = "in progress"
ENDS = (PROMOTED, ABORTED)
FAIL = "fail"


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """One check of one interval, as the server judged it (`serving.rollout.checks.Check`)."""

    name: str  # error_rate | p99_ms | p99_vs_champion_ms | divergence | ...
    value: Optional[float]  # None: the window could not measure it
    threshold: Optional[float]
    verdict: str  # pass | fail | skip
    detail: str = ""  # what the value stands on, where the server said (a p-value, counts)

    @property
    def failed(self) -> bool:
        return self.verdict == FAIL


@dataclasses.dataclass(frozen=True)
class IntervalResult:
    """One judged interval: the candidate's weight during it, its checks and what followed."""

    number: int  # 1 for the rollout's first judged interval
    time: str  # ISO, UTC: when it was judged (its end)
    weight: float  # the candidate's share during the interval, per cent
    verdict: str  # pass | fail | hold (too few requests to judge)
    checks: list[CheckResult]
    champion_requests: int
    candidate_requests: int
    failed_intervals: int  # failed intervals of the rollout so far, this one included
    next: str  # step | stay | hold | promote | abort

    def failed_checks(self) -> list[str]:
        """The names of the checks that failed in this interval."""
        return [check.name for check in self.checks if check.failed]


@dataclasses.dataclass
class RolloutSummary:
    """How one version's rollout went (or goes), from its decision records."""

    version: int
    champion: Optional[int]  # the version it was compared with
    outcome: str  # promoted | aborted | in progress
    started_at: str  # ISO, UTC; "" when it never started (a candidate that did not load)
    ended_at: str  # ISO, UTC; "" while in progress
    by: str  # what ended it: checks | hand | load ("" while in progress)
    reason: str  # the server's sentence for the end ("" while in progress)
    failed_checks: list[str]  # an abort's: the checks that failed in the last interval
    intervals: list[IntervalResult]
    weight: Optional[float]  # the candidate's last share (now, in progress); None: no share
    start_weight: Optional[float] = None  # its first share; None: it never started

    @property
    def short(self) -> str:
        """A few words for a history line: "promoted 2026-03-02 12:03 (checks)", "aborted
        2026-03-02 12:05 (divergence)", "in progress 25 %"."""
        if self.outcome == IN_PROGRESS:
            return f"{IN_PROGRESS} {_percent(self.weight)}"
        blamed = ", ".join(self.failed_checks) if self.by == "checks" else ""
        return f"{self.outcome} {_when(self.ended_at, seconds=False)} ({blamed or self.by})"

    def headline(self) -> str:
        """The rollout in a sentence: the outcome, when, by what, on which checks, after how
        many intervals and at what weight (lineage's line, the report's first line)."""
        count = len(self.intervals)
        intervals = f"{count} interval{'' if count == 1 else 's'}"
        if self.outcome == IN_PROGRESS:
            return (f"{IN_PROGRESS} since {_when(self.started_at)}: {intervals}, now at "
                    f"{_percent(self.weight)}")
        on = (f" on {', '.join(self.failed_checks)}"
              if self.outcome == ABORTED and self.failed_checks else "")
        after = (f" after {intervals}, last weight {_percent(self.weight)}"
                 if self.weight is not None else " before it got any traffic")
        return f"{self.outcome} {_when(self.ended_at)} by {self.by}{on}{after}"

    def to_json(self) -> dict[str, Any]:
        """The summary for `--json` output, every interval's checks included."""
        return dataclasses.asdict(self)


def _when(iso: str, seconds: bool = True) -> str:
    """"2026-03-02T12:03:04+00:00" -> "2026-03-02 12:03:04 UTC" (the records' times are UTC)."""
    if not iso:
        return "(time unknown)"
    return iso[:19 if seconds else 16].replace("T", " ") + (" UTC" if seconds else "")


def _percent(weight: Optional[float]) -> str:
    return "?" if weight is None else f"{weight:g} %"


def _share(weight: Any) -> Optional[float]:
    return None if weight is None else float(weight)


def _interval(record: dict) -> IntervalResult:
    checks = [CheckResult(str(c.get("name", "?")), c.get("value"), c.get("threshold"),
                          str(c.get("verdict", "")), str(c.get("detail") or ""))
              for c in record.get("checks") or []]
    return IntervalResult(
        number=int(record.get("interval") or 0), time=str(record.get("time", "")),
        weight=float(record.get("weight") or 0.0), verdict=str(record.get("verdict", "")),
        checks=checks, champion_requests=int(record.get("champion_requests") or 0),
        candidate_requests=int(record.get("candidate_requests") or 0),
        failed_intervals=int(record.get("failed_intervals") or 0),
        next=str(record.get("next", "")))


def summarise(version: int, records: list[dict],
              state: Optional[RolloutState] = None) -> RolloutSummary:
    """One rollout's summary from its records, oldest first (`newest_rollouts` cuts them).

    `state` is the server's saved state: while this version's rollout runs, its weight is
    the one the last step set, which no record holds yet."""
    start = next((r for r in records if r.get("event") == "start"), {})
    judged = [r for r in records if r.get("event") == "interval"]
    intervals = [_interval(r) for r in judged]
    end = records[-1] if records and records[-1].get("event") in ENDS else {}
    # the champion met; an end record names the one after it (the candidate itself once
    # promoted), so it counts only for an abort before anything was judged
    first = start or (judged[0] if judged else end if end.get("event") == ABORTED else {})
    weight = intervals[-1].weight if intervals else start.get("weight")
    if not end and state is not None and state.running and state.candidate == version:
        weight = state.weight
    outcome = str(end.get("event", IN_PROGRESS))
    return RolloutSummary(
        version=version, champion=first.get("champion"), outcome=outcome,
        started_at=str(start.get("time", "")), ended_at=str(end.get("time", "")),
        by=str(end.get("by", "")), reason=str(end.get("reason", "")),
        failed_checks=intervals[-1].failed_checks() if outcome == ABORTED and intervals else [],
        intervals=intervals, weight=_share(weight), start_weight=_share(start.get("weight")))


def newest_rollouts(records: Iterable[dict]) -> dict[int, list[dict]]:
    """Each candidate's records of its newest rollout, oldest first.

    A rollout begins with its start record, or with any record after the candidate's last
    end (an abort because the candidate did not load has no start)."""
    current: dict[int, list[dict]] = {}
    for record in records:
        candidate = record.get("candidate") if isinstance(record, dict) else None
        if not isinstance(candidate, int) or isinstance(candidate, bool):
            continue  # not a decision of this format
        under_way = current.get(candidate)
        if record.get("event") == "start" or not under_way or \
                under_way[-1].get("event") in ENDS:
            current[candidate] = under_way = []
        under_way.append(record)
    return current


def rollouts(config: PipelineConfig) -> dict[int, RolloutSummary]:
    """Every version's newest rollout under the config's serving directory, by version
    (none where nothing was rolled out: rollouts off, another server, an object store).

    The decisions file is read once, for a history of a hundred pushes as for one version."""
    files = RolloutFiles(config.serving.base_directory, config.serving.model_name)
    try:
        state: Optional[RolloutState] = files.read_state()
    except (OSError, ValueError):
        state = None  # a damaged state file: the records still tell what happened
    try:
        found = newest_rollouts(files.decisions())
    except OSError:
        return {}  # unreadable here: the runs' own records still answer
    return {version: summarise(version, records, state) for version, records in found.items()}


def rollout(config: PipelineConfig, version: int) -> Optional[RolloutSummary]:
    """Version `version`'s newest rollout, or None when none was recorded."""
    return rollouts(config).get(version)
