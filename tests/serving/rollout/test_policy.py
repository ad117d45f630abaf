"""The rollout policy: one definition for the config's keys and the server's flags."""
from __future__ import annotations

import pytest

from serving.errors import ServingError
from serving.rollout.policy import RolloutPolicy, optional_policy


def test_the_flags_a_policy_writes_read_back_as_the_same_policy():
    policy = RolloutPolicy(enabled=True, steps=(5, 20, 60), interval_seconds=1, threshold=2,
                           min_requests=10, max_error_rate=0.05, max_p99_ms=250,
                           max_divergence=0.2)
    flags = dict(flag[2:].split("=", 1) for flag in policy.flags())
    flags["rollout"] = flags["rollout"] == "true"
    typed = {key: (type(getattr(RolloutPolicy(), key[len("rollout_"):]))(value)
                   if key.startswith("rollout_") and key != "rollout_steps" else value)
             for key, value in flags.items()}
    assert RolloutPolicy.from_flags(typed) == policy


def test_off_means_no_flags_and_no_policy():
    assert RolloutPolicy().flags() == []
    assert optional_policy({"rollout": False, "rollout_steps": "10"}) is None


@pytest.mark.parametrize("flags, named", [
    ({"rollout_steps": "50,10"}, "--rollout_steps must be rising"),
    ({"rollout_steps": "10,100"}, "--rollout_steps must be rising"),
    ({"rollout_steps": "ten"}, "--rollout_steps: expected per cents"),
    ({"rollout_interval_seconds": 0.5}, "--rollout_interval_seconds must be at least 1"),
    ({"rollout_threshold": 0}, "--rollout_threshold must be at least 1"),
    ({"rollout_max_error_rate": 2.0}, "--rollout_max_error_rate must be between 0 and 1"),
    ({"rollout_p99_slack_ms": -1.0}, "--rollout_p99_slack_ms must not be negative"),
    ({"rollout_mode": "mirror"}, "--rollout_mode must be one of canary, shadow"),
])
def test_an_impossible_value_is_refused_naming_its_flag(flags, named):
    with pytest.raises(ServingError) as caught:
        RolloutPolicy.from_flags({"rollout": True, **flags})
    assert caught.value.message.startswith(named), caught.value.message


def test_the_weight_stays_at_the_last_step():
    policy = RolloutPolicy(steps=(10, 50))
    assert [policy.weight_at(step) for step in range(3)] == [10, 50, 50]
