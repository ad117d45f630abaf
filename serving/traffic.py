"""The canary traffic split: bare-URL requests shared between two labelled versions.

TF Serving's ``ModelServerConfig`` has no weights, so the split lives in a small sidecar
file beside ``models.config``, ``traffic_split.json``, written atomically by ``mlops
canary / promote / abort`` and re-read by the embedded server on the same poll as
``models.config`` (``--model_config_file_poll_wait_seconds``)::

    {"models": {"chicago-taxi": {"canary_weight": 10}}}

An entry for a model means: requests that name neither a version nor a label follow the
labels ``stable`` and ``canary`` of ``models.config`` (``canary_weight`` per cent to the
canary, the rest to stable) instead of going to the newest version. A label whose version
is not loaded is left out (no canary: everything to stable; no stable: the newest
version, as without an entry). Requests naming a version or a label bypass the split.

A request key (REST header ``X-Request-Key``, gRPC metadata ``x-request-key``) makes the
choice sticky: the key's BLAKE2b hash, not Python's per-process ``hash()``, puts it in one
of 10,000 buckets, the same on every server and after every restart; raising the weight
only moves keys from stable to the canary, never back. Requests without a key are drawn at
random, or, with batching on, go in runs (``Router(run_length=max_batch_size)``): to one
version in a row until its batch leaves for the model (``batch_dispatched``, which the
batcher calls) or ``run_length`` were sent, each run to the version furthest below its
share. So the share is exact to a run, and each version's batches fill as if it were
served alone: drawn one by one, or in runs of a fixed length that cut across batches, each
version's batches are smaller (`make bench-serving-options`).
``tensorflow_model_server`` reads no such file: it serves its newest version.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import random
from pathlib import Path
from typing import Mapping, Optional

from serving.errors import invalid_argument

log = logging.getLogger("serving.traffic")

SPLIT_FILE = "traffic_split.json"
STABLE_LABEL = "stable"
CANARY_LABEL = "canary"
REQUEST_KEY_HEADER = "x-request-key"  # REST header and gRPC metadata key (lower case)
_BUCKETS = 10_000


@dataclasses.dataclass(frozen=True)
class Split:
    """One model's split: the share (per cent) of bare-URL requests sent to the canary."""

    canary_weight: float = 0.0


def split_path(model_config_file: str | Path) -> Path:
    """The sidecar beside a models.config."""
    return Path(model_config_file).with_name(SPLIT_FILE)


def parse_splits(text: str, source: str) -> dict[str, Split]:
    """Model name -> Split from the file's JSON; a wrong file is one clear error.

    Raises:
        ServingError: INVALID_ARGUMENT, naming `source`, when the text is not JSON, is not
            `{"models": {...}}` with no other key, or a model's entry is not exactly
            `{"canary_weight": N}` with N a number from 0 to 100 (not a bool).
    """
    try:
        document = json.loads(text)
    except ValueError as err:
        raise invalid_argument(f"{source}: not JSON: {err}") from None
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, dict) or set(document) != {"models"}:
        raise invalid_argument(f'{source}: expected {{"models": {{"<model>": '
                               '{"canary_weight": <0..100>}}}')
    splits = {}
    for name, entry in models.items():
        weight = entry.get("canary_weight") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or set(entry) != {"canary_weight"} or \
                isinstance(weight, bool) or not isinstance(weight, (int, float)) or \
                not 0 <= weight <= 100:
            raise invalid_argument(f"{source}: model {name!r}: expected "
                                   '{"canary_weight": <a number from 0 to 100>}')
        splits[name] = Split(float(weight))
    return splits


def read_splits(path: str | Path) -> dict[str, Split]:
    """The splits in ``path``; none when the file does not exist.

    Raises:
        ServingError: INVALID_ARGUMENT when the file exists but cannot be read, or for
            `parse_splits`'s reasons.
    """
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise invalid_argument(f"cannot read {path}: {err.strerror}") from None
    return parse_splits(text, str(path))


