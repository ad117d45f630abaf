"""The recurring run a config asks for, compared with the one the server holds.

KFP cannot edit a recurring run (kfp#3789) and does not keep their names unique (the
`jobs` table has no unique index on DisplayName, backend `apiserver/model/job.go`), so
`mlops kfp schedule` finds its recurring run by name, leaves it alone when every setting
that shapes future runs is the same, and otherwise deletes and re-creates it. This module
holds the comparison; it talks to no server.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Optional


def schedule_name(pipeline_name: str) -> str:
    """The one recurring run `mlops kfp schedule` manages for a pipeline."""
    return f"{pipeline_name}-schedule"


@dataclass(frozen=True)
class Schedule:
    """Everything that decides what a recurring run starts, and when."""

    name: str
    cron: str
    max_concurrency: int
    no_catchup: bool
    experiment_id: Optional[str]
    pipeline_id: Optional[str]
    pipeline_version_id: Optional[str]
    pipeline_root: Optional[str]
    parameters_json: str  # canonical JSON, so equal parameters compare equal

    @classmethod
    def wanted(cls, *, name: str, cron: str, max_concurrency: int, catchup: bool,
               experiment_id: str, pipeline_id: str, pipeline_version_id: str,
               pipeline_root: str, parameters: dict[str, Any]) -> "Schedule":
        """The recurring run the config asks for, normalised as the server will return it,
        so an unchanged schedule compares equal and is left alone."""
        return cls(name=name, cron=" ".join(cron.split()), max_concurrency=max_concurrency,
                   no_catchup=not catchup, experiment_id=experiment_id,
                   pipeline_id=pipeline_id, pipeline_version_id=pipeline_version_id,
                   pipeline_root=pipeline_root, parameters_json=_canonical(parameters))

    @classmethod
    def from_server(cls, recurring_run: Any) -> "Schedule":
        """From a `V2beta1RecurringRun`: proto3 JSON leaves false and empty fields out and
        sends int64 `max_concurrency` as a string (backend `toApiRecurringRun`)."""
        trigger = recurring_run.trigger
        cron = getattr(getattr(trigger, "cron_schedule", None), "cron", None) or ""
        reference = recurring_run.pipeline_version_reference
        runtime = recurring_run.runtime_config
        return cls(name=recurring_run.display_name or "",
                   cron=" ".join(cron.split()),
                   max_concurrency=int(recurring_run.max_concurrency or 0),
                   no_catchup=bool(recurring_run.no_catchup),
                   experiment_id=recurring_run.experiment_id,
                   pipeline_id=getattr(reference, "pipeline_id", None),
                   pipeline_version_id=getattr(reference, "pipeline_version_id", None),
                   pipeline_root=getattr(runtime, "pipeline_root", None),
                   parameters_json=_canonical(getattr(runtime, "parameters", None) or {}))

    @property
    def parameters(self) -> dict[str, Any]:
        """The run parameters to send, from their canonical JSON."""
        return json.loads(self.parameters_json)

    def differences(self, current: "Schedule") -> list[str]:
        """What changes from `current` to this one, one phrase per setting."""
        changes = []
        for item in fields(self):
            before, after = getattr(current, item.name), getattr(self, item.name)
            if before != after:
                label = item.name.replace("_json", "").replace("_", " ")
                changes.append(f"{label} {_show(before)} -> {_show(after)}")
        return changes


def _canonical(parameters: dict[str, Any]) -> str:
    return json.dumps(_numbers_as_sent(parameters), sort_keys=True, separators=(",", ":"))


def _numbers_as_sent(value: Any) -> Any:
    """`google.protobuf.Value` numbers are doubles, printed without `.0` when whole: 3.0
    sent comes back as 3, which is the same setting."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _numbers_as_sent(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_numbers_as_sent(item) for item in value]
    return value


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)
