"""The checks of one interval: the candidate's window against the champion's.

Each check gives a value, its threshold and a verdict (`skip` when the window cannot
measure it: no numeric output to compare, no call answered); the interval's verdict is
`hold` when either version had fewer than `min_requests` requests (no data decides
nothing), else `fail` when any check fails, else `pass`.

Online quality (`accuracy_drop`) is judged on the labels joined so far, over the whole
rollout, by a one-sided test; an off check (`min_labelled` 0) is listed as skipped.

Prediction divergence is the Jensen-Shannon divergence with base-2 logarithms (0: the same
distribution, 1: disjoint), the measure TFDV's `jensen_shannon_divergence` comparator (and
so `mlops skew`) uses for numeric features, here over histograms of each output column
with buckets spanning both versions' values; the largest column's value counts. Two
samples of one distribution still differ by chance, and the more buckets per row, the
more: the bucket count follows the square-root rule (the smaller sample's root, 2 to 10),
so a window of 50 rows a side is not judged on 10 sparse buckets; and a divergence over
the threshold fails only when a chi-square test finds it significant (p < 0.01). The
two versions see different requests (the split is by request key), so this compares
populations: a candidate that answers the same requests differently moves the histogram.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Optional

import numpy as np

from serving.rollout.policy import RolloutPolicy
from serving.rollout.window import Tally, VersionWindow

PASS, FAIL, HOLD, SKIP = "pass", "fail", "hold", "skip"
MAX_BUCKETS = 10
DIVERGENCE_SIGNIFICANCE = 0.01  # a divergence fails only with a p-value below this


@dataclasses.dataclass(frozen=True)
class Check:
    """One measure of one interval: its value, the limit, and the verdict."""

    name: str
    value: Optional[float]  # None: not measurable in this window
    threshold: Optional[float]
    verdict: str  # pass | fail | skip (not measurable: no numeric output, no answer)
    detail: str = ""  # what the value stands on, where a number alone does not say

    def to_json(self) -> dict:
        """The record's form of the check."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: dict) -> Optional["Check"]:
        """A check recorded outside the server; None when the record is not one (a
        malformed file must not stop the loop)."""
        try:
            verdict = record["verdict"]
            if verdict not in (PASS, FAIL, SKIP):
                return None
            value, threshold = record.get("value"), record.get("threshold")
            return cls(str(record["name"]), None if value is None else float(value),
                       None if threshold is None else float(threshold), verdict,
                       str(record.get("detail", "")))
        except (KeyError, TypeError, ValueError):
            return None


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


def output_divergence(champion: np.ndarray, candidate: np.ndarray
                      ) -> Optional[tuple[float, float]]:
    """(the largest per-column JS divergence, the p-value of that column's difference)
    between two versions' output rows; None when either has no rows or their columns
    differ.

    The p-value is a chi-square test of independence between version and bucket (2 x
    buckets table): how likely a difference this large is between two samples of one
    distribution. A divergence over the threshold fails only if it is also significant,
    so that a window of a few dozen rows a side, whose histograms differ by chance, does
    not abort a candidate that answers as the champion does.
    """
    if not len(champion) or not len(candidate) or champion.shape[1] != candidate.shape[1]:
        return None
    worst, worst_p = 0.0, 1.0
    buckets = int(np.clip(np.sqrt(min(len(champion), len(candidate))), 2, MAX_BUCKETS))
    for column in range(champion.shape[1]):
        a, b = champion[:, column], candidate[:, column]
        low, high = min(a.min(), b.min()), max(a.max(), b.max())
        if high <= low:
            continue  # one value on both sides: identical
        edges = np.linspace(low, high, buckets + 1)
        counts = np.stack([np.histogram(a, edges)[0], np.histogram(b, edges)[0]])
        divergence = jensen_shannon(*counts)
        if divergence > worst:
            worst, worst_p = divergence, _independence_p_value(counts)
    return worst, worst_p


