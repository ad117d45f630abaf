"""The monitor between the data plane and the controller: what is measured, and windows
taken whole."""
from __future__ import annotations

import numpy as np

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


def test_sampling_copies_the_first_rows_up_to_the_limit():
    """The sample is a copy (the answers are not kept alive through the window) of the
    first MAX_SAMPLED_ROWS rows, whatever the requests' sizes."""
    monitor = Monitor()
    monitor.begin("m", 1, 2)
    watch = monitor.watch("m", 1)
    half = MAX_SAMPLED_ROWS // 2 + 1
    for fill in range(3):
        rows = np.full((half, 1), fill, np.float32)
        monitor.answered(watch, 1, 0.001, {"y": rows})
        rows[:] = -1  # the caller's arrays are its own again
    champion, _ = monitor.take("m")
    sample = champion.output_rows()
    assert champion.requests == 3 and sample.shape == (MAX_SAMPLED_ROWS, 1)
    assert sample[:half, 0].tolist() == [0] * half
    assert sample[half:, 0].tolist() == [1] * (MAX_SAMPLED_ROWS - half)


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
