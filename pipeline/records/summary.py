"""What happened in a pipeline run, read back from ML Metadata, and its ten-second summary.

The report is built from the metadata store rather than from logs, so it tells the same
story whichever runner executed the run: each component's status and time, the span, the
evaluation metrics against the configured thresholds, the blessing (and why not), and the
pushed version or why nothing was pushed.
"""
from __future__ import annotations

import dataclasses
import datetime
import io
from typing import Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from rich.console import Console
from rich.table import Table

from pipeline.definition.config import PipelineConfig, Threshold
from pipeline.runtime.console import log_console

_STATE = metadata_store_pb2.Execution.State
_STATE_NAMES = {_STATE.COMPLETE: "done", _STATE.CACHED: "cached", _STATE.FAILED: "failed",
                _STATE.RUNNING: "running", _STATE.NEW: "started", _STATE.CANCELED: "canceled"}
COMPONENT_ORDER = ("CsvExampleGen", "StatisticsGen", "SchemaGen", "ImportSchemaGen",
                   "ExampleValidator", "DataValidationGate", "Transform", "Trainer",
                   "ServingBaseline", "Evaluator", "Pusher")


@dataclasses.dataclass
class ComponentStatus:
    """One component's outcome in a run, as the summary table shows it."""

    name: str
    state: str  # done | cached | failed | not run | ...
    seconds: Optional[float] = None


@dataclasses.dataclass
class MetricCheck:
    """One threshold of `evaluation:` against the candidate: its value, its change from
    the served model, and why it failed (empty: it passed)."""

    metric: str
    value: Optional[float]
    change: Optional[float]  # candidate minus baseline, when a baseline was compared
    threshold: Threshold
    failures: list[str]

    @property
    def passed(self) -> bool:
        """No bound or regression check failed for this metric."""
        return not self.failures


@dataclasses.dataclass
class RunReport:
    """What one run did, read from ML Metadata and the artifacts: printed at the end of
    `mlops run`, kept as its record, and the source of its HTML page."""

    pipeline_name: str
    run_id: Optional[str]
    components: list[ComponentStatus]
    span: Optional[int] = None
    train_spans: int = 1  # the window read, ending at `span`
    examples_uri: Optional[str] = None  # what ExampleGen wrote this run
    metrics: list[MetricCheck] = dataclasses.field(default_factory=list)
    evaluated: bool = False
    blessed: Optional[bool] = None
    baseline_compared: bool = False
    pushed_version: Optional[str] = None
    pushed_path: Optional[str] = None
    not_pushed_reason: Optional[str] = None
    error: Optional[str] = None
    model_uri: Optional[str] = None  # the model the Trainer wrote (or reused) this run
    baseline_version: Optional[int] = None  # the served version it was compared with
    evaluation_uri: Optional[str] = None
    statistics_uri: Optional[str] = None
    schema_uri: Optional[str] = None
    anomalies_uri: Optional[str] = None
    finished_at: Optional[str] = None  # ISO time, UTC

    @property
    def succeeded(self) -> bool:
        """The run completed: a model not blessed or not pushed is still a success."""
        return self.error is None

    @property
    def exit_code(self) -> int:
        """0 when the run completed (pushed or rightly not); 1 when it failed."""
        return 0 if self.succeeded else 1


def _node_name(store, execution, pipeline_name: str) -> str:
    for context in store.get_contexts_by_execution(execution.id):
        if context.name.startswith(pipeline_name + "."):
            return context.name[len(pipeline_name) + 1:]
    return execution.type