def _independence_p_value(counts: np.ndarray) -> float:
    """Pearson's chi-square p-value for a 2 x k table of counts (empty buckets left out);
    nearer its nominal rate than the G-test at a few dozen rows a side."""
    from scipy.stats import chi2_contingency

    counts = counts[:, counts.sum(axis=0) > 0]
    if counts.shape[1] < 2:
        return 1.0
    return float(chi2_contingency(counts, correction=False)[1])


def p99_ms(window: VersionWindow) -> Optional[float]:
    """The window's 99th-percentile answered-call latency in ms; None without answers."""
    if not window.latencies_s:
        return None
    return float(np.percentile(np.asarray(window.latencies_s), 99) * 1000)


def _verdict(value: Optional[float], threshold: Optional[float]) -> str:
    if value is None or threshold is None:
        return SKIP
    return FAIL if value > threshold else PASS


def accuracy_drop(champion: Tally, candidate: Tally, policy: RolloutPolicy) -> Check:
    """Online quality: the champion's accuracy minus the candidate's on labelled answers.

    Fails only when a one-sided test (normal approximation of the difference of two
    proportions) is `confidence` sure the drop exceeds `max_accuracy_drop`: its lower
    confidence bound is above the threshold. Skipped while either version has fewer than
    `min_labelled` labelled answers, or the check is off.
    """
    name = "accuracy_drop"
    if not policy.min_labelled:
        return Check(name, None, None, SKIP, "off (min_labelled 0)")
    if min(champion.labelled, candidate.labelled) < policy.min_labelled:
        return Check(name, None, policy.max_accuracy_drop, SKIP,
                     f"labelled {champion.labelled} / {candidate.labelled}, need "
                     f"{policy.min_labelled} each")
    a, b = champion.accuracy, candidate.accuracy
    drop = a - b
    error = math.sqrt(a * (1 - a) / champion.labelled + b * (1 - b) / candidate.labelled)
    lower = drop - statistics.NormalDist().inv_cdf(policy.confidence) * error
    detail = (f"accuracy {a:.3f} (n={champion.labelled}) vs {b:.3f} "
              f"(n={candidate.labelled}); {policy.confidence:.0%} lower bound of the drop "
              f"{lower:.3f}")
    return Check(name, drop, policy.max_accuracy_drop,
                 FAIL if lower > policy.max_accuracy_drop else PASS, detail)


def divergence_check(champion: VersionWindow, candidate: VersionWindow,
                     policy: RolloutPolicy) -> Check:
    """The `divergence` check of two windows' outputs (also `webhook.py`'s, for Flagger):
    over `max_divergence` and significant fails; no comparable outputs skips."""
    measured = output_divergence(champion.output_rows(), candidate.output_rows())
    if measured is None:
        return Check("divergence", None, policy.max_divergence, SKIP)
    divergence, p_value = measured
    verdict = _verdict(divergence, policy.max_divergence)
    if verdict == FAIL and p_value >= DIVERGENCE_SIGNIFICANCE:
        verdict = PASS  # over the line, but not beyond what chance gives such samples
    return Check("divergence", divergence, policy.max_divergence, verdict,
                 f"p={p_value:.2g}")


def judge(champion: VersionWindow, candidate: VersionWindow, policy: RolloutPolicy,
          quality: Optional[tuple[Tally, Tally]] = None,
          outside: tuple[Check, ...] = ()) -> Interval:
    """The interval's checks and verdict (see the module); `quality`: the two versions'
    labelled answers since the rollout began (None: none joined); `outside`: checks
    judged outside the server for this candidate (`records.external_checks`), counted
    like the others."""
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
    checks.append(divergence_check(champion, candidate, policy))
    checks.append(accuracy_drop(*(quality or (Tally(), Tally())), policy))
    checks.extend(outside)
    enough = min(champion.requests, candidate.requests) >= policy.min_requests
    if not enough:
        verdict = HOLD
    elif any(check.verdict == FAIL for check in checks):
        verdict = FAIL
    else:
        verdict = PASS
    return Interval(verdict, tuple(checks), champion.requests, candidate.requests)
