"""An interval's checks on made-up windows: the values, thresholds and verdicts."""
from __future__ import annotations

import numpy as np
import pytest

from serving.rollout import checks
from serving.rollout.checks import FAIL, HOLD, PASS, SKIP
from serving.rollout.policy import RolloutPolicy
from serving.rollout.window import Tally, VersionWindow

POLICY = RolloutPolicy(min_requests=100)


def window(requests: int = 200, latency_ms: float = 5.0, scores=None, failed: int = 0,
           client_errors: int = 0) -> VersionWindow:
    """A window of `requests` answered calls at `latency_ms`, with `scores` as outputs."""
    answered = requests - failed - client_errors
    out = VersionWindow(requests=requests, failed=failed, client_errors=client_errors,
                        latencies_s=[latency_ms / 1000] * answered)
    if scores is not None:
        out.add_outputs({"scores": np.asarray(scores, np.float32)})
    return out


def by_name(interval: checks.Interval) -> dict[str, checks.Check]:
    return {check.name: check for check in interval.checks}


def two_class_scores(positive_share: np.ndarray) -> np.ndarray:
    return np.stack([1 - positive_share, positive_share], axis=1)


RNG = np.random.default_rng(7)
CHAMPION_SCORES = two_class_scores(RNG.beta(2, 5, 2000))  # mostly "no"


def test_jensen_shannon_is_0_for_the_same_histogram_1_for_disjoint_ones():
    assert checks.jensen_shannon([1, 2, 3], [2, 4, 6]) == 0.0
    assert checks.jensen_shannon([5, 0], [0, 5]) == pytest.approx(1.0)
    # half the mass moved: p=(1,0), q=(.5,.5): JS = 1 - 3/4 log2(3) / 2 ... computed directly
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    m = (p + q) / 2
    expected = 0.5 * (1 * np.log2(1 / m[0])) + 0.5 * (
        0.5 * np.log2(0.5 / m[0]) + 0.5 * np.log2(0.5 / m[1]))
    assert checks.jensen_shannon(p, q) == pytest.approx(expected)


def test_the_same_model_on_other_requests_passes_every_check():
    champion = window(scores=CHAMPION_SCORES[:1000])
    candidate = window(scores=CHAMPION_SCORES[1000:], latency_ms=5.5)
    interval = checks.judge(champion, candidate, POLICY)
    assert interval.verdict == PASS, interval
    values = by_name(interval)
    assert values["divergence"].value < 0.02
    assert values["error_rate"].value == 0.0
    assert values["p99_vs_champion_ms"].threshold == pytest.approx(5 * 1.5 + 10)


def test_reversed_scores_fail_on_divergence_only():
    champion = window(scores=CHAMPION_SCORES[:1000])
    candidate = window(scores=CHAMPION_SCORES[1000:, ::-1])
    interval = checks.judge(champion, candidate, POLICY)
    assert interval.verdict == FAIL
    assert interval.failed_checks() == ["divergence"]
    assert by_name(interval)["divergence"].value > 0.5


def test_a_slower_candidate_fails_on_p99_against_the_champion():
    interval = checks.judge(window(latency_ms=4), window(latency_ms=4 * 1.5 + 10 + 30),
                            POLICY)
    assert interval.failed_checks() == ["p99_vs_champion_ms"]
    assert by_name(interval)["divergence"].verdict == SKIP  # no outputs sampled


def test_an_absolute_p99_limit_is_a_check_of_its_own():
    policy = RolloutPolicy(min_requests=100, max_p99_ms=20)
    interval = checks.judge(window(latency_ms=25), window(latency_ms=25), policy)
    assert interval.failed_checks() == ["p99_ms"]


def test_the_error_rate_counts_the_candidate_s_own_failures_not_the_client_s():
    own = checks.judge(window(), window(failed=40), POLICY)
    assert by_name(own)["error_rate"].value == pytest.approx(40 / 200)
    assert own.failed_checks() == ["error_rate"]
    clients = checks.judge(window(), window(client_errors=40), POLICY)
    assert by_name(clients)["error_rate"].value == 0.0 and clients.verdict == PASS


def test_too_few_requests_on_either_side_holds_even_when_a_check_fails():
    interval = checks.judge(window(requests=99), window(failed=50), POLICY)
    assert interval.verdict == HOLD
    assert interval.failed_checks() == ["error_rate"]  # measured and shown, not acted on
    assert (interval.champion_requests, interval.candidate_requests) == (99, 200)


def tally(labelled: int, accuracy: float) -> Tally:
    return Tally(labelled, round(labelled * accuracy))


QUALITY = RolloutPolicy(min_requests=100, min_labelled=300, max_accuracy_drop=0.01)


def test_a_candidate_5_points_less_accurate_fails_the_online_check():
    check = checks.accuracy_drop(tally(400, 0.90), tally(400, 0.85), QUALITY)
    assert check.verdict == FAIL and check.value == pytest.approx(0.05)
    assert "95% lower bound of the drop" in check.detail


def test_an_equal_or_barely_worse_candidate_passes():
    assert checks.accuracy_drop(tally(400, 0.90), tally(400, 0.90), QUALITY).verdict == PASS
    # 2 points worse on 400 labels each: not sure enough that it is more than 1 point
    assert checks.accuracy_drop(tally(400, 0.90), tally(400, 0.88), QUALITY).verdict == PASS


def test_without_enough_labels_the_check_waits_and_off_it_is_skipped():
    waiting = checks.accuracy_drop(tally(400, 0.9), tally(299, 0.5), QUALITY)
    assert (waiting.verdict, waiting.value) == (SKIP, None)
    assert "need 300 each" in waiting.detail
    off = checks.accuracy_drop(tally(400, 0.9), tally(400, 0.5), POLICY)
    assert off.verdict == SKIP
    interval = checks.judge(window(), window(), QUALITY,
                            (tally(400, 0.9), tally(400, 0.8)))
    assert interval.failed_checks() == ["accuracy_drop"]


def test_small_windows_of_one_model_differ_by_chance_and_do_not_fail():
    """15 rows a side: the histograms of one distribution often differ by more than the
    threshold; the chi-square test keeps those from failing (1 % of them at most, by
    design), and still fails reversed scores."""
    over_the_line = failed = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        champion = window(requests=15, scores=two_class_scores(rng.beta(2, 5, 15)))
        candidate = window(requests=15, scores=two_class_scores(rng.beta(2, 5, 15)))
        check = by_name(checks.judge(champion, candidate, POLICY))["divergence"]
        over_the_line += check.value > POLICY.max_divergence
        failed += check.verdict == FAIL
    assert over_the_line >= 10 and failed <= 3, (over_the_line, failed)
    reversed_scores = checks.judge(window(requests=15, scores=CHAMPION_SCORES[:15]),
                                   window(requests=15, scores=CHAMPION_SCORES[15:30, ::-1]),
                                   POLICY)
    assert by_name(reversed_scores)["divergence"].verdict == FAIL
