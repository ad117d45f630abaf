"""What the data plane tells a rollout: per version, the requests of the current window.

The data plane asks `Monitor.watch` whether a bare-URL request of a model belongs to a
rollout, and if so reports its outcome: answered (latency, outputs, and for a keyed
one-row request its predicted class, which a label arriving later is joined to), failed by the
candidate and answered by the champion (the candidate's failure; the client never sees
it), or failed by both (the client's mistake, counted against neither). In shadow mode the
champion answers and `Watch.mirrors` says which requests the candidate also gets, its
answer only measured. Requests naming a version or a label bypass the split and are not
measured.

Recording runs on the event loop. With batching on, a measured request carries a
`Measurement` through the batch queue and the batcher reports each batch's measured
requests in one call (`Monitor.answered_batch`): their latencies, the batch's output rows,
the keyed answers' predicted classes. Why: reported one by one, a request's bookkeeping
cost the running server's event loop about 10 µs (2 µs in a loop of them alone: amid the
server's other work the caches are cold), about 5 % of its time; per batch, about half
of that (docs/performance.md, "Where a rollout's cost is"). Requests that run outside a
batch are reported one by one (`answered`). The controller's thread takes the finished
window whole (`take`) under a lock.
"""
from __future__ import annotations

import array
import collections
import dataclasses
import math
import random
import threading
import time
from typing import Mapping, Optional

import numpy as np

from serving.labels import predicted_label
from serving.traffic import bucket

# The output whose distribution is compared, by the names TF Serving's APIs give it.
DIVERGENCE_OUTPUTS = ("scores", "probabilities", "outputs", "predictions")
MAX_SAMPLED_ROWS = 20_000  # output rows sampled per version and window (uniformly)
MAX_AWAITING_LABELS = 200_000  # keyed answers remembered per model until labelled (newest)


