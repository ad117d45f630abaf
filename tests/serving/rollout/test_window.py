"""The monitor between the data plane and the controller: what is measured, and windows
taken whole."""
from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from serving.rollout.checks import output_divergence
from serving.rollout import window
from serving.rollout.window import MAX_SAMPLED_ROWS, Monitor, divergence_values


def test_only_the_champion_and_candidate_of_a_model_in_a_rollout_are_watched():
    monitor = Monitor()
    assert monitor.watch("m", 1) is None
    monitor.begin("m", champion=1, candidate=2)
    assert monitor.watch("m", 1) and monitor.watch("m", 2)
    assert monitor.watch("m", 3) is None and monitor.watch("other", 1) is None
    monitor.end("m")
    assert monitor.watch("m", 2) is None and monitor.take("m") is None


def test_a_take_returns_the_window_so_far_and_starts_empty_ones():
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    watch = monitor.watch("m", 2)
    monitor.answered(watch, 2, 0.004, {"scores": np.array([[0.25, 0.75]], np.float32)})
    monitor.failed(watch, 2, by_client=False)
    monitor.failed(watch, 2, by_client=True)
    monitor.answered(watch, 1, 0.003, {"scores": np.array([[0.9, 0.1]], np.float32)})
    champion, candidate = monitor.take("m")
    assert (candidate.requests, candidate.failed, candidate.client_errors) == (3, 1, 1)
    assert candidate.latencies_s.tolist() == [0.004]
    assert candidate.output_rows().tolist() == [[0.25, 0.75]]
    assert champion.requests == 1
    again = monitor.take("m")
    assert again[0].requests == again[1].requests == 0


def test_the_compared_output_is_the_scores_else_a_numeric_one():
    assert divergence_values({"classes": np.array([[b"0", b"1"]]),
                              "scores": np.array([[0.3, 0.7]])}).tolist() == [[0.3, 0.7]]
    assert divergence_values({"outputs": np.array([1.5, 2.5])}).tolist() == [[1.5], [2.5]]
    assert divergence_values({"classes": np.array([b"a"])}) is None


def _answer_rows(monitor: Monitor, version: int, values) -> None:
    watch = monitor.watch("m", version)
    monitor.answered(watch, version, 0.001, {"y": np.asarray(values, np.float32)})


def test_the_sample_is_a_copy_and_fills_with_the_first_rows():
    """Until it is full the sample holds every row, whatever the requests' sizes, copied
    once recorded (the answers are not kept alive through the window)."""
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    rows = np.arange(10, dtype=np.float32).reshape(5, 2)
    _answer_rows(monitor, 1, rows)
    _answer_rows(monitor, 1, [[10, 11]])
    monitor.record()
    rows[:] = -1  # the caller's arrays are its own again
    champion, _ = monitor.take("m")
    assert champion.output_rows().tolist() == np.arange(12).reshape(6, 2).tolist()


def test_answers_are_recorded_together_every_few(monkeypatch):
    """Answers wait in a queue until RECORD_EVERY of them are recorded at once; a take
    records what waits, so a window holds every answer reported before it."""
    monkeypatch.setattr(window, "RECORD_EVERY", 5)
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    for answers in range(1, 5):
        _answer_rows(monitor, 1, [[0.5, 0.5]])
        assert monitor.queued == answers
    _answer_rows(monitor, 1, [[0.5, 0.5]])
    assert monitor.queued == 0
    _answer_rows(monitor, 1, [[0.5, 0.5]])
    champion, _ = monitor.take("m")
    assert champion.requests == 6 and len(champion.latencies_s) == 6


def test_a_label_finds_an_answer_not_yet_recorded():
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    watch = monitor.watch("m", 2)
    monitor.answered(watch, 2, 0.001, {"scores": np.array([[0.2, 0.8]])}, key="k")
    assert monitor.queued == 1
    assert monitor.label("m", "k", "1")
    assert monitor.quality("m")[1].correct == 1


def test_answers_queued_before_a_rollout_ends_are_not_counted_in_the_next():
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    _answer_rows(monitor, 2, [[0.5, 0.5]])
    monitor.end("m")
    monitor.begin("m", 1, 2)  # the same versions again: new windows
    _answer_rows(monitor, 1, [[0.5, 0.5]])
    champion, candidate = monitor.take("m")
    assert (champion.requests, candidate.requests) == (1, 0)


@pytest.mark.parametrize("record_every", [1, 50, None],
                         ids=["each", "fifty", "as-the-monitor-does"])
