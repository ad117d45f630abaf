"""A run's HTML report: `mlops report [RUN]`, and the one each `mlops run` writes.

The page (`page.build`) is written beside the run's artifacts, under
`<pipeline.root>/.mlops/reports/<run>.html`, from the run's record (`records.store`), the
other runs' records (the model over time), three of its artifacts (TFMA's metrics by
slice, TFDV's statistics and the ExampleValidator's anomalies: `artifacts`) and the pushed
version's rollout decisions in the serving directory (`records.rollouts`), which a page
written again later (`mlops report`) shows as far as the rollout got.
"""
from __future__ import annotations

import os
import re
from typing import Optional

from pipeline.definition.config import PipelineConfig
from pipeline.errors import UserError
from pipeline.records.summary import RunReport

REPORTS_DIR = os.path.join(".mlops", "reports")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class ReportError(UserError):
    """No such run, or no run at all."""


def report_path(config: PipelineConfig, run_id: str) -> str:
    """Where a run's page goes: beside the artifacts, the run id made safe as a file name."""
    return os.path.join(config.pipeline.root, REPORTS_DIR, _UNSAFE.sub("_", run_id) + ".html")


def used_columns(config: PipelineConfig) -> dict[str, str]:
    """Each column the config uses, with its role (shown beside its statistics)."""
    roles = {name: f"{kind} feature" for kind in ("numeric", "categorical", "bucketized")
             for name in getattr(config.features, kind)}
    return {**roles, config.label.column: "label"}


def render(config: PipelineConfig, report: RunReport) -> str:
    """The run's page as HTML text, from its record, the other runs' records, its
    evaluation, statistics and anomalies artifacts, and its pushed version's rollout."""
    from pipeline.records import rollouts, store
    from pipeline.records.html import artifacts, page

    pushed = (rollouts.rollout(config, int(report.pushed_version))
              if report.pushed_version else None)
    return page.build(report, history=store.load_all(config).values(),
                      slice_metrics=artifacts.slice_metrics(report.evaluation_uri),
                      feature_statistics=artifacts.feature_statistics(report.statistics_uri),
                      found_anomalies=artifacts.anomalies(report.anomalies_uri),
                      used_columns=used_columns(config), pushed_rollout=pushed)


def write(config: PipelineConfig, report: RunReport, output: Optional[str] = None) -> str:
    """Writes the run's report (to `output`, or beside its artifacts); returns its path."""
    path = os.path.abspath(output or report_path(config, report.run_id or "no-run"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = f"{path}.tmp"
    with open(staging, "w", encoding="utf-8") as handle:
        handle.write(render(config, report))
    os.replace(staging, path)
    return path


def write_history(config: PipelineConfig, entries: list, output: Optional[str] = None) -> str:
    """Writes the cross-run page (`mlops history --html`); returns its path."""
    from pipeline.records import store
    from pipeline.records.html import page

    path = os.path.abspath(output or os.path.join(config.pipeline.root, REPORTS_DIR,
                                                  "history.html"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    records = list(store.load_all(config).values())
    with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
        handle.write(page.build_history(config.pipeline.name, entries, records))
    os.replace(f"{path}.tmp", path)
    return path


def write_skew(config: PipelineConfig, found) -> str:
    """Writes a skew check's page beside the reports; returns its path."""
    from pipeline.records.html import page

    path = os.path.join(config.pipeline.root, REPORTS_DIR, f"skew-v{found.version}.html")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(f"{path}.tmp", "w", encoding="utf-8") as handle:
        handle.write(page.build_skew(config.pipeline.name, found))
    os.replace(f"{path}.tmp", path)
    return path


def find(config: PipelineConfig, run_id: Optional[str] = None) -> RunReport:
    """The record of run `run_id`, or of the newest run.

    Raises:
        ReportError: no readable record of `run_id` (the message names the three newest
            runs), or, without `run_id`, no run recorded at all.
    """
    from pipeline.records import store

    if run_id:
        found = store.load(config, run_id)
        if found is None:
            known = sorted(store.load_all(config), reverse=True)[:3]
            hint = f" (newest: {', '.join(known)})" if known else ""
            raise ReportError(f"no record of run {run_id!r} under "
                              f"{store.records_dir(config)}{hint}")
        return found
    records = store.load_all(config)
    if not records:
        raise ReportError(f"no runs recorded under {store.records_dir(config)}: "
                          "`mlops run` writes one per run")
    return max(records.values(), key=lambda r: (r.finished_at or "", r.run_id or ""))
