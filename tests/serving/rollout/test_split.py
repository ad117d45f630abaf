"""A rollout's steps through the canary split (`serving.traffic.Router`, as the data plane
calls it): each step's share of 10,000 request keys, and keys that stay on the candidate
as its weight rises (criterion 1 of issue 24; the server-level split is measured over
real requests in tests/serving/test_canary_server.py)."""
from __future__ import annotations

from serving.rollout.policy import RolloutPolicy
from serving.traffic import Router, Split

LABELS = {"stable": 1, "canary": 2}
KEYS = [f"customer-{n}" for n in range(10_000)]


def test_each_step_s_share_is_within_1_5_points_and_a_key_on_the_candidate_stays():
    router = Router()
    on_candidate: set[str] = set()
    for weight in RolloutPolicy().steps:
        router.update({"m": Split(weight)})
        now = {key for key in KEYS if router.choose("m", LABELS, key) == 2}
        assert abs(len(now) / len(KEYS) * 100 - weight) <= 1.5, (weight, len(now))
        assert on_candidate <= now  # no key goes back to the champion as the weight rises
        on_candidate = now
