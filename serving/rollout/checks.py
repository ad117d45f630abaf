"""The checks of one interval: the candidate's window against the champion's.

Each check gives a value, its threshold and a verdict (`skip` when the window cannot
measure it: no numeric output to compare, no call answered); the interval's verdict is
`hold` when either version had fewer than `min_requests` requests (no data decides
nothing), else `fail` when any check fails, else `pass`.

Prediction divergence is the Jensen-Shannon divergence with base-2 logarithms (0: the same
distribution, 1: disjoint), the measure TFDV's `jensen_shannon_divergence` comparator (and
so `mlops skew`) uses for numeric features, here over histograms of each output column
with ten buckets spanning both versions' values; the largest column's value counts. The
two versions see different requests (the split is by request key), so this compares
populations: a candidate that answers the same requests differently moves the histogram.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from serving.rollout.policy import RolloutPolicy
from serving.rollout.window import VersionWindow

PASS, FAIL, HOLD, SKIP = "pass", "fail", "hold", "skip"
BUCKETS = 10


@dataclasses.dataclass(frozen=True)
class Check:
    """One measure of one interval: its value, the limit, and the verdict."""

    name: str
    value: Optional[float]  # None: not measurable in this window
    threshold: Optional[float]
    verdict: str  # pass | fail | skip (not measurable: no numeric output, no answer)

    def to_json(self) -> dict:
        """The record's form of the check."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Interval:
    """An interval's outcome: each check, the two windows' sizes, and the verdict."""

    verdict: str
    checks: tuple[Check, ...]
    champion_requests: int
    candidate_requests: int

    def failed_checks(self) -> list[str]:
        """The names of the checks that failed (what an abort is blamed on)."""
        return [check.name for check in self.checks if check.verdict == FAIL]


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """JS divergence, base 2, of two histograms (counts or shares; normalised here).

    Returns 0.0 when either histogram is empty (nothing to compare)."""
    p = np.asarray(p, np.float64)
    q = np.asarray(q, np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))

    return max(0.0, min(1.0, (kl(p) + kl(q)) / 2))


def output_divergence(champion: np.ndarray, candidate: np.ndarray) -> Optional[float]:
    """The largest per-column JS divergence between two versions' output rows; None when
    either has no rows or their columns differ."""
    if not len(champion) or not len(candidate) or champion.shape[1] != candidate.shape[1]:
        return None
    worst = 0.0
    for column in range(champion.shape[1]):
        a, b = champion[:, column], candidate[:, column]
        low, high = min(a.min(), b.min()), max(a.max(), b.max())
        if high <= low:
            continue  # one value on both sides: identical
        edges = np.linspace(low, high, BUCKETS + 1)
        worst = max(worst, jensen_shannon(np.histogram(a, edges)[0],
                                          np.histogram(b, edges)[0]))
    return worst


def p99_ms(window: VersionWindow) -> Optional[float]:
    """The window's 99th-percentile answered-call latency in ms; None without answers."""
    if not window.latencies_s:
        return None
    return float(np.percentile(np.asarray(window.latencies_s), 99) * 1000)


def _verdict(value: Optional[float], threshold: Optional[float]) -> str:
    if value is None or threshold is None:
        return SKIP
    return FAIL if value > threshold else PASS


def judge(champion: VersionWindow, candidate: VersionWindow,
          policy: RolloutPolicy) -> Interval:
    """The interval's checks and verdict (see the module)."""
    checks = []
    candidate_counted = candidate.requests - candidate.client_errors
    error_rate = candidate.failed / candidate_counted if candidate_counted else None
    checks.append(Check("error_rate", error_rate, policy.max_error_rate,
                        _verdict(error_rate, policy.max_error_rate)))
    champion_p99, candidate_p99 = p99_ms(champion), p99_ms(candidate)
    if policy.max_p99_ms:
        checks.append(Check("p99_ms", candidate_p99, policy.max_p99_ms,
                            _verdict(candidate_p99, policy.max_p99_ms)))
    limit = (champion_p99 * policy.max_p99_ratio + policy.p99_slack_ms
             if champion_p99 is not None else None)
    checks.append(Check("p99_vs_champion_ms", candidate_p99, limit,
                        _verdict(candidate_p99, limit)))
    divergence = output_divergence(champion.output_rows(), candidate.output_rows())
    checks.append(Check("divergence", divergence, policy.max_divergence,
                        _verdict(divergence, policy.max_divergence)))
    enough = min(champion.requests, candidate.requests) >= policy.min_requests
    if not enough:
        verdict = HOLD
    elif any(check.verdict == FAIL for check in checks):
        verdict = FAIL
    else:
        verdict = PASS
    return Interval(verdict, tuple(checks), champion.requests, candidate.requests)
