"""What the data plane tells a rollout: per version, the requests of the current window.

The data plane asks `Monitor.watch` whether a bare-URL request of a model belongs to a
rollout, and if so reports its outcome: answered (latency, outputs, and for a keyed
one-row request its predicted class, which a label arriving later is joined to), failed by the
candidate and answered by the champion (the candidate's failure; the client never sees
it), or failed by both (the client's mistake, counted against neither). In shadow mode the
champion answers and `Watch.mirrors` says which requests the candidate also gets, its
answer only measured. Requests naming a version or a label bypass the split and are not
measured.

An answer is queued as it is reported and recorded into its window later, many at once
(`Monitor.record`): every `RECORD_EVERY` answers, and before anything reads the windows
(`take`, `quality`, `label`). Why: recorded one by one, the rollout's bookkeeping (above
all the output sample's replacements, a few Python calls each) cost the running server's
event loop 3-7 µs per request; recorded together, the sample takes their rows in a few
array operations (docs/performance.md, "A rollout's answers recorded together"). With
batching on, a measured request carries a `Measurement` through the batch queue and the
batcher reports each batch's measured requests in one call (`Monitor.answered_batch`);
requests that run outside a batch are reported one by one (`answered`). Failures are
counted at once. In a busy window only a share of the requests is measured, every one
counted (`Monitor.measures`, `counted`). The controller's thread takes the finished
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
from typing import Callable, Mapping, Optional

import numpy as np

from serving.labels import predicted_label
from serving.traffic import bucket

# The output whose distribution is compared, by the names TF Serving's APIs give it.
DIVERGENCE_OUTPUTS = ("scores", "probabilities", "outputs", "predictions")
MAX_SAMPLED_ROWS = 20_000  # output rows sampled per version and window (uniformly)
MAX_AWAITING_LABELS = 200_000  # keyed answers remembered per model until labelled (newest)
# Answers queued before the data plane records them, all at once: per answer, the cost
# of a record falls with their number until about this many (a batch of requests, or one
# alone, is an answer).
RECORD_EVERY = 64
# Requests the busier version measures (latency, output rows) in a window, about: in a
# busy window a uniform share of the requests is measured (`Monitor.measures`), the same
# for both versions, decided once the busier has measured CALIBRATION, from its rate so
# far. Every request is still counted. Why: measuring every request cost a busy server
# several per cent of its throughput (docs/performance.md, "Measuring a share of a busy
# window's requests").
MEASURED_PER_WINDOW = 20_000
CALIBRATION = 2_000


@dataclasses.dataclass
class VersionWindow:
    """One version's measurements over one window."""

    requests: int = 0  # requests that reached this version (measured or only counted)
    failed: int = 0  # (candidate) failed, and the champion answered: its own fault
    client_errors: int = 0  # failed on both versions: not counted against either
    # Answered calls' seconds, as doubles (a float object per request would be kept alive
    # through the window).
    latencies_s: array.array = dataclasses.field(default_factory=lambda: array.array("d"))
    sampled_rows: int = 0
    sample_width: int = 0
    # A uniform sample of the compared output's rows over the whole window: the first
    # `sampled_rows` rows, `sample_width` columns (allocated with the first row).
    _sample: Optional[np.ndarray] = dataclasses.field(default=None, repr=False)
    _reservoir: Optional["_Reservoir"] = dataclasses.field(default=None, repr=False)

    def add_outputs(self, outputs: Mapping[str, np.ndarray]) -> None:
        """Offers an answer's compared output (`divergence_values`'s choice) to the
        window's sample (`add_rows`)."""
        values = _compared_output(outputs)
        if values is not None:
            self.add_rows(values.reshape(len(values), -1))

    def add_rows(self, rows: np.ndarray) -> None:
        """Offers output rows (rows, columns), in the order they were answered, to the
        window's sample, copied; rows of another width than the first sampled (another
        signature's output) are left out.

        The sample is a reservoir: every row answered in the window is equally likely to
        be in it, so two versions' samples cover the same seconds whatever their shares.
        (Samples of the first rows would not: at 10 % the champion's fills in the
        window's first seconds while the candidate's spans all of it, and traffic that
        changes during the window would read as the versions' divergence.) Once full,
        the rows that replace sampled ones are drawn for all the offered rows at once
        (`_Reservoir.replacements`).
        """
        count, width = rows.shape
        if not count:
            return
        if self._sample is None:
            self.sample_width = width
            self._sample = np.empty((MAX_SAMPLED_ROWS, width))
        elif width != self.sample_width:
            return
        taken = min(count, MAX_SAMPLED_ROWS - self.sampled_rows)
        self._sample[self.sampled_rows:self.sampled_rows + taken] = rows[:taken]
        self.sampled_rows += taken
        if taken == count:
            return
        if self._reservoir is None:
            self._reservoir = _Reservoir(MAX_SAMPLED_ROWS)
        positions, slots = self._reservoir.replacements(count - taken)
        self._sample[slots] = rows[taken + positions]

    def keep_share(self, share: float, generator: np.random.Generator) -> None:
        """Keeps each measured latency and sampled row with probability `share`: what was
        measured before a window's share was decided, thinned to it, so that the whole
        window is measured at one rate. The share is decided before the sample holds half
        its rows, so it has not begun replacing rows then (unless one answer of thousands
        of rows filled it: then the sample is kept whole)."""
        latencies = np.frombuffer(self.latencies_s, np.float64)
        self.latencies_s = array.array("d", latencies[generator.random(len(latencies)) < share])
        if self.sampled_rows and self._reservoir is None:
            kept = self._sample[:self.sampled_rows][generator.random(self.sampled_rows) < share]
            self._sample[:len(kept)] = kept
            self.sampled_rows = len(kept)

    def output_rows(self) -> np.ndarray:
        """The sampled output rows, (rows, columns) as floats; empty when none was sampled."""
        if not self.sampled_rows:
            return np.zeros((0, 1))
        return self._sample[:self.sampled_rows]


