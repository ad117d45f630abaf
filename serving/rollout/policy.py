"""A rollout's policy: the weight steps, the interval, and each check's threshold.

One definition for the config's `serving.rollout` section and the embedded server's
`--rollout_*` flags (`RolloutPolicy.from_flags`): the names are the same, so a key read in
the config is the flag the server gets. The defaults follow Flagger's analysis where it
has one (a 60 s interval, 99 % request success), and otherwise what tells a broken model
from noise on a loaded machine (a p99 ratio with an absolute slack).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from serving.errors import ServingError, invalid_argument

CANARY, SHADOW = "canary", "shadow"
MODES = (CANARY, SHADOW)


@dataclasses.dataclass(frozen=True)
class RolloutPolicy:
    """How a candidate is judged and how far it gets each interval.

    mode: `canary`: the candidate answers its share of the bare-URL requests; `shadow`:
        the champion answers every request, and the candidate is also given its share,
        its answers only measured (the client never sees them).
    steps: the candidate's share of bare-URL requests, per cent, one per passed interval;
        passing the last step promotes (the candidate then takes all of them).
    interval_seconds: how long each window of measurements lasts.
    threshold: failed intervals (in the whole rollout, as Flagger counts them) that abort.
    min_requests: requests each version must answer in a window for it to count; fewer
        holds the rollout where it is (no data never promotes or aborts).
    max_error_rate: share of the candidate's requests that it failed while the champion
        answered them.
    max_p99_ms: the candidate's p99 model-call latency, absolute (0: no absolute limit).
    max_p99_ratio, p99_slack_ms: the candidate's p99 must stay within champion p99 x ratio
        + slack (the slack keeps a 2 ms model's scheduling jitter from failing the check).
    max_divergence: Jensen-Shannon divergence (base 2, from 0 to 1) between the two
        versions' output distributions over the window.
    min_labelled: labelled answers each version needs before online quality is judged
        (0: the check is off). While it is on and short of labels, the last step holds
        rather than promote.
    max_accuracy_drop: how much less accurate than the champion the candidate may be,
        on the labelled answers since the rollout began...
    confidence: ...failing only when a one-sided test is this sure the drop is larger.
    """

    enabled: bool = False
    mode: str = CANARY
    steps: tuple[float, ...] = (10.0, 25.0, 50.0)
    interval_seconds: float = 60.0
    threshold: int = 3
    min_requests: int = 50
    max_error_rate: float = 0.01
    max_p99_ms: float = 0.0
    max_p99_ratio: float = 1.5
    p99_slack_ms: float = 10.0
    max_divergence: float = 0.1
    min_labelled: int = 0
    max_accuracy_drop: float = 0.02
    confidence: float = 0.95

    def __post_init__(self) -> None:
        problems = self.problems()
        if problems:
            raise invalid_argument("; ".join(problems))

    def problems(self) -> list[str]:
        """Each impossible value, named by its key (the flag is `--rollout_<key>`)."""
        problems = []
        if self.mode not in MODES:
            problems.append(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        if not self.steps:
            problems.append("steps must name at least one weight")
        elif any(not 0 < step < 100 for step in self.steps) or \
                list(self.steps) != sorted(set(self.steps)):
            problems.append("steps must be rising per cents between 0 and 100 (exclusive), "
                            f"not {', '.join(f'{s:g}' for s in self.steps)}")
        if self.interval_seconds < 1:
            problems.append("interval_seconds must be at least 1")
        if self.threshold < 1:
            problems.append("threshold must be at least 1")
        if self.min_requests < 1:
            problems.append("min_requests must be at least 1")
        if not 0 <= self.max_error_rate <= 1:
            problems.append("max_error_rate must be between 0 and 1")
        for key in ("max_p99_ms", "p99_slack_ms"):
            if getattr(self, key) < 0:
                problems.append(f"{key} must not be negative")
        if self.max_p99_ratio < 1:
            problems.append("max_p99_ratio must be at least 1")
        if not 0 <= self.max_divergence <= 1:
            problems.append("max_divergence must be between 0 and 1")
        if self.min_labelled < 0:
            problems.append("min_labelled must not be negative")
        if not 0 <= self.max_accuracy_drop <= 1:
            problems.append("max_accuracy_drop must be between 0 and 1")
        if not 0.5 <= self.confidence < 1:
            problems.append("confidence must be at least 0.5 and below 1")
        return problems

    @classmethod
    def from_flags(cls, flags: dict) -> "RolloutPolicy":
        """The policy from `--rollout_*` values (`steps` as "10,25,50").

        Raises:
            ServingError: INVALID_ARGUMENT naming the flag whose value is impossible.
        """
        values = {}
        for field in dataclasses.fields(cls):
            key = f"rollout_{field.name}" if field.name != "enabled" else "rollout"
            if key in flags:
                values[field.name] = flags[key]
        if isinstance(values.get("steps"), str):
            values["steps"] = parse_steps(values["steps"])
        try:
            return cls(**values)
        except ServingError as err:  # each problem starts with its key: name the flag
            raise invalid_argument("; ".join(f"--rollout_{problem}"
                                             for problem in err.message.split("; "))) from None

    def flags(self) -> list[str]:
        """The server's command-line flags for this policy (none when it is off)."""
        if not self.enabled:
            return []
        out = ["--rollout=true"]
        for field in dataclasses.fields(self):
            if field.name == "enabled":
                continue
            value = getattr(self, field.name)
            text = (",".join(f"{step:g}" for step in value) if field.name == "steps"
                    else f"{value:g}" if isinstance(value, float) else str(value))
            out.append(f"--rollout_{field.name}={text}")
        return out

    def weight_at(self, step: int) -> float:
        """The candidate's share at a step (0-based)."""
        return self.steps[min(step, len(self.steps) - 1)]

    def split_weight(self, step: int) -> float:
        """The canary split's weight at a step: the share itself, or 0 in shadow mode
        (every answer the champion's)."""
        return self.weight_at(step) if self.mode == CANARY else 0.0

    def mirror_share(self, step: int) -> float:
        """The share of requests also sent to the candidate at a step (shadow mode)."""
        return self.weight_at(step) if self.mode == SHADOW else 0.0


def parse_steps(text: str) -> tuple[float, ...]:
    """"10,25,50" -> (10.0, 25.0, 50.0).

    Raises:
        ServingError: INVALID_ARGUMENT when a part is not a number.
    """
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise invalid_argument(f"--rollout_steps: expected per cents like 10,25,50, "
                               f"not {text!r}") from None


def optional_policy(flags: dict) -> Optional[RolloutPolicy]:
    """The policy when `--rollout` is on, else None."""
    policy = RolloutPolicy.from_flags(flags)
    return policy if policy.enabled else None
