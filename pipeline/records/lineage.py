"""`mlops lineage VERSION`: where a served version came from.

From the version's push manifest (in the serving directory, so it is there for every
pushed version, Kubeflow's included) to the run that pushed it: the data span and its
statistics, the schema and anomalies, the trained model, the evaluation, the verdict, and
the served version it was compared with. The run comes from its record or, failing that,
the local metadata store; where neither knows the run (its store is elsewhere or gone),
the manifest is all there is, and the answer says so. After the push, the version's
automatic rollout (`records.rollouts`, from the server's decisions in the serving
directory, so it is told whoever ran the pipeline): promoted or aborted, when, by what.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

from pipeline.definition.config import PipelineConfig
from pipeline.errors import UserError
from pipeline.records import history, rollouts, store, summary
from pipeline.records.summary import RunReport
from serving import versions


class LineageError(UserError):
    """The version asked for is not in the serving directory."""


@dataclasses.dataclass
class Lineage:
    """Where a served version came from: its push manifest and, when this machine
    recorded it, the run that trained it (`mlops lineage`)."""

    version: int
    path: str
    pushed_at: str
    model_uri: str
    run_id: str
    run: Optional[RunReport]  # None: only the manifest is known
    note: str = ""
    rollout: Optional[rollouts.RolloutSummary] = None  # None: no rollout recorded

    def to_json(self) -> dict[str, Any]:
        """The lineage for `mlops lineage --json`, with the run's whole record."""
        document = {key: getattr(self, key) for key in
                    ("version", "path", "pushed_at", "model_uri", "run_id", "note")}
        document["run"] = store.to_dict(self.run) if self.run else None
        document["rollout"] = self.rollout.to_json() if self.rollout else None
        return document

    def rollout_lines(self) -> list[str]:
        """The rollout's outcome and the server's reason (none without a rollout)."""
        found = self.rollout
        if found is None:
            return []
        against = f" against version {found.champion}" if found.champion is not None else ""
        return [f"  rollout{against}: {found.headline()}"] + (
            [f"    {found.reason}"] if found.reason else [])

    def lines(self) -> list[str]:
        """The lineage as text, one fact per line."""
        out = [f"version {self.version}: {self.path}",
               f"  pushed at {self.pushed_at or 'unknown'} from model {self.model_uri}",
               f"  run {self.run_id or '(not recorded)'}"]
        run = self.run
        if run is None:
            return out + self.rollout_lines() + [f"  {self.note}"]
        spans = history._spans(run)  # pylint: disable=protected-access
        out.append(f"  data: span {spans or '?'}, examples {run.examples_uri or '?'}")
        out.append(f"  statistics {run.statistics_uri or '?'}")
        out.append(f"  schema {run.schema_uri or '?'}, anomalies {run.anomalies_uri or '?'}")
        out.append(f"  trained model {run.model_uri or '?'}")
        if run.metrics:
            out.append("  evaluation " + (run.evaluation_uri or "?") + ": " + ", ".join(
                f"{c.metric} {c.value:.4f}" for c in run.metrics if c.value is not None))
        verdict = {True: "blessed", False: "not blessed", None: "no verdict"}[run.blessed]
        out.append(f"  {verdict}; " + (f"compared with served version {run.baseline_version}"
                                        if run.baseline_compared and run.baseline_version
                                        else "no served version to compare with"))
        out += self.rollout_lines()
        if self.note:
            out.append(f"  {self.note}")
        return out


def _manifest(config: PipelineConfig, version: int) -> tuple[str, dict]:
    path = os.path.join(config.serving_model_dir, str(version))
    if not os.path.isdir(path):
        present = versions.version_numbers(os.listdir(config.serving_model_dir)) \
            if os.path.isdir(config.serving_model_dir) else []
        raise LineageError(f"version {version} is not in {config.serving_model_dir} "
                           f"(versions there: {', '.join(map(str, present)) or 'none'})")
    try:
        with open(os.path.join(path, versions.MANIFEST_PATH)) as handle:
            return path, versions.parse_manifest(handle.read()) or {}
    except OSError:
        return path, {}


def _find_run(config: PipelineConfig, version: int, run_id: str,
              model_uri: str) -> Optional[RunReport]:
    records = store.load_all(config)
    if run_id in records:
        return records[run_id]
    # no run id (a manifest from before runs named themselves): the run that pushed it
    pushed_it = [r for r in records.values() if model_uri and r.model_uri == model_uri
                 and r.pushed_version == str(version)]
    if pushed_it:
        return pushed_it[0]
    connection = history.metadata_connection(config)
    if connection is None or not run_id:
        return None
    report = summary.collect(config, connection, run_id, read_metrics=False)
    return report if report.run_id else None


def lineage(config: PipelineConfig, version: int) -> Lineage:
    """The lineage of served version `version`.

    Raises:
        LineageError: no such version in the serving directory.
    """
    path, manifest = _manifest(config, version)
    run_id = str(manifest.get("pipeline_run") or "")
    model_uri = str(manifest.get("model_uri") or "")
    run = _find_run(config, version, run_id, model_uri)
    note = "" if run else ("no record or metadata of its run on this machine (a Kubeflow "
                           "run keeps them in the cluster; a removed store loses them): "
                           "only the push manifest is known")
    if not manifest:
        note = "the version has no push manifest: it was not pushed by this pipeline"
    return Lineage(version, path, str(manifest.get("pushed_at") or ""), model_uri,
                   run_id or (run.run_id if run and run.run_id else ""), run, note,
                   rollouts.rollout(config, version))
