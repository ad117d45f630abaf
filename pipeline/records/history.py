"""`mlops history`: every run of the pipeline, newest first, one line each.

Three sources, each where the others cannot see:
- ML Metadata (the local store): which runs happened, when, and each component's outcome;
- the run records (`records.store`): the metrics, the verdict and the push, as the run's
  summary said them (metric values live in TFMA's output, which only TFMA reads);
- the push manifests in the serving directory: every pushed version's model and run, also
  for runs whose metadata is elsewhere (Kubeflow keeps it in the cluster) or gone;
- the rollout decisions in the serving directory (`records.rollouts`): how each pushed
  version's automatic rollout went, whoever pushed it.

Nothing here imports TensorFlow: a hundred runs answer in well under two seconds.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Optional

from pipeline.definition.config import PipelineConfig
from pipeline.records import rollouts, store, summary
from pipeline.records.summary import RunReport
from serving import versions

OUTCOMES = ("done", "cached", "failed", "not run")


@dataclasses.dataclass
class HistoryEntry:
    """One run as `mlops history` shows it."""

    run_id: str
    time: str  # ISO, UTC
    source: str  # "metadata" (this machine's store) or "manifest" (only a push manifest)
    spans: str = ""  # "3", or "1-3" for a window
    components: dict[str, str] = dataclasses.field(default_factory=dict)  # name -> state
    failed: Optional[str] = None  # "Component: why"
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    blessed: Optional[bool] = None
    verdict: str = ""  # why blessed or not (the thresholds that failed)
    pushed_version: Optional[int] = None
    not_pushed_reason: Optional[str] = None
    model_uri: Optional[str] = None
    rollout: str = ""  # the pushed version's rollout in a few words ("": none recorded)

    def line(self) -> str:
        """The entry as one line of text, whole (greppable)."""
        parts = [self.time[:19].replace("T", " "), f"run {self.run_id or '(unknown)'}"]
        if self.spans:
            parts.append(f"span {self.spans}")
        if self.components:
            counts = [f"{sum(s == o for s in self.components.values())} {o}"
                      for o in OUTCOMES if o in self.components.values()]
            parts.append(", ".join(counts))
        if self.failed:
            parts.append(f"failed at {self.failed}")
        if self.metrics:
            parts.append(" ".join(f"{name} {value:.4f}" for name, value in self.metrics.items()))
        if self.blessed is True:
            parts.append("blessed")
        elif self.blessed is False:
            parts.append(f"not blessed: {self.verdict}")
        if self.pushed_version is not None:
            parts.append(f"pushed version {self.pushed_version}")
            if self.rollout:
                parts.append(f"rollout {self.rollout}")
        elif self.not_pushed_reason and not self.failed and self.blessed is not False:
            parts.append(f"not pushed: {self.not_pushed_reason}")
        if self.source == "manifest":
            parts.append(f"(from the push manifest only; model {self.model_uri})")
        return "  ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The entry for `mlops history --json`."""
        return dataclasses.asdict(self)


def _iso(epoch_ms: int) -> str:
    return datetime.datetime.fromtimestamp(epoch_ms / 1000, datetime.timezone.utc).isoformat()


def _spans(report: RunReport) -> str:
    if report.span is None:
        return ""
    first = max(0, report.span - report.train_spans + 1)
    return str(report.span) if first == report.span else f"{first}-{report.span}"


def first_line(text: Optional[str]) -> str:
    """The first line of an error, for a one-line history entry ("" for none)."""
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _from_report(report: RunReport, time: str) -> HistoryEntry:
    failed = next((f"{c.name}: {first_line(report.error) or 'see its log'}"
                   for c in report.components if c.state == "failed"), None)
    if failed is None and report.error:
        failed = first_line(report.error)
    failures = [f for check in report.metrics for f in check.failures]
    verdict = "; ".join(failures) if failures else (
        "every threshold holds" if report.blessed else "")
    return HistoryEntry(
        run_id=report.run_id or "", time=time, source="metadata", spans=_spans(report),
        components={c.name: c.state for c in report.components}, failed=failed,
        metrics={c.metric: c.value for c in report.metrics if c.value is not None},
        blessed=report.blessed, verdict=verdict,
        pushed_version=int(report.pushed_version) if report.pushed_version else None,
        not_pushed_reason=report.not_pushed_reason, model_uri=report.model_uri)


def metadata_connection(config: PipelineConfig):
    """A read-only connection to the local store, or None where there is none."""
    if not os.path.isfile(config.pipeline.metadata_path):
        return None
    from ml_metadata.proto import metadata_store_pb2

    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = config.pipeline.metadata_path
    connection.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return connection


def _metadata_runs(config: PipelineConfig, connection) -> list[tuple[str, int]]:
    """(run id, start time in ms) of this pipeline's runs in the local store."""
    if connection is None:
        return []
    from ml_metadata import metadata_store

    metadata = metadata_store.MetadataStore(connection)
    runs = []
    for run in metadata.get_contexts_by_type("pipeline_run"):
        parents = metadata.get_parent_contexts_by_context(run.id)
        if any(parent.name == config.pipeline.name for parent in parents):
            runs.append((run.name, run.create_time_since_epoch))
    return runs


def _manifest_entries(config: PipelineConfig, known_runs: set[str],
                      known_models: set[str]) -> list[HistoryEntry]:
    """Pushed versions that no local run accounts for (Kubeflow runs, a lost store)."""
    base = config.serving_model_dir
    try:
        names = os.listdir(base)
    except OSError:
        return []
    entries = []
    for number in versions.version_numbers(names):
        try:
            with open(os.path.join(base, str(number), versions.MANIFEST_PATH)) as handle:
                manifest = versions.parse_manifest(handle.read()) or {}
        except OSError:
            continue
        run_id = str(manifest.get("pipeline_run") or "")
        if run_id in known_runs or manifest.get("model_uri") in known_models:
            continue
        entries.append(HistoryEntry(
            run_id=run_id, time=str(manifest.get("pushed_at", "")), source="manifest",
            pushed_version=number, model_uri=manifest.get("model_uri")))
    return entries


def history(config: PipelineConfig, limit: Optional[int] = None) -> list[HistoryEntry]:
    """The pipeline's runs, newest first (at most `limit`)."""
    records = store.load_all(config)
    connection = metadata_connection(config)
    entries = []
    for run_id, started in _metadata_runs(config, connection):
        # a run without a record (it crashed, or predates records): what the store knows
        report = records.get(run_id) or summary.collect(config, connection, run_id,
                                                          read_metrics=False)
        entries.append(_from_report(report, _iso(started)))
    known_runs = {entry.run_id for entry in entries}
    known_models = {r.model_uri for r in records.values() if r.run_id in known_runs}
    entries += _manifest_entries(config, known_runs, known_models)
    rolled_out = rollouts.rollouts(config)
    for entry in entries:
        if entry.pushed_version in rolled_out:
            entry.rollout = rolled_out[entry.pushed_version].short
    entries.sort(key=lambda entry: entry.time, reverse=True)
    return entries[:limit] if limit else entries