@dataclasses.dataclass
class VersionWindow:
    """One version's measurements over one window."""

    requests: int = 0  # measured requests that reached this version
    failed: int = 0  # (candidate) failed, and the champion answered: its own fault
    client_errors: int = 0  # failed on both versions: not counted against either
    # Answered calls' seconds, as doubles: a list kept a float object per request alive
    # through the window, scattering the allocator's small blocks on the event loop.
    latencies_s: array.array = dataclasses.field(default_factory=lambda: array.array("d"))
    sampled_rows: int = 0
    # A uniform sample of the compared output's rows over the whole window (at most
    # MAX_SAMPLED_ROWS) as flat doubles, `sample_width` per row, copied in through Python
    # floats: numpy's casting copy releases the GIL, and on the event loop's thread each
    # release hands it to a waiting model thread (docs/performance.md, "A rollout in
    # progress").
    sample: array.array = dataclasses.field(default_factory=lambda: array.array("d"),
                                            repr=False)
    sample_width: int = 0
    _reservoir: Optional["_Reservoir"] = dataclasses.field(default=None, repr=False)

    def add_outputs(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Offers an answer's compared output (`divergence_values`'s choice) to the
        window's sample; rows of another width than the first sampled (another
        signature's output) are left out.

        The sample is a reservoir: every row answered in the window is equally likely to
        be in it, so two versions' samples cover the same seconds whatever their shares.
        (Samples of the first rows would not: at 10 % the champion's fills in the
        window's first seconds while the candidate's spans all of it, and traffic that
        changes during the window would read as the versions' divergence.) Once full, a
        row costs a countdown: replacements are drawn by skipping ahead (`_Reservoir`).
        """
        reservoir = self._reservoir
        values = _compared_output(outputs)
        if values is None:
            return
        rows = len(values)
        width = values.size // rows
        if reservoir is not None and reservoir.skip >= rows:  # the common case when full
            if width == self.sample_width:
                reservoir.skip -= rows
            return
        if not self.sample_width:
            self.sample_width = width
        elif width != self.sample_width:
            return
        taken = min(rows, MAX_SAMPLED_ROWS - self.sampled_rows)
        if taken:
            self.sample.extend(values[:taken].ravel().tolist())
            self.sampled_rows += taken
            if self.sampled_rows < MAX_SAMPLED_ROWS:
                return
            reservoir = self._reservoir = _Reservoir(MAX_SAMPLED_ROWS)
        row, replaced = taken, {}
        while row + reservoir.skip < rows:
            row += reservoir.skip
            replaced[reservoir.slot()] = row  # a slot drawn twice keeps the later row
            row += 1
            reservoir.next_skip()
        reservoir.skip -= rows - row
        if replaced:
            answered = values.reshape(rows, width).tolist()
            for slot, row in replaced.items():
                self.sample[slot * width:(slot + 1) * width] = array.array("d", answered[row])

    def output_rows(self) -> np.ndarray:
        """The sampled output rows, (rows, columns) as floats; empty when none was sampled."""
        if not self.sampled_rows:
            return np.zeros((0, 1))
        return np.frombuffer(self.sample, np.float64).reshape(self.sampled_rows,
                                                              self.sample_width)


class _Reservoir:
    """Which rows replace which once a sample of `size` rows is full: Li's Algorithm L
    (ACM TOMS 20(4), 1994), which draws how many rows to pass over before the next
    replacement, so a passed-over row costs a subtraction rather than a random draw.

    Skips and slots are drawn `_BLOCK` at a time, the arithmetic in numpy: in a window
    of a minute at thousands of rows a second, about a third of the rows replace one,
    and drawn one by one in Python (three random numbers, four logarithms or exponentials)
    the draws were most of the rollout's bookkeeping on the event loop. The uniforms
    come from Python's `random`: numpy's generators release the GIL, and on the event
    loop each release hands it to a waiting model thread.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.weight = math.exp(math.log(_uniform()) / size)
        self._skips: list[int] = []  # drawn ahead, next last
        self._slots: list[int] = []
        self.skip = 0
        self.next_skip()

    def next_skip(self) -> None:
        """Draws the rows to pass over before the next replacement."""
        if not self._skips:
            self._draw_skips()
        self.skip = self._skips.pop()

    def slot(self) -> int:
        """The sampled row the next one replaces, uniformly."""
        if not self._slots:
            uniforms = np.array([random.random() for _ in range(_BLOCK)])
            self._slots = (uniforms * self.size).astype(np.int64).tolist()
        return self._slots.pop()

    def _draw_skips(self) -> None:
        """The next `_BLOCK` skips: skip i = floor(ln V_i / ln(1 - W_i)), then
        W_(i+1) = W_i * U_i^(1/size), with U, V uniform on (0, 1]."""
        uniforms = np.array([_uniform() for _ in range(2 * _BLOCK)]).reshape(2, _BLOCK)
        steps = np.cumsum(np.log(uniforms[0]) / self.size)
        weights = self.weight * np.exp(np.concatenate(([0.0], steps)))
        skips = np.floor(np.log(uniforms[1]) / np.log1p(-weights[:-1]))
        self.weight = float(weights[-1])
        self._skips = skips.astype(np.int64)[::-1].tolist()


_BLOCK = 256  # reservoir draws made at a time


def _uniform() -> float:
    return random.random() or 5e-324  # log(0) is undefined; 0.0 is 1 in 2**53


def _compared_output(outputs: Mapping[str, np.ndarray]) -> Optional[np.ndarray]:
    """The output that stands for the prediction, as given (see `divergence_values`)."""
    for name in DIVERGENCE_OUTPUTS:
        values = outputs.get(name)
        if values is not None and _numeric(values):
            return values
    for name in sorted(outputs):
        if _numeric(outputs[name]):
            return outputs[name]
    return None


def _numeric(values) -> bool:
    return isinstance(values, np.ndarray) and values.dtype.kind in "fiu" and \
        values.ndim >= 1 and values.size > 0


def divergence_values(outputs: Mapping[str, np.ndarray]) -> Optional[np.ndarray]:
    """The rows of the output that stands for the prediction, as floats (rows, columns):
    `scores` (classify, and this project's predict signature), else `probabilities`,
    `outputs` (regress), `predictions`, else the first numeric output; None when none."""
    values = _compared_output({name: np.asarray(value) for name, value in outputs.items()})
    return None if values is None else values.reshape(len(values), -1).astype(np.float64)


@dataclasses.dataclass
class Tally:
    """One version's labelled answers since its rollout began (labels come late, so
    they are counted over the whole rollout, not per window)."""

    labelled: int = 0
    correct: int = 0

    @property
    def accuracy(self) -> Optional[float]:
        return self.correct / self.labelled if self.labelled else None


@dataclasses.dataclass(frozen=True)
class Watch:
    """A measured request's rollout: which version is the champion, which the candidate,
    and (shadow mode) the share of requests also sent to the candidate."""

    model_name: str
    champion: int
    candidate: int
    mirror: float = 0.0  # per cent; 0 outside shadow mode

    def mirrors(self, key: Optional[str]) -> bool:
        """Whether the champion's request is also sent to the candidate: by the key's
        bucket (the same keys as the canary split would pick), else at random."""
        if self.mirror <= 0:
            return False
        point = bucket(self.model_name, key) if key else random.random() * 100
        return point < self.mirror


class Measurement:
    """A bare-URL request measured for a rollout, from its routing (`started`,
    `time.perf_counter()`) to its answer; the data plane hands it to the batcher with the
    request, and the batch that answers it records it (`Monitor.answered_batch`): then
    `recorded` is set, with the rollout it was measured for (`watch`; None when the version
    that answered is in none)."""

    __slots__ = ("started", "key", "recorded", "watch")

    def __init__(self, started: float, key: Optional[str]) -> None:
        self.started = started
        self.key = key
        self.recorded = False
        self.watch: Optional[Watch] = None


class Monitor:
    """The windows of the models in a rollout, filled by the data plane, taken by the
    controller. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rollouts: dict[str, Watch] = {}
        self._windows: dict[tuple[str, int], VersionWindow] = {}
        # request key -> (version, predicted label), oldest first, for labels arriving later
        self._awaiting: dict[str, collections.OrderedDict] = {}
        self._tallies: dict[tuple[str, int], Tally] = {}

    # --- the controller's side ------------------------------------------------------------

    def begin(self, model_name: str, champion: int, candidate: int,
              mirror: float = 0.0) -> None:
        """Starts measuring a model's rollout (empty windows); `mirror`: shadow mode's share."""
        with self._lock:
            self._rollouts[model_name] = Watch(model_name, champion, candidate, mirror)
            self._windows[(model_name, champion)] = VersionWindow()
            self._windows[(model_name, candidate)] = VersionWindow()
            self._awaiting[model_name] = collections.OrderedDict()
            self._tallies[(model_name, champion)] = Tally()
            self._tallies[(model_name, candidate)] = Tally()

    def set_mirror(self, model_name: str, mirror: float) -> None:
        """Changes shadow mode's share (a step), keeping the windows."""
        with self._lock:
            watch = self._rollouts.get(model_name)
            if watch is not None:
                self._rollouts[model_name] = dataclasses.replace(watch, mirror=mirror)

    def end(self, model_name: str) -> None:
        """Stops measuring a model (promoted, aborted, or the server stops)."""
        with self._lock:
            watch = self._rollouts.pop(model_name, None)
            if watch is not None:
                for version in (watch.champion, watch.candidate):
                    self._windows.pop((model_name, version), None)
                    self._tallies.pop((model_name, version), None)
            self._awaiting.pop(model_name, None)

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

    def quality(self, model_name: str) -> Optional[tuple[Tally, Tally]]:
        """(champion's, candidate's) labelled answers since the rollout began."""
        with self._lock:
            watch = self._rollouts.get(model_name)
            if watch is None:
                return None
            return (dataclasses.replace(self._tallies[(model_name, watch.champion)]),
                    dataclasses.replace(self._tallies[(model_name, watch.candidate)]))

    def label(self, model_name: str, key: str, label: str) -> bool:
        """Joins a label to the keyed answer it labels; True when one was waiting (each
        answer is counted once; a label for an unknown key is not an error: it may label
        a request outside the rollout, or one answered before the server restarted)."""
        with self._lock:
            awaiting = self._awaiting.get(model_name)
            found = awaiting.pop(key, None) if awaiting is not None else None
            if found is None:
                return False
            version, predicted = found
            tally = self._tallies.get((model_name, version))
            if tally is None:
                return False
            tally.labelled += 1
            tally.correct += predicted == label
            return True

    # --- the data plane's side ------------------------------------------------------------

    def watching(self, model_name: str) -> bool:
        """Whether a rollout of the model is being measured (the data plane's first,
        cheapest question)."""
        return model_name in self._rollouts

    def watch(self, model_name: str, version: int) -> Optional[Watch]:
        """The rollout a request answered by `version` belongs to, or None (not measured)."""
        watch = self._rollouts.get(model_name)
        if watch is None or version not in (watch.champion, watch.candidate):
            return None
        return watch

    def answered(self, watch: Watch, version: int, seconds: float,
                 outputs: Mapping[str, np.ndarray], key: Optional[str] = None) -> None:
        """`version` answered a measured request in `seconds` with `outputs`; a keyed
        one-row answer waits for its label (`label`)."""
        predicted = predicted_label(outputs) if key else None
        with self._lock:
            window = self._windows.get((watch.model_name, version))
            if window is None:
                return
            window.requests += 1
            window.latencies_s.append(seconds)
            window.add_outputs(outputs)
            if predicted is not None:
                self._await_labels(watch.model_name, version, [(key, predicted)])

    def answered_batch(self, servable, outputs: Mapping[str, np.ndarray],
                       measured: list[tuple[Measurement, int, int]]) -> None:
        """A batch of `servable` (`.name`, `.version`) answered: `outputs` are the batch's
        rows (padding cut off), `measured` its requests measured for the rollout, each with
        the offset and count of its rows. Each is recorded as `answered` would (latency
        until now, output rows, a keyed one-row answer's predicted class) and marked
        `recorded`, in one pass under the lock."""
        now = time.perf_counter()
        watch = self.watch(servable.name, servable.version)
        for measurement, _, _ in measured:
            measurement.recorded, measurement.watch = True, watch
        if watch is None:
            return
        keyed = [(measurement.key, predicted_label(_rows(outputs, offset, rows)))
                 for measurement, offset, rows in measured if measurement.key and rows == 1]
        with self._lock:
            window = self._windows.get((watch.model_name, servable.version))
            if window is None:
                return
            window.requests += len(measured)
            window.latencies_s.extend([now - measurement.started
                                       for measurement, _, _ in measured])
            if sum(rows for _, _, rows in measured) == _batch_rows(outputs):
                window.add_outputs(outputs)  # every row measured: the common case
            else:  # requests naming the version shared the batch: their rows left out
                for _, offset, rows in measured:
                    window.add_outputs(_rows(outputs, offset, rows))
            if keyed:
                self._await_labels(watch.model_name, servable.version, keyed)

    def _await_labels(self, model_name: str, version: int,
                      keyed: list[tuple[str, Optional[str]]]) -> None:
        """Remembers keyed answers' predicted classes (None: not one row of scores) for
        the labels arriving later, the newest MAX_AWAITING_LABELS; under the lock."""
        awaiting = self._awaiting[model_name]
        for key, predicted in keyed:
            if predicted is not None:
                awaiting[key] = (version, predicted)
        while len(awaiting) > MAX_AWAITING_LABELS:
            awaiting.popitem(last=False)

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


def _rows(outputs: Mapping[str, np.ndarray], offset: int, rows: int) -> dict:
    """One request's rows of a batch's outputs."""
    return {name: values[offset:offset + rows] for name, values in outputs.items()}


def _batch_rows(outputs: Mapping[str, np.ndarray]) -> int:
    return len(next(iter(outputs.values()))) if outputs else 0