def test_a_full_sample_is_uniform_over_the_window(record_every):
    """Past MAX_SAMPLED_ROWS every row answered in the window is equally likely to be
    sampled: five times the limit, in answers of 1 to 7 rows, leave about a fifth of
    each fifth of the window in the sample, each row whole and at most once; whether
    the answers are recorded one by one, fifty at a time or as the monitor does
    (RECORD_EVERY)."""
    random.seed(20261207)
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    total, sizes = 5 * MAX_SAMPLED_ROWS, itertools.cycle(range(1, 8))
    start = 0
    while start < total:
        stop = min(total, start + next(sizes))
        index = np.arange(start, stop)
        _answer_rows(monitor, 1, np.stack([index, -index], axis=1))
        if record_every and monitor.queued >= record_every:
            monitor.record()
        start = stop
    champion, _ = monitor.take("m")
    sample = champion.output_rows()
    assert sample.shape == (MAX_SAMPLED_ROWS, 2)
    assert (sample[:, 1] == -sample[:, 0]).all()  # rows are never mixed
    assert len(np.unique(sample[:, 0])) == MAX_SAMPLED_ROWS
    per_fifth = np.bincount((sample[:, 0] * 5 // total).astype(int), minlength=5)
    assert per_fifth.tolist() == pytest.approx([MAX_SAMPLED_ROWS / 5] * 5, rel=0.05)


def test_versions_at_unequal_shares_are_sampled_over_the_same_seconds():
    """At a 10 % share the champion answers nine rows for each of the candidate's; with
    the traffic drifting through the window (an output that rises with the time of day),
    two versions that answer alike must not diverge: their samples cover the same
    seconds."""
    random.seed(7)
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    rows = 4 * MAX_SAMPLED_ROWS
    for row in range(rows):
        drift = row / rows  # both versions answer the hour's traffic alike
        _answer_rows(monitor, 2 if row % 10 == 0 else 1, [[drift, 1 - drift]])
    champion, candidate = monitor.take("m")
    divergence, _ = output_divergence(champion.output_rows(), candidate.output_rows())
    assert divergence < 0.01


def test_rows_of_another_width_are_left_out_of_the_sample():
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    watch = monitor.watch("m", 1)
    monitor.answered(watch, 1, 0.001, {"scores": np.array([[0.2, 0.8]])})
    monitor.answered(watch, 1, 0.001, {"outputs": np.array([[3.5]])})  # a regress call
    monitor.answered(watch, 1, 0.001, {"classes": np.array([[b"a"]])})  # nothing numeric
    monitor.answered(watch, 1, 0.001, {"scores": np.array([[0.75, 0.25]], np.float32)})
    champion, _ = monitor.take("m")
    assert champion.requests == 4
    assert champion.output_rows().tolist() == [[0.2, 0.8], [0.75, 0.25]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _serve(monitor: Monitor, clock: FakeClock, requests: int, per_second: float,
           version: int = 1) -> None:
    """`requests` one-row requests to `version` at `per_second`, as the data plane reports
    them: measured ones with their index as latency and output, the others counted."""
    watch = monitor.watch("m", version)
    for index in range(requests):
        clock.now += 1 / per_second
        if monitor.measures("m", None):
            monitor.answered(watch, version, float(index), {"y": np.array([[index]], np.float32)})
        else:
            monitor.counted("m", version)


def test_a_busy_window_measures_a_uniform_share_and_counts_every_request():
    """At 1,000 requests/s a 60-s window would measure 60,000; it measures about
    MEASURED_PER_WINDOW of them, spread evenly over the window (those measured before
    the share was decided thinned to it), and counts all."""
    random.seed(3)
    clock = FakeClock()
    monitor = Monitor(clock)
    monitor.begin("m", 1, 2, interval_seconds=60)
    _serve(monitor, clock, 60_000, per_second=1000)
    champion, _ = monitor.take("m")
    assert champion.requests == 60_000
    measured = np.frombuffer(champion.latencies_s, np.float64)
    assert len(measured) == pytest.approx(window.MEASURED_PER_WINDOW, rel=0.05)
    per_fifth = np.bincount((measured * 5 // 60_000).astype(int), minlength=5)
    assert per_fifth.tolist() == pytest.approx([len(measured) / 5] * 5, rel=0.08)
    rows = champion.output_rows()[:, 0]  # thinned on their own: about as many, as even
    assert len(rows) == pytest.approx(len(measured), rel=0.05)
    per_fifth = np.bincount((rows * 5 // 60_000).astype(int), minlength=5)
    assert per_fifth.tolist() == pytest.approx([len(rows) / 5] * 5, rel=0.08)


def test_a_quiet_window_measures_every_request_and_keyed_ones_are_always_measured():
    random.seed(4)
    clock = FakeClock()
    monitor = Monitor(clock)
    monitor.begin("m", 1, 2, interval_seconds=60)
    _serve(monitor, clock, 3_000, per_second=50)  # 3,000 in the window: all measured
    champion, _ = monitor.take("m")
    assert champion.requests == len(champion.latencies_s) == 3_000
    _serve(monitor, clock, 3_000, per_second=5_000)  # busy: the share is decided low
    assert not all(monitor.measures("m", None) for _ in range(100))
    assert all(monitor.measures("m", f"key-{i}") for i in range(100))
    monitor.take("m")
    assert all(monitor.measures("m", None) for _ in range(100))  # a new window: undecided


def test_without_an_interval_every_request_is_measured():
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    _serve(monitor, FakeClock(), 5_000, per_second=100_000)
    champion, _ = monitor.take("m")
    assert champion.requests == len(champion.latencies_s) == 5_000