def write_splits(path: str | Path, splits: Mapping[str, Split]) -> None:
    """Replaces the file atomically (a polling server never reads half of it); no splits
    left removes it."""
    path = Path(path)
    if not splits:
        path.unlink(missing_ok=True)
        return
    document = {"models": {name: {"canary_weight": _number(split.canary_weight)}
                           for name, split in sorted(splits.items())}}
    staging = path.with_name(f".{path.name}.writing")
    staging.write_text(json.dumps(document, indent=1) + "\n")
    os.replace(staging, path)


def _number(weight: float):
    return int(weight) if float(weight).is_integer() else weight


def bucket(model_name: str, key: str) -> float:
    """Where a request key falls, in [0, 100): stable across processes and restarts."""
    digest = hashlib.blake2b(f"{model_name}\0{key}".encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    return (int.from_bytes(digest, "big") % _BUCKETS) * 100 / _BUCKETS


@dataclasses.dataclass
class _Runs:
    """Where a model's unkeyed requests stand: the run under way and what each side got
    since the split last changed."""

    to_canary: bool = False
    version: Optional[int] = None  # where the current run goes
    left: int = 0  # requests the current run may still take
    sent: int = 0
    sent_to_canary: int = 0

    def next_goes_to_canary(self, weight: float, run_length: int) -> bool:
        if self.left <= 0:
            # The canary takes the next run while it is below its share, counting the
            # request at hand (a run may end after any request: `Router.batch_dispatched`).
            self.to_canary = self.sent_to_canary * 100 < weight * (self.sent + 1)
            self.left = run_length
        self.left -= 1
        self.sent += 1
        self.sent_to_canary += self.to_canary
        return self.to_canary


class Router:
    """The splits the server applies, swapped whole when the file changes.

    ``run_length``: how many requests without a key go to one version in a row at most
    (1: each drawn at random); the server gives its ``max_batch_size`` when batching is
    on, and its batcher ends a run early when the run's version's batch is dispatched.
    """

    def __init__(self, splits: Optional[Mapping[str, Split]] = None,
                 run_length: int = 1) -> None:
        self._splits: dict[str, Split] = dict(splits or {})
        self._random = random.Random()
        self.run_length = max(1, run_length)
        self._runs: dict[str, _Runs] = {}

    @property
    def splits(self) -> dict[str, Split]:
        """A copy of the running splits: a caller cannot change them but through `update`."""
        return dict(self._splits)

    def update(self, splits: Mapping[str, Split]) -> bool:
        """Applies new splits; True when they differ from the running ones."""
        splits = dict(splits)
        if splits == self._splits:
            return False
        self._splits = splits
        self._runs.clear()  # shares count from the new weights, not the old ones
        return True

    def choose(self, model_name: str, labels: Mapping[str, int],
               key: Optional[str] = None) -> Optional[int]:
        """The version a bare-URL request goes to, or None for the default (the newest).

        ``labels`` are the model's served labels (those on loaded versions).
        """
        split = self._splits.get(model_name)
        if split is None:
            return None
        stable = labels.get(STABLE_LABEL)
        canary = labels.get(CANARY_LABEL)
        if stable is None:
            return canary if canary is not None and split.canary_weight >= 100 else None
        if canary is None or canary == stable or split.canary_weight <= 0:
            return stable
        if split.canary_weight >= 100:
            return canary
        if key:
            return canary if bucket(model_name, key) < split.canary_weight else stable
        if self.run_length > 1:
            runs = self._runs.get(model_name)
            if runs is None:
                runs = self._runs[model_name] = _Runs()
            runs.version = canary if runs.next_goes_to_canary(split.canary_weight,
                                                              self.run_length) else stable
            return runs.version
        return canary if self._random.random() * 100 < split.canary_weight else stable

    def batch_dispatched(self, servable) -> None:
        """A batch of `servable` (a model version: `.name`, `.version`) left its queue for
        the model: a run to that version ends here, so the next request starts a new run,
        and a new batch, instead of joining a queue that is no longer filling. The batcher
        calls it (`Batcher(on_dispatch=...)`), on the event loop, like `choose`."""
        runs = self._runs.get(servable.name)
        if runs is not None and runs.version == servable.version:
            runs.left = 0
