"""What the data plane tells a rollout: per version, the requests of the current window.

The data plane asks `Monitor.watch` whether a bare-URL request of a model belongs to a
rollout, and if so reports its outcome: answered (latency, outputs), failed by the
candidate and answered by the champion (the candidate's failure; the client never sees
it), or failed by both (the client's mistake, counted against neither). Requests naming a
version or a label bypass the split and are not measured.

Recording runs on the event loop for every measured request, so it is a few appends; the
controller's thread takes the finished window whole (`take`) under a lock.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Mapping, Optional

import numpy as np

# The output whose distribution is compared, by the names TF Serving's APIs give it.
DIVERGENCE_OUTPUTS = ("scores", "probabilities", "outputs", "predictions")
MAX_SAMPLED_ROWS = 20_000  # output rows kept per version and window (the first ones)


@dataclasses.dataclass
class VersionWindow:
    """One version's measurements over one window."""

    requests: int = 0  # measured requests that reached this version
    failed: int = 0  # (candidate) failed, and the champion answered: its own fault
    client_errors: int = 0  # failed on both versions: not counted against either
    latencies_s: list = dataclasses.field(default_factory=list)  # answered calls
    outputs: list = dataclasses.field(default_factory=list)  # 2-D float arrays, rows
    sampled_rows: int = 0

    def add_outputs(self, outputs: Mapping[str, np.ndarray]) -> None:
        if self.sampled_rows >= MAX_SAMPLED_ROWS:
            return
        values = divergence_values(outputs)
        if values is not None:
            self.outputs.append(values)
            self.sampled_rows += len(values)

    def output_rows(self) -> np.ndarray:
        """The sampled output rows, (rows, columns); empty when none was sampled."""
        if not self.outputs:
            return np.zeros((0, 1))
        widths = {array.shape[1] for array in self.outputs}
        width = max(widths)
        return np.concatenate([array for array in self.outputs if array.shape[1] == width])


def divergence_values(outputs: Mapping[str, np.ndarray]) -> Optional[np.ndarray]:
    """The rows of the output that stands for the prediction, as floats (rows, columns):
    `scores` (classify, and this project's predict signature), else `probabilities`,
    `outputs` (regress), `predictions`, else the first numeric output; None when none."""
    names = [name for name in DIVERGENCE_OUTPUTS if name in outputs] + sorted(outputs)
    for name in names:
        array = np.asarray(outputs[name])
        if array.dtype.kind in "fiu" and array.ndim >= 1 and array.size:
            return array.reshape(array.shape[0], -1).astype(np.float64)
    return None


@dataclasses.dataclass(frozen=True)
class Watch:
    """A measured request's rollout: which version is the champion, which the candidate."""

    model_name: str
    champion: int
    candidate: int


class Monitor:
    """The windows of the models in a rollout, filled by the data plane, taken by the
    controller. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rollouts: dict[str, Watch] = {}
        self._windows: dict[tuple[str, int], VersionWindow] = {}

    # --- the controller's side ------------------------------------------------------------

    def begin(self, model_name: str, champion: int, candidate: int) -> None:
        """Starts measuring a model's rollout (empty windows)."""
        with self._lock:
            self._rollouts[model_name] = Watch(model_name, champion, candidate)
            self._windows[(model_name, champion)] = VersionWindow()
            self._windows[(model_name, candidate)] = VersionWindow()

    def end(self, model_name: str) -> None:
        """Stops measuring a model (promoted, aborted, or the server stops)."""
        with self._lock:
            watch = self._rollouts.pop(model_name, None)
            if watch is not None:
                self._windows.pop((model_name, watch.champion), None)
                self._windows.pop((model_name, watch.candidate), None)

    def take(self, model_name: str) -> Optional[tuple[VersionWindow, VersionWindow]]:
        """(champion's, candidate's) windows since the last take; new ones start now."""
        with self._lock:
            watch = self._rollouts.get(model_name)
            if watch is None:
                return None
            taken = (self._windows[(model_name, watch.champion)],
                     self._windows[(model_name, watch.candidate)])
            self._windows[(model_name, watch.champion)] = VersionWindow()
            self._windows[(model_name, watch.candidate)] = VersionWindow()
            return taken

    # --- the data plane's side ------------------------------------------------------------

    def watch(self, model_name: str, version: int) -> Optional[Watch]:
        """The rollout a request answered by `version` belongs to, or None (not measured)."""
        watch = self._rollouts.get(model_name)
        if watch is None or version not in (watch.champion, watch.candidate):
            return None
        return watch

    def answered(self, watch: Watch, version: int, seconds: float,
                 outputs: Mapping[str, np.ndarray]) -> None:
        """`version` answered a measured request in `seconds` with `outputs`."""
        with self._lock:
            window = self._windows.get((watch.model_name, version))
            if window is None:
                return
            window.requests += 1
            window.latencies_s.append(seconds)
            window.add_outputs(outputs)

    def failed(self, watch: Watch, version: int, by_client: bool) -> None:
        """`version` failed a measured request; `by_client`: the champion failed it too."""
        with self._lock:
            window = self._windows.get((watch.model_name, version))
            if window is None:
                return
            window.requests += 1
            if by_client:
                window.client_errors += 1
            else:
                window.failed += 1