class _Reservoir:
    """Which rows replace which once a sample of `size` rows is full: Li's Algorithm L
    (ACM TOMS 20(4), 1994), which draws how many rows to pass over before the next
    replacement (each draw in numpy, `_BLOCK` at a time), so the rows between
    replacements cost nothing."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._random = _generator()
        self._weight = math.exp(math.log(self._uniforms(1)[0]) / size)
        self._offered = 0  # rows offered since the sample was full
        self._last = -1  # the last drawn replacement's row (counted as `_offered`)
        self._upcoming = np.zeros(0, np.int64)  # drawn replacements' rows, ascending

    def replacements(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """For the next `count` offered rows: which replace a sampled row (their positions
        among them, ascending) and the slot each replaces; where two rows draw the same
        slot only the later is returned (it would have replaced the earlier)."""
        end = self._offered + count
        while self._last < end:
            self._draw()
        due = int(np.searchsorted(self._upcoming, end))
        positions = self._upcoming[:due] - self._offered
        self._upcoming, self._offered = self._upcoming[due:], end
        slots = self._random.integers(0, self.size, due)
        if due > 1:  # the last row drawn for a slot is the one left in it
            _, first_from_end = np.unique(slots[::-1], return_index=True)
            kept = due - 1 - first_from_end
            positions, slots = positions[kept], slots[kept]
        return positions, slots

    def _draw(self) -> None:
        """The next `_BLOCK` replacements: skip i = floor(ln V_i / ln(1 - W_i)) rows, then
        W_(i+1) = W_i * U_i^(1/size), with U, V uniform on (0, 1]."""
        uniforms = self._uniforms(2 * _BLOCK).reshape(2, _BLOCK)
        steps = np.cumsum(np.log(uniforms[0]) / self.size)
        weights = self._weight * np.exp(np.concatenate(([0.0], steps)))
        skips = np.floor(np.log(uniforms[1]) / np.log1p(-weights[:-1]))
        self._weight = float(weights[-1])
        rows = self._last + np.cumsum(np.minimum(skips, _MAX_SKIP).astype(np.int64) + 1)
        self._upcoming = np.concatenate((self._upcoming, rows))
        self._last = int(rows[-1])

    def _uniforms(self, count: int) -> np.ndarray:
        """Uniform on (0, 1]: log(0) is undefined."""
        return 1.0 - self._random.random(count)


def _generator() -> np.random.Generator:
    """numpy's generator, seeded from `random` (so a test's `random.seed` fixes it too)."""
    return np.random.default_rng(random.getrandbits(64))


_BLOCK = 256  # reservoir replacements drawn at a time
_MAX_SKIP = 2 ** 40  # rows: more than a window answers; keeps the sums within int64


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
    request, and the batch that answers it reports it (`Monitor.answered_batch`): then
    `recorded` is set, with the rollout it was measured for (`watch`; None when the version
    that answered is in none)."""

    __slots__ = ("started", "key", "recorded", "watch")

    def __init__(self, started: float, key: Optional[str]) -> None:
        self.started = started
        self.key = key
        self.recorded = False
        self.watch: Optional[Watch] = None


