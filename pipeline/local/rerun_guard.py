"""Skips a local run whose inputs are exactly those of the last completed run.

With unchanged data, config and code, every TFX component would be a cache hit and
nothing would be pushed; but reaching that verdict through TFX costs half a minute of
importing TensorFlow, Beam and TFX on a 2-core machine. This guard reaches the same
verdict from the same facts TFX's cache keys on (the resolved config, the span files'
names, sizes and times, the pipeline's code and the TFX version) and from what the
serving directory holds, in milliseconds, and shows the summary of the run it matches.
`mlops run --force` goes through TFX anyway.

Only local pipeline roots and serving directories are guarded; the record lives beside
the artifacts.
"""
from __future__ import annotations

import json
import os
from importlib import metadata
from typing import Optional

from pipeline.definition import fingerprints
from pipeline.definition.config import PipelineConfig, is_remote

RECORD_NAME = "last_completed_run.json"


def _record_path(config: PipelineConfig) -> Optional[str]:
    """Where the record lives; None where the guard cannot see the facts cheaply (a
    pipeline root or serving directory in a bucket)."""
    if is_remote(config.pipeline.root) or is_remote(config.serving_model_dir):
        return None
    return os.path.join(config.pipeline.root, ".mlops", RECORD_NAME)


def _span_pattern(config: PipelineConfig) -> str:
    """The files a run may read: one pinned span, else every span (a superset of a window)."""
    data = config.data
    span = str(data.span) if data.span != "latest" and data.train_spans == 1 else "*"
    return os.path.join(data.input_base, data.span_pattern.replace("{SPAN}", span))


def inputs_fingerprint(config: PipelineConfig) -> dict[str, str]:
    """Everything that, if changed, could change what a run does."""
    return {
        "config": config.model_dump_json(),
        "data": fingerprints.files_fingerprint(_span_pattern(config)),
        # a curated schema edited in place keeps its path, so the config alone misses it
        "schema": fingerprints.files_fingerprint(config.data.schema_path or ""),
        # its replayed summary names served versions: they must still be there
        "served": fingerprints.files_fingerprint(os.path.join(config.serving_model_dir, "*")),
        "code": fingerprints.source_fingerprint(
            [fingerprints.package_dir(name) for name in fingerprints.REPO_PACKAGES]),
        "tfx": metadata.version("tfx"),
        "metadata_store": _store_identity(config),
    }


def _store_identity(config: PipelineConfig) -> str:
    """A new or replaced metadata store must not inherit an old verdict."""
    try:
        return str(os.stat(config.pipeline.metadata_path).st_ino)
    except OSError:
        return "missing"


def matching_run(config: PipelineConfig) -> Optional[dict]:
    """The record of the last completed run if its inputs equal today's, else None."""
    path = _record_path(config)
    if path is None or not config.pipeline.enable_cache or not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if record.get("inputs") == inputs_fingerprint(config) else None


def remember(config: PipelineConfig, run_id: Optional[str], summary_text: str) -> None:
    """Records a completed run so an identical re-run can be answered at once."""
    path = _record_path(config)
    if path is None:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    record = {"inputs": inputs_fingerprint(config), "run_id": run_id, "summary": summary_text}
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        json.dump(record, handle, indent=1)
    os.replace(temporary, path)


def forget(config: PipelineConfig) -> None:
    """Drops the last successful run's record after a failed run, so the next `mlops run`
    runs again instead of reporting that nothing changed."""
    path = _record_path(config)
    if path and os.path.exists(path):
        os.remove(path)