def _outputs(store, execution_id: int) -> dict[str, list[metadata_store_pb2.Artifact]]:
    events = [e for e in store.get_events_by_execution_ids([execution_id])
              if e.type in (metadata_store_pb2.Event.OUTPUT,
                            metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    outputs: dict[str, list] = {}
    for event in events:
        key = event.path.steps[0].key if event.path.steps else ""
        outputs.setdefault(key, []).append(artifacts[event.artifact_id])
    return outputs


def _prop(artifact, name: str):
    for props in (artifact.custom_properties, artifact.properties):
        if name in props:
            value = props[name]
            return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return None


def _metric_checks(evaluation_uri: str, config: PipelineConfig) -> tuple[list[MetricCheck], bool]:
    import tensorflow_model_analysis as tfma

    values: dict[str, float] = {}
    changes: dict[str, float] = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue  # overall slice only; per-slice numbers stay in the artifact
        for entry in slice_metrics.metric_keys_and_values:
            key, value = entry.key, entry.value
            if key.model_name == "baseline" or not value.HasField("double_value"):
                continue
            target = changes if key.is_diff else values
            target[key.name] = value.double_value.value
    failures: dict[str, list[str]] = {}
    result = tfma.load_validation_result(evaluation_uri)
    for per_slice in result.metric_validations_per_slice:
        for failure in per_slice.failures:
            failures.setdefault(failure.metric_key.name, []).append(_failure_text(failure))
    checks = []
    for threshold in config.evaluation.thresholds:
        name = _tfma_metric_name(threshold.metric, values)
        checks.append(MetricCheck(threshold.metric, values.get(name), changes.get(name),
                                  threshold, failures.get(name, [])))
    return checks, bool(changes)


def _failure_text(failure) -> str:
    """'auc 0.7100 is below the lower bound 0.8' from a TFMA ValidationFailure."""
    name = failure.metric_key.name
    value = failure.metric_value.double_value.value
    threshold = failure.metric_threshold
    if failure.metric_key.is_diff:
        allowed = threshold.change_threshold.absolute.value
        return f"{name} changed by {value:+.4f} against the serving model (allowed {allowed:+g})"
    bounds = threshold.value_threshold
    if bounds.HasField("lower_bound") and value < bounds.lower_bound.value:
        return f"{name} {value:.4f} is below the lower bound {bounds.lower_bound.value:g}"
    if bounds.HasField("upper_bound") and value > bounds.upper_bound.value:
        return f"{name} {value:.4f} is above the upper bound {bounds.upper_bound.value:g}"
    return failure.message or f"{name} {value:.4f} fails its threshold"


def _tfma_metric_name(class_name: str, values: dict[str, float]) -> str:
    """TFMA reports Keras metrics under their snake_case names
    (BinaryAccuracy -> binary_accuracy)."""
    snake = "".join("_" + c.lower() if c.isupper() else c for c in class_name).lstrip("_")
    for candidate in (snake, class_name.lower(), class_name):
        if candidate in values:
            return candidate
    return snake


def collect(config: PipelineConfig, connection_config, run_id: str,
            error: Optional[BaseException] = None, read_metrics: bool = True) -> RunReport:
    """Reads the run `run_id` from the metadata store (None: it recorded nothing).

    `read_metrics=False` leaves out the metric values (TFMA's output, which takes TFMA,
    seconds to import, to read): components, span, verdict and push only.
    """
    store = metadata_store.MetadataStore(connection_config)
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    report = RunReport(config.pipeline.name, run.name if run else None, [],
                       train_spans=config.data.train_spans, error=_describe_error(error),
                       finished_at=datetime.datetime.now(datetime.timezone.utc).isoformat())
    if run is None:
        report.not_pushed_reason = "no pipeline run was recorded"
        return report

    seen: dict[str, ComponentStatus] = {}
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        name = _node_name(store, execution, config.pipeline.name)
        seconds = max(0.0, (execution.last_update_time_since_epoch
                            - execution.create_time_since_epoch) / 1000)
        state = _STATE_NAMES.get(execution.last_known_state, "unknown")
        seen[name] = ComponentStatus(name, state, seconds)
        outputs = _outputs(store, execution.id)
        if name == "CsvExampleGen" and outputs.get("examples"):
            span = _prop(outputs["examples"][0], "span")
            report.span = int(span) if span is not None else None
            report.examples_uri = outputs["examples"][0].uri
        elif name == "Trainer" and outputs.get("model"):
            report.model_uri = outputs["model"][0].uri
        elif name == "StatisticsGen" and outputs.get("statistics"):
            report.statistics_uri = outputs["statistics"][0].uri
        elif name in ("SchemaGen", "ImportSchemaGen") and outputs.get("schema"):
            report.schema_uri = outputs["schema"][0].uri
        elif name == "ExampleValidator" and outputs.get("anomalies"):
            report.anomalies_uri = outputs["anomalies"][0].uri
        elif name == "ServingBaseline" and outputs.get("model"):
            served = _prop(outputs["model"][0], "served_version")
            report.baseline_version = int(served) if served else None
        elif name == "Evaluator" and state in ("done", "cached"):
            _read_evaluation(report, outputs, config, read_metrics)
        elif name == "Pusher" and state in ("done", "cached") and outputs.get("pushed_model"):
            _read_push(report, outputs["pushed_model"][0], state)

    order = [n for n in COMPONENT_ORDER if n in seen or _in_pipeline(n, config)]
    report.components = [seen.get(n, ComponentStatus(n, "not run")) for n in order]
    if report.pushed_version is None and report.not_pushed_reason is None:
        report.not_pushed_reason = ("the run stopped before the Pusher" if error else
                                    "the Pusher did not run")
    return report


def _in_pipeline(name: str, config: PipelineConfig) -> bool:
    if name == "ImportSchemaGen":
        return bool(config.data.schema_path)
    if name == "SchemaGen":
        return not config.data.schema_path
    return True


def _read_evaluation(report: RunReport, outputs: dict, config: PipelineConfig,
                     read_metrics: bool = True) -> None:
    if outputs.get("blessing"):
        blessed = _prop(outputs["blessing"][0], "blessed")
        report.blessed = bool(blessed) if blessed is not None else None
    if outputs.get("evaluation"):
        report.evaluation_uri = outputs["evaluation"][0].uri
        if not read_metrics:
            return
        try:
            report.metrics, report.baseline_compared = _metric_checks(
                outputs["evaluation"][0].uri, config)
            report.evaluated = True
        except Exception:  # a report must not fail on a missing or foreign artifact
            report.evaluated = False


def _read_push(report: RunReport, pushed_model, state: str) -> None:
    if _prop(pushed_model, "pushed") == 1 and state == "done":
        report.pushed_version = str(_prop(pushed_model, "pushed_version"))
        report.pushed_path = _prop(pushed_model, "pushed_destination")
    elif state == "cached":
        report.not_pushed_reason = "nothing changed since the last run (all cached)"
    else:
        report.not_pushed_reason = _prop(pushed_model, "skipped_reason") or "model not blessed"


def _describe_error(error: Optional[BaseException]) -> Optional[str]:
    if error is None:
        return None
    text = str(error).strip() or type(error).__name__
    return text


# -- rendering ---------------------------------------------------------------------------

def _format(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def _threshold_text(check: MetricCheck) -> str:
    parts = []
    t = check.threshold
    if t.lower_bound is not None:
        parts.append(f">= {t.lower_bound:g}")
    if t.upper_bound is not None:
        parts.append(f"<= {t.upper_bound:g}")
    if t.max_regression is not None:
        sign = "" if t.max_regression == 0 else "-" if t.higher_is_better else "+"
        parts.append(f"change {'>=' if t.higher_is_better else '<='} {sign}{t.max_regression:g}")
    return "; ".join(parts)


def render(report: RunReport, console: Optional[Console] = None) -> None:
    """Prints the summary: components and times, metrics against thresholds, and the
    verdict (pushed, or why not)."""
    console = console or log_console()
    heading = f"[bold]{report.pipeline_name}[/]"
    if report.span is not None:
        heading += f", span {report.span}"
        if report.train_spans > 1:
            heading += f" and up to {report.train_spans - 1} before it"
    if report.run_id:
        heading += f", run {report.run_id}"
    console.print(heading, highlight=False)
    components = Table(show_edge=False)
    components.add_column("component")
    components.add_column("status")
    components.add_column("time", justify="right")
    styles = {"done": "green", "cached": "cyan", "failed": "bold red", "not run": "dim"}
    for item in report.components:
        components.add_row(item.name, f"[{styles.get(item.state, '')}]{item.state}[/]",
                           "" if item.seconds is None else f"{item.seconds:.1f}s")
    console.print(components)

    if report.metrics:
        metrics = Table(title="Evaluation (eval split, all rows)", title_justify="left",
                        show_edge=False)
        for column in ("metric", "value", "change", "threshold", "ok"):
            metrics.add_column(column)
        for check in report.metrics:
            metrics.add_row(check.metric, _format(check.value),
                            _format(check.change) if report.baseline_compared else "-",
                            _threshold_text(check),
                            "[green]yes[/]" if check.passed else "[bold red]no[/]")
        console.print(metrics)
        if not report.baseline_compared:
            console.print("No serving model to compare with: change thresholds not applied.")

    if report.error:
        console.print(f"[bold red]Run failed[/]: {report.error}")
    if report.blessed is True:
        console.print("[green]Blessed[/]: every threshold holds.")
    elif report.blessed is False:
        reasons = [m for check in report.metrics for m in check.failures] or [
            "evaluation thresholds not met"]
        console.print("[bold red]Not blessed[/]: " + "; ".join(reasons))
    if report.pushed_version:
        console.print(f"[green]Pushed[/] version {report.pushed_version} -> {report.pushed_path}")
    else:
        console.print(f"Nothing pushed: {report.not_pushed_reason}")


def render_text(report: RunReport, width: int = 100) -> str:
    """The summary as plain text (kept with the run, shown again for unchanged re-runs)."""
    console = log_console(width=width, file=io.StringIO(), color_system=None)
    render(report, console)
    return console.file.getvalue()