# An answer reported and not yet recorded: its rollout, the version that answered, when
# (`time.perf_counter()`; minus a measured request's `started`, its latency), its
# measured requests with their rows' offsets and counts (None: every row), and the outputs.
_Answer = tuple[Watch, int, float, list[tuple[Measurement, int, Optional[int]]],
                Mapping[str, np.ndarray]]


class Monitor:
    """The windows of the models in a rollout, filled by the data plane, taken by the
    controller. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._rollouts: dict[str, Watch] = {}
        self._windows: dict[tuple[str, int], VersionWindow] = {}
        # request key -> (version, predicted label), oldest first, for labels arriving later
        self._awaiting: dict[str, collections.OrderedDict] = {}
        self._tallies: dict[tuple[str, int], Tally] = {}
        # Appended by the data plane without the lock (a deque's append and popleft are
        # atomic), emptied by `record` under it.
        self._answers: collections.deque[_Answer] = collections.deque()
        self._clock = clock
        self._shares: dict[str, _Share] = {}

    # --- recording ------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Answers reported and not yet recorded."""
        return len(self._answers)

    def record(self) -> None:
        """Records the answers queued since the last call into their windows."""
        with self._lock:
            self._record()

    def _record(self) -> None:
        """`record`, under the lock: each window's answers in one pass, their output rows
        offered to its sample together."""
        rows_by_window: dict[int, tuple[VersionWindow, list[np.ndarray]]] = {}
        for _ in range(len(self._answers)):
            watch, version, finished, measured, outputs = self._answers.popleft()
            window = self._windows.get((watch.model_name, version))
            if window is None:  # the rollout ended meanwhile
                continue
            window.requests += len(measured)
            window.latencies_s.extend([finished - measurement.started
                                       for measurement, _, _ in measured])
            values = _compared_output(outputs)
            if values is not None:
                parts = rows_by_window.setdefault(id(window), (window, []))[1]
                if measured[0][2] is None or \
                        sum(rows for _, _, rows in measured) == len(values):
                    parts.append(values)  # every row measured: the common case
                else:  # requests naming the version shared the batch: their rows left out
                    parts.extend(values[offset:offset + rows] for _, offset, rows in measured)
            keyed = [(measurement.key, predicted_label(
                          outputs if rows is None else _rows(outputs, offset, rows)))
                     for measurement, offset, rows in measured
                     if measurement.key and rows in (None, 1)]
            if keyed:
                self._await_labels(watch.model_name, version, keyed)
        for window, parts in rows_by_window.values():
            window.add_rows(_same_width(parts, window.sample_width))
        for model_name, share in self._shares.items():
            if share.undecided:
                self._decide_share(model_name, share)

    def _decide_share(self, model_name: str, share: "_Share") -> None:
        """Once the busier version has measured CALIBRATION requests (or half a sample
        of rows), the share of requests the rest of the window measures: enough for
        MEASURED_PER_WINDOW at the rate so far; what was measured is thinned to it."""
        watch = self._rollouts[model_name]
        windows = [self._windows[(model_name, version)]
                   for version in (watch.champion, watch.candidate)]
        if max(len(window.latencies_s) for window in windows) < CALIBRATION and \
                max(window.sampled_rows for window in windows) < MAX_SAMPLED_ROWS // 2:
            return
        share.undecided = False
        elapsed = max(self._clock() - share.window_started, 1e-3)
        expected = max(window.requests for window in windows) * share.interval_s / elapsed
        share.value = min(1.0, MEASURED_PER_WINDOW / expected)
        if share.value < 1.0:
            for window in windows:
                window.keep_share(share.value, share.generator)

    # --- the controller's side ------------------------------------------------------------

    def begin(self, model_name: str, champion: int, candidate: int,
              mirror: float = 0.0, interval_seconds: Optional[float] = None) -> None:
        """Starts measuring a model's rollout (empty windows); `mirror`: shadow mode's share;
        `interval_seconds`: the windows' length, from which a busy window measures a
        share of its requests (None: every request)."""
        with self._lock:
            self._record()  # what an earlier rollout answered goes to its windows
            self._shares.pop(model_name, None)
            if interval_seconds:
                self._shares[model_name] = _Share(interval_seconds, self._clock())
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
            self._record()
            watch = self._rollouts.pop(model_name, None)
            if watch is not None:
                for version in (watch.champion, watch.candidate):
                    self._windows.pop((model_name, version), None)
                    self._tallies.pop((model_name, version), None)
            self._awaiting.pop(model_name, None)
            self._shares.pop(model_name, None)

    def take(self, model_name: str) -> Optional[tuple[VersionWindow, VersionWindow]]:
        """(champion's, candidate's) windows since the last take, with every answer
        reported until now; new ones start now."""
        with self._lock:
            self._record()
            watch = self._rollouts.get(model_name)
            if watch is None:
                return None
            taken = (self._windows[(model_name, watch.champion)],
                     self._windows[(model_name, watch.candidate)])
            self._windows[(model_name, watch.champion)] = VersionWindow()
            self._windows[(model_name, watch.candidate)] = VersionWindow()
            share = self._shares.get(model_name)
            if share is not None:
                share.begin_window(self._clock())
            return taken

    def quality(self, model_name: str) -> Optional[tuple[Tally, Tally]]:
        """(champion's, candidate's) labelled answers since the rollout began."""
        with self._lock:
            self._record()  # every answer reported until now counts
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
            if self._answers:  # an answer reported a moment ago can be labelled already
                self._record()
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

    def measures(self, model_name: str, key: Optional[str]) -> bool:
        """Whether a request in the model's rollout is measured (latency, outputs) or only
        counted: keyed ones always (a label may come for them), others with the window's
        share (every one until it is decided, or without an interval)."""
        share = self._shares.get(model_name)
        return share is None or share.value >= 1.0 or key is not None or \
            random.random() < share.value

    def counted(self, model_name: str, version: int) -> Optional[Watch]:
        """`version` answered a request that was not measured: counted when the version is
        in the model's rollout, whose `Watch` is returned (None: it is in none)."""
        watch = self.watch(model_name, version)
        if watch is not None:
            with self._lock:
                window = self._windows.get((model_name, version))
                if window is not None:
                    window.requests += 1
        return watch

    def answered(self, watch: Watch, version: int, seconds: float,
                 outputs: Mapping[str, np.ndarray], key: Optional[str] = None) -> None:
        """`version` answered a measured request in `seconds` with `outputs` (which the
        caller leaves as they are: they are recorded later); a keyed one-row answer
        waits for its label (`label`)."""
        self._queue((watch, version, seconds, [(Measurement(0.0, key), 0, None)], outputs))

    def answered_batch(self, servable, outputs: Mapping[str, np.ndarray],
                       measured: list[tuple[Measurement, int, int]]) -> None:
        """A batch of `servable` (`.name`, `.version`) answered: `outputs` are the batch's
        rows (padding cut off; left as they are by the caller), `measured` its requests
        measured for the rollout, each with the offset and count of its rows. Each is
        marked `recorded` and will be recorded as `answered` would (latency until now,
        output rows, a keyed one-row answer's predicted class)."""
        now = time.perf_counter()
        watch = self.watch(servable.name, servable.version)
        for measurement, _, _ in measured:
            measurement.recorded, measurement.watch = True, watch
        if watch is not None:
            self._queue((watch, servable.version, now, measured, outputs))

    def _queue(self, answer: _Answer) -> None:
        self._answers.append(answer)
        if len(self._answers) >= RECORD_EVERY:
            self.record()

    def _await_labels(self, model_name: str, version: int,
                      keyed: list[tuple[str, Optional[str]]]) -> None:
        """Remembers keyed answers' predicted classes (None: not one row of scores) for
        the labels arriving later, the newest MAX_AWAITING_LABELS; under the lock."""
        awaiting = self._awaiting.get(model_name)
        if awaiting is None:
            return
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


def _same_width(parts: list[np.ndarray], width: int) -> np.ndarray:
    """Output rows of several answers as one (rows, columns) array: those as wide as
    `width` (0: as the first), in order."""
    shaped = [part.reshape(len(part), -1) for part in parts if len(part)]
    if not shaped:
        return np.zeros((0, width or 1))
    width = width or shaped[0].shape[1]
    return np.concatenate([part for part in shaped if part.shape[1] == width])


class _Share:
    """The share of a model's requests its current window measures (`Monitor.measures`)."""

    def __init__(self, interval_s: float, now: float) -> None:
        self.interval_s = interval_s
        self.generator = _generator()
        self.begin_window(now)

    def begin_window(self, now: float) -> None:
        self.window_started = now
        self.value = 1.0
        self.undecided = True
