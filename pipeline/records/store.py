"""Each run's summary, kept as JSON beside its artifacts: what `mlops history`, `mlops
lineage` and the HTML report read back without TensorFlow.

ML Metadata records which components ran and what they wrote, but a run's metric values
live in TFMA's output, which only TFMA (seconds to import) reads. So the summary a run
prints is also written here when it ends, under `<pipeline.root>/.mlops/runs/`, one file
per run; a history over a hundred runs is then a hundred small files.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Optional

from pipeline.definition.config import PipelineConfig, Threshold
from pipeline.records.summary import ComponentStatus, MetricCheck, RunReport

RECORDS_DIR = os.path.join(".mlops", "runs")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def records_dir(config: PipelineConfig) -> str:
    """`<pipeline.root>/.mlops/runs`: one JSON record per run."""
    return os.path.join(config.pipeline.root, RECORDS_DIR)


def record_path(config: PipelineConfig, run_id: str) -> str:
    """A run's record file, its id made safe as a file name."""
    return os.path.join(records_dir(config), _UNSAFE.sub("_", run_id) + ".json")


def to_dict(report: RunReport) -> dict[str, Any]:
    """The record as plain JSON (thresholds as the config's mappings), for the file and
    for `--json` output."""
    document = dataclasses.asdict(report)
    document["metrics"] = [{**dataclasses.asdict(check),
                            "threshold": check.threshold.model_dump()}
                           for check in report.metrics]
    return document


def from_dict(document: dict[str, Any]) -> RunReport:
    """A record read back; keys a newer or older version does not know are ignored."""
    fields = {field.name for field in dataclasses.fields(RunReport)}
    values = {key: value for key, value in document.items() if key in fields}
    values["components"] = [ComponentStatus(**c) for c in document.get("components", [])]
    values["metrics"] = [MetricCheck(**{**m, "threshold": Threshold.model_validate(
        m["threshold"])}) for m in document.get("metrics", [])]
    return RunReport(**values)


def save(config: PipelineConfig, report: RunReport) -> Optional[str]:
    """Writes the run's record (nothing for a run that recorded no pipeline run)."""
    if not report.run_id:
        return None
    path = record_path(config, report.run_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = f"{path}.tmp"
    with open(staging, "w") as handle:
        json.dump(to_dict(report), handle, indent=1)
    os.replace(staging, path)  # a reader never sees half a record
    return path


def load(config: PipelineConfig, run_id: str) -> Optional[RunReport]:
    """The run's record, or None when it is missing or unreadable (a damaged file is not
    a run)."""
    try:
        with open(record_path(config, run_id)) as handle:
            return from_dict(json.load(handle))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def load_all(config: PipelineConfig) -> dict[str, RunReport]:
    """Every readable record, by run id."""
    folder = records_dir(config)
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(folder, name)) as handle:
                report = from_dict(json.load(handle))
        except (OSError, ValueError, TypeError, KeyError):
            continue  # a foreign or damaged file is not a run
        if report.run_id:
            found[report.run_id] = report
    return found
