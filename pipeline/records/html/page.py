"""The HTML report of one run: a self-contained page (inline CSS and SVG, no script, no
network), readable on a laptop screen and printable.

`build` takes everything already read (the run's RunReport, the other runs' records, the
slice metrics, statistics and anomalies, the pushed version's rollout) and only formats it,
so it is tested without a pipeline run. Every text from a run or its data goes through `_e`
(html.escape).
"""
from __future__ import annotations

import datetime
import math
from html import escape
from typing import Iterable, Optional, Sequence

from pipeline.records import rollouts
from pipeline.records.html import svg
from pipeline.records.html.artifacts import Anomaly, FeatureSummary, SliceMetrics
from pipeline.records.rollouts import RolloutSummary
from pipeline.records.summary import MetricCheck, RunReport, _tfma_metric_name, _threshold_text

MAX_RUNS_LISTED = 12
MAX_INTERVALS_LISTED = 30


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _fmt(value: Optional[float], digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:.{digits}f}"


def _number(value: float) -> str:
    """A statistic: integers as integers, large values compact, small ones to 4 digits."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1e7:
        return f"{value:.4g}"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"


def _time(iso: Optional[str]) -> str:
    if not iso:
        return ""
    try:
        moment = datetime.datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_e(title)}</h2>{body}</section>'


def _table(head: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    """Rows of already-escaped cells under an escaped heading."""
    header = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return (f'<table class="{css}"><thead><tr>{header}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


# -- the run -----------------------------------------------------------------------------

def _verdict(report: RunReport) -> tuple[str, str]:
    if report.error:
        return "failed", "Run failed"
    if report.pushed_version:
        return "ok", f"Pushed version {report.pushed_version}"
    if report.blessed is False:
        return "bad", "Not blessed"
    return "muted", "Nothing pushed"


def header(report: RunReport) -> str:
    """The page's title with the run's verdict badge, and the run, spans and finish time."""
    css, verdict = _verdict(report)
    facts = []
    if report.run_id:
        facts.append(f"run <code>{_e(report.run_id)}</code>")
    if report.span is not None:
        spans = (f"span {report.span}" if report.train_spans <= 1 else
                 f"spans {max(report.span - report.train_spans + 1, 0)}–{report.span}")
        facts.append(_e(spans))
    if report.finished_at:
        facts.append(f"finished {_e(_time(report.finished_at))}")
    return (f'<header><h1>{_e(report.pipeline_name)} <span class="badge {css}">'
            f"{_e(verdict)}</span></h1><p class=\"facts\">{' · '.join(facts)}</p></header>")


def outcome(report: RunReport, pushed_rollout: Optional[RolloutSummary] = None) -> str:
    """What the run decided: its error, whether it was blessed (and which thresholds
    failed), what was pushed or why nothing was, how the push's rollout went (or that none
    was recorded), and the model it trained."""
    lines = []
    if report.error:
        lines.append(f'<div class="error"><strong>Run failed:</strong><pre>{_e(report.error)}'
                     "</pre></div>")
    if report.blessed is True:
        lines.append('<p><span class="ok">Blessed</span>: every threshold holds.</p>')
    elif report.blessed is False:
        reasons = [f for check in report.metrics for f in check.failures] or [
            "evaluation thresholds not met"]
        lines.append('<p><span class="bad">Not blessed</span>:</p><ul>'
                     + "".join(f"<li>{_e(r)}</li>" for r in reasons) + "</ul>")
    if report.pushed_version:
        lines.append(f'<p class="pushed">Pushed version <strong>{_e(report.pushed_version)}'
                     f"</strong> to <code>{_e(report.pushed_path or '')}</code></p>")
        lines.append(f'<p>Rollout: <a href="#rollout">{_e(pushed_rollout.headline())}</a></p>'
                     if pushed_rollout else
                     f'<p class="muted">No rollout recorded for version '
                     f"{_e(report.pushed_version)}: with <code>serving.rollout.enabled</code>, "
                     "the embedded server records one once it serves the push, and "
                     "<code>mlops report</code> then shows it here.</p>")
    else:
        lines.append(f"<p>Nothing pushed: {_e(report.not_pushed_reason or 'no push recorded')}"
                     "</p>")
    if report.model_uri:
        lines.append(f'<p class="muted">Model: <code>{_e(report.model_uri)}</code></p>')
    return _section("outcome", "Outcome", "".join(lines))


def _baseline_text(report: RunReport) -> str:
    if report.baseline_compared:
        which = (f"served version {report.baseline_version}"
                 if report.baseline_version is not None else "the serving model")
        return f"Change is against {which}, the version being served when the run started."
    return "No serving model to compare with: change thresholds not applied."


def _baseline_cell(check: MetricCheck, compared: bool) -> str:
    """The served model's value: TFMA reports the candidate's and the change."""
    if not compared or check.change is None or check.value is None:
        return "–"
    return _fmt(check.value - check.change)


def _change_cell(check: MetricCheck, compared: bool) -> str:
    if not compared or check.change is None:
        return "–"
    allowed = check.threshold.max_regression
    higher = check.threshold.higher_is_better
    failed = allowed is not None and (check.change < -allowed if higher else
                                      check.change > allowed)
    better = check.change != 0 and (check.change > 0) == higher
    css = "bad" if failed else "ok" if better else ""
    return f'<span class="{css}">{check.change:+.4f}</span>'


def metrics(report: RunReport) -> str:
    """Each gated metric against its thresholds and the served model, or why there are
    no metrics."""
    if not report.metrics:
        why = ("the run stopped before the Evaluator" if report.error else
               "the Evaluator wrote none that could be read")
        return _section("metrics", "Metrics", f'<p class="muted">No metrics: {_e(why)}.</p>')
    compared = report.baseline_compared
    rows = [(_e(check.metric), f"<strong>{_fmt(check.value)}</strong>",
             _e(_threshold_text(check)), _baseline_cell(check, compared),
             _change_cell(check, compared),
             '<span class="ok">yes</span>' if check.passed else
             '<span class="bad">no</span>' + "".join(f"<br><small>{_e(f)}</small>"
                                                     for f in check.failures))
            for check in report.metrics]
    served = (f"served v{report.baseline_version}" if compared and
              report.baseline_version is not None else "baseline")
    body = (_table(("metric", "value", "threshold", served, "change", "holds"), rows,
                   "metrics") + f'<p class="note">{_e(_baseline_text(report))} '
            "Eval split, all rows.</p>")
    return _section("metrics", "Metrics against thresholds and the baseline", body)


# -- the model over time -----------------------------------------------------------------

def _with_metrics(history: Iterable[RunReport], report: RunReport) -> list[RunReport]:
    runs = {r.run_id: r for r in history if r.run_id}
    if report.run_id:
        runs[report.run_id] = report
    kept = [r for r in runs.values()
            if any(m.value is not None for m in r.metrics)]
    return sorted(kept, key=lambda r: (r.finished_at or "", r.run_id or ""))


def _short_time(iso: Optional[str]) -> str:
    text = _time(iso)
    return text[5:16] if len(text) >= 16 else text


def _plotted_bound(threshold) -> tuple[Optional[float], str]:
    if threshold is None:
        return None, ""
    if threshold.lower_bound is not None:
        return threshold.lower_bound, f"min {threshold.lower_bound:g}"
    if threshold.upper_bound is not None:
        return threshold.upper_bound, f"max {threshold.upper_bound:g}"
    return None, ""


def _point(run: RunReport, report: RunReport) -> svg.Point:
    """A run on the x axis: its version if it pushed one, else its time."""
    label = f"v{run.pushed_version}" if run.pushed_version else _short_time(run.finished_at)
    pushed = f", pushed v{run.pushed_version}" if run.pushed_version else ", not pushed"
    return svg.Point(label, f"run {run.run_id}, span {run.span}{pushed}",
                     filled=bool(run.pushed_version), current=run.run_id == report.run_id)


def over_time(history: Iterable[RunReport], report: RunReport) -> str:
    """The gated metrics across every run with metrics (chart and table), so a slow
    decline shows before a threshold fails."""
    runs = _with_metrics(history, report)
    if not runs:
        return _section("over-time", "The model over time",
                        '<p class="muted">No run has metrics yet.</p>')
    names = [m.metric for m in report.metrics] or list(dict.fromkeys(
        m.metric for r in runs for m in r.metrics))
    series = []
    newest_first = [report, *reversed(runs)]  # thresholds: this run's, else the newest
    for name in names:
        threshold = next((m.threshold for r in newest_first for m in r.metrics
                          if m.metric == name), None)
        values = [next((m.value for m in r.metrics if m.metric == name), None) for r in runs]
        bound, bound_text = _plotted_bound(threshold)
        series.append(svg.Series(name, values, bound, bound_text))
    points = [_point(r, report) for r in runs]
    chart = svg.line_chart(series, points, width=720 if len(runs) <= 24 else 980,
                           title="Key metrics of every run with metrics")
    pushed = sum(1 for r in runs if r.pushed_version)
    note = (f"{len(runs)} run{'s' if len(runs) != 1 else ''} with metrics, {pushed} pushed "
            "(filled). Dashed: the threshold.")
    if all(r.run_id != report.run_id for r in runs):
        note += " This run has no metrics: it is not plotted."
    elif len(runs) == 1:
        note += " The first run with metrics: the plot grows with each run."
    rows = [(_e(_time(r.finished_at)) + (" <strong>(this run)</strong>"
                                         if r.run_id == report.run_id else ""),
             _e("" if r.span is None else r.span),
             *[_fmt(next((m.value for m in r.metrics if m.metric == n), None)) for n in names],
             _e("yes" if r.blessed else "no" if r.blessed is False else "–"),
             _e(f"v{r.pushed_version}" if r.pushed_version else "–"))
            for r in reversed(runs[-MAX_RUNS_LISTED:])]
    table = _table(("finished", "span", *names, "blessed", "pushed"), rows, "runs")
    more = (f'<p class="note">The newest {MAX_RUNS_LISTED} of {len(runs)} runs listed.</p>'
            if len(runs) > MAX_RUNS_LISTED else "")
    return _section("over-time", "The model over time",
                    f'<div class="figure">{chart}</div><p class="note">{_e(note)}</p>'
                    f"{table}{more}")


# -- the rollout -------------------------------------------------------------------------

_FAILED, _PROMOTED = svg.PALETTE[1], svg.PALETTE[2]  # red, green
_VERDICT_CSS = {"pass": "ok", "fail": "bad", "hold": "muted", rollouts.PROMOTED: "ok",
                rollouts.ABORTED: "bad"}


def _rollout_chart(found: RolloutSummary) -> str:
    """The candidate's weight as steps: from the start, through each judged interval (red
    when it failed, hollow when held), to the end (100 % once promoted, 0 once aborted,
    the weight now while it runs)."""
    values: list[Optional[float]] = []
    points: list[svg.Point] = []
    if found.start_weight is not None:
        values.append(found.start_weight)
        points.append(svg.Point("start", f"started {_time(found.started_at)} "
                                         f"against version {found.champion}"))
    for interval in found.intervals:
        failed = interval.failed_checks()
        values.append(interval.weight)
        points.append(svg.Point(
            f"#{interval.number}",
            f"interval {interval.number}, judged {_time(interval.time)}: "
            f"{interval.verdict}{' on ' + ', '.join(failed) if failed else ''}, then "
            f"{interval.next}", filled=interval.verdict != "hold",
            colour=_FAILED if interval.verdict == "fail" else None))
    end = {rollouts.PROMOTED: (100.0, _PROMOTED), rollouts.ABORTED: (0.0, _FAILED)}
    final, colour = end.get(found.outcome, (found.weight, None))
    label = "now" if found.outcome == rollouts.IN_PROGRESS else found.outcome
    values.append(final)
    points.append(svg.Point(label, found.headline(), current=True, colour=colour))
    key = (("passed", svg.Point("", "")), ("held", svg.Point("", "", filled=False)),
           ("failed", svg.Point("", "", colour=_FAILED)),
           (label, svg.Point("", "", current=True, colour=colour)))
    return svg.line_chart([svg.Series("weight (%)", values, value_text="{:g}")], points,
                          steps=True, include=(0.0, 100.0), key=key,
                          title=f"Version {found.version}'s share of the requests per "
                                "interval")


def _check_cell(check: rollouts.CheckResult) -> str:
    """The value over its limit, a failing one red and named; what the value stands on (a
    p-value, the labelled counts) on hover."""
    limit = ("no limit" if check.threshold is None else f"max {check.threshold:.3g}")
    if check.value is None:
        value = '<span class="muted">not measured</span>'
    elif check.failed:
        value = f'<strong class="bad">{check.value:.3g} fail</strong>'
    else:
        value = _e(f"{check.value:.3g}")
    if check.detail:
        value = f'<span title="{_e(check.detail)}">{value}</span>'
    return f'{value}<br><small class="muted">{_e(limit)}</small>'


def rollout(found: Optional[RolloutSummary]) -> str:
    """The pushed version's automatic rollout: its outcome, the weight per interval (chart)
    and each interval's checks (table); nothing without one (`outcome` says so)."""
    if found is None:
        return ""
    against = f" against version {found.champion}" if found.champion is not None else ""
    css = _VERDICT_CSS.get(found.outcome, "")
    body = (f"<p>Version <strong>{found.version}</strong>{_e(against)}: "
            f'<span class="{css}">{_e(found.headline())}</span>.</p>'
            + (f'<p class="note">{_e(found.reason)}</p>' if found.reason else ""))
    if found.start_weight is None and not found.intervals:
        return _section("rollout", "Rollout",
                        body + '<p class="muted">No interval was judged.</p>')
    body += (f'<div class="figure">{_rollout_chart(found)}</div><p class="note">The '
             "candidate's share of the requests sent to the model's bare URL during each "
             "judged interval; a failed interval counts toward the abort threshold, a held one "
             "(too few requests) decides nothing.</p>")
    names = list(dict.fromkeys(c.name for i in found.intervals for c in i.checks))
    rows = []
    for interval in found.intervals[-MAX_INTERVALS_LISTED:]:
        by_name = {check.name: check for check in interval.checks}
        rows.append((_e(interval.number), _e(_time(interval.time)), _e(f"{interval.weight:g} %"),
                     _e(f"{interval.champion_requests:,} / {interval.candidate_requests:,}"),
                     *[_check_cell(by_name[n]) if n in by_name else "–" for n in names],
                     f'<span class="{_VERDICT_CSS.get(interval.verdict, "")}">'
                     f"{_e(interval.verdict)}</span>", _e(interval.next)))
    if rows:
        body += _table(("interval", "judged", "weight", "requests (champion / candidate)",
                        *names, "verdict", "then"), rows, "rollout")
    if len(found.intervals) > MAX_INTERVALS_LISTED:
        body += (f'<p class="note">The last {MAX_INTERVALS_LISTED} of '
                 f"{len(found.intervals)} intervals listed.</p>")
    return _section("rollout", "Rollout", body)


# -- slices ------------------------------------------------------------------------------

def slices(report: RunReport, found: Sequence[SliceMetrics]) -> str:
    """The metrics per slice, values outside the thresholds in red: reported, not gated."""
    if not found:
        why = ("no evaluation was read" if not report.evaluation_uri else
               "TFMA's output could not be read")
        return _section("slices", "Metrics by slice", f'<p class="muted">No slice metrics: '
                        f"{_e(why)}.</p>")
    available = {name for s in found for name in s.values}
    columns = [(check.metric, _tfma_metric_name(check.metric, dict.fromkeys(available)))
               for check in report.metrics] or [
        (name, name) for name in sorted(available) if name != "example_count"]
    bounds = {check.metric: check.threshold for check in report.metrics}
    rows = []
    for item in found:
        cells = [_e(item.label), _e(_number(item.examples)) if item.examples is not None
                 else "–"]
        for shown, key in columns:
            value = item.values.get(key)
            threshold = bounds.get(shown)
            low = (threshold is not None and value is not None and not math.isnan(value) and (
                (threshold.lower_bound is not None and value < threshold.lower_bound) or
                (threshold.upper_bound is not None and value > threshold.upper_bound)))
            cells.append(f'<span class="{"bad" if low else ""}">{_fmt(value)}</span>')
        rows.append(cells)
    body = (_table(("slice", "examples", *[shown for shown, _ in columns]), rows, "slices")
            + '<p class="note">Candidate model, eval split. Slices are reported, not gated: '
            "a value outside the run's thresholds is red. A slice holding one class only "
            "(every row tipped, or none) has no meaningful AUC: TFMA reports 0 or n/a.</p>")
    return _section("slices", "Metrics by slice", body)


# -- the data ----------------------------------------------------------------------------

def _missing_cell(feature: Optional[FeatureSummary]) -> str:
    if feature is None:
        return "–"
    text = f"{feature.missing:,} ({100 * feature.missing_fraction:.1f} %)"
    return f'<span class="{"bad" if feature.missing else "muted"}">{_e(text)}</span>'


def _summary_cell(feature: FeatureSummary) -> str:
    if feature.kind == "numeric":
        lines = (("mean", "std dev"), ("min", "median", "max"), ("zeros",))
        text = "<br>".join(" · ".join(
            f'<span class="nw">{_e(k)} {_e(_number(feature.numbers[k]))}</span>'
            for k in line if k in feature.numbers) for line in lines)
    elif feature.kind == "text":
        text = f"{_e(_number(feature.unique or 0))} distinct"
    else:
        text = ""
    return f'<div class="summary">{text}</div>'



def _distribution_cell(feature: FeatureSummary) -> str:
    if feature.histogram:
        return svg.histogram(feature.histogram, title=f"{feature.name}: distribution")
    if feature.top_values:
        return svg.bars(feature.top_values, title=f"{feature.name}: most frequent values")
    return '<span class="muted">no values</span>'


def statistics(found: dict[str, list[FeatureSummary]], used: Optional[dict[str, str]] = None
               ) -> str:
    """One row per column: counts and distribution of the first split, missing per split."""
    if not found:
        return _section("statistics", "Feature statistics",
                        '<p class="muted">No statistics: the StatisticsGen did not run or '
                        "its output could not be read.</p>")
    splits = list(found)
    first = found[splits[0]]
    by_split = {split: {f.name: f for f in features} for split, features in found.items()}
    used = used or {}
    ordered = sorted(first, key=lambda f: (f.name not in used, used.get(f.name, "") != "label",
                                           f.name))
    rows = []
    for feature in ordered:
        role = used.get(feature.name)
        name = f"<strong>{_e(feature.name)}</strong>" if role else _e(feature.name)
        name += f'<br><small class="muted">{_e(role or "not used")}</small>'
        rows.append((name, _e(feature.kind), _e(f"{feature.present:,}"),
                     *[_missing_cell(by_split[s].get(feature.name)) for s in splits],
                     _summary_cell(feature), _distribution_cell(feature)))
    counts = ", ".join(f"{split} {max((f.present + f.missing for f in fs), default=0):,} rows"
                       for split, fs in found.items())
    body = (f'<p class="note">Span statistics from TFDV ({_e(counts)}); distribution and '
            f"summary of the {_e(splits[0])} split.</p>"
            + _table(("column", "type", f"values ({splits[0]})",
                      *[f"missing ({s})" for s in splits], "summary", "distribution"),
                     rows, "features"))
    return _section("statistics", "Feature statistics", body)


def anomalies(found: Optional[list[Anomaly]], report: RunReport) -> str:
    """The ExampleValidator's anomalies, or why none could be shown (None: not run or
    not readable)."""
    if found is None:
        text = ("The ExampleValidator did not run." if not report.anomalies_uri else
                "The anomalies could not be read.")
        return _section("anomalies", "Anomalies", f'<p class="muted">{_e(text)}</p>')
    if not found:
        return _section("anomalies", "Anomalies",
                        '<p class="ok">None: every split matches the schema.</p>')
    rows = [(_e(a.split), _e(a.feature or "(data set)"),
             f'<span class="{"bad" if a.severity == "error" else ""}">{_e(a.severity)}</span>',
             _e(a.description)) for a in found]
    return _section("anomalies", "Anomalies",
                    _table(("split", "feature", "severity", "description"), rows, "anomalies"))


# -- the components ----------------------------------------------------------------------

def components(report: RunReport) -> str:
    """Each component's state and time, with bars, to see where a run's time went."""
    if not report.components:
        return _section("components", "Components",
                        '<p class="muted">No component was recorded.</p>')
    longest = max((c.seconds or 0.0 for c in report.components), default=0.0) or 1.0
    state_css = {"done": "ok", "cached": "cached", "failed": "bad", "not run": "muted"}
    rows = [(_e(c.name), f'<span class="{state_css.get(c.state, "")}">{_e(c.state)}</span>',
             "" if c.seconds is None else _e(f"{c.seconds:.1f} s"),
             "" if not c.seconds else
             f'<span class="timebar" style="width:{100 * c.seconds / longest:.0f}%"></span>')
            for c in report.components]
    total = sum(c.seconds or 0.0 for c in report.components)
    return _section("components", "Components",
                    _table(("component", "state", "time", ""), rows, "components")
                    + f'<p class="note">{_e(f"{total:.1f} s in components.")}</p>')


# -- the page ----------------------------------------------------------------------------

CSS = """
:root { --ink:#1d2330; --muted:#667085; --line:#d0d5dd; --ok:#137333; --bad:#b3261e;
        --accent:#4a7fb5; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: var(--ink); margin: 0 auto; padding: 20px 28px 40px; max-width: 1180px; }
header { border-bottom: 2px solid var(--ink); margin-bottom: 8px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 26px 0 8px; padding-bottom: 3px;
     border-bottom: 1px solid var(--line); }
.facts { color: var(--muted); margin: 0 0 10px; }
nav { font-size: 13px; margin: 6px 0 0; }
nav a { color: var(--accent); margin-right: 12px; text-decoration: none; }
section a { color: var(--accent); }
.badge { font-size: 14px; vertical-align: middle; padding: 2px 10px; border-radius: 12px;
         border: 1px solid currentColor; margin-left: 8px; }
.ok { color: var(--ok); } .bad, .failed { color: var(--bad); } .muted { color: var(--muted); }
.cached { color: #1a6e8e; }
.badge.failed, .badge.bad { background: #fdecea; } .badge.ok { background: #e6f4ea; }
table { border-collapse: collapse; margin: 6px 0 8px; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px 5px 0; text-align: left;
         vertical-align: top; }
th { font-weight: 600; border-bottom: 2px solid var(--line); white-space: nowrap; }
table.metrics td:nth-child(2), table.slices td:nth-child(n+2), table.runs td:nth-child(n+3) {
  font-variant-numeric: tabular-nums; }
table.metrics td:nth-child(3) { white-space: nowrap; }
table.features { width: 100%; }
table.features td { padding-top: 7px; }
.summary { font-size: 12.5px; color: #344054; } .nw { white-space: nowrap; }
table.components td:nth-child(4) { width: 260px; }
table.rollout td { font-variant-numeric: tabular-nums; white-space: nowrap; }
.timebar { display: inline-block; height: 10px; background: var(--accent); border-radius: 2px;
           min-width: 2px; }
code { font-size: 13px; background: #f2f4f7; padding: 1px 4px; border-radius: 3px;
       word-break: break-all; }
.note { color: var(--muted); font-size: 13px; margin: 2px 0 10px; }
.error { border-left: 4px solid var(--bad); background: #fdecea; padding: 6px 12px; }
.error pre { white-space: pre-wrap; margin: 4px 0; font-size: 13px; }
.figure { overflow-x: auto; }
svg { display: block; }
svg text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
           fill: #344054; }
svg text.legend { font-size: 13px; fill: var(--ink); }
footer { margin-top: 30px; color: var(--muted); font-size: 12px; }
@media print {
  @page { size: A4; margin: 12mm; }
  body { font-size: 10pt; padding: 0; max-width: none; }
  table { font-size: 9pt; }
  svg.chart { width: 100%; height: auto; }
  svg.bars, svg.hist { width: 150px; height: auto; }
  table.features td:first-child { word-break: break-all; }
  nav { display: none; }
  section { break-inside: avoid-page; }
  table.features { break-inside: auto; }
  tr, svg { break-inside: avoid; }
  h2 { break-after: avoid; }
  .badge, .error, .timebar, code { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

_NAV = (("outcome", "Outcome"), ("metrics", "Metrics"), ("over-time", "Over time"),
        ("slices", "Slices"), ("statistics", "Statistics"), ("anomalies", "Anomalies"),
        ("components", "Components"))


def _page(title: str, body: str, generated_at: Optional[str]) -> str:
    generated_at = generated_at or datetime.datetime.now(datetime.timezone.utc).isoformat()
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>{body}"
            f"<footer>Written by <code>mlops</code> at {_e(_time(generated_at))}. "
            "Self-contained: no script, no network.</footer></body></html>\n")


def build_history(pipeline_name: str, entries: Sequence, records: Sequence[RunReport],
                  generated_at: Optional[str] = None) -> str:
    """The cross-run page (`mlops history --html`): the model over time, then every run,
    newest first, as `mlops history` lists them (`history.HistoryEntry`)."""
    newest = max(records, key=lambda r: (r.finished_at or "", r.run_id or ""), default=None)
    chart = over_time(records, newest) if newest else _section(
        "over-time", "The model over time", '<p class="muted">No run has metrics yet.</p>')
    rows = [(_e(entry.time[:19].replace("T", " ")), f"<code>{_e(entry.run_id or '–')}</code>",
             _e(entry.spans or "–"),
             _e(entry.failed or ", ".join(f"{n} {v:.4f}" for n, v in entry.metrics.items())
                or "–"),
             _e("yes" if entry.blessed else f"no: {entry.verdict}" if entry.blessed is False
                else "–"),
             _e(f"v{entry.pushed_version}" if entry.pushed_version is not None
                else entry.not_pushed_reason or "–"),
             _e(entry.rollout or "–"),
             _e("push manifest only" if entry.source == "manifest" else "this machine"))
            for entry in entries]
    runs = _section("runs", "Every run", _table(
        ("time (UTC)", "run", "span", "metrics or failure", "blessed", "pushed", "rollout",
         "known from"), rows, "runs"))
    header_html = (f"<header><h1>{_e(pipeline_name)}: every run</h1>"
                   f'<p class="facts">{len(entries)} runs, '
                   f"{sum(e.pushed_version is not None for e in entries)} pushed</p></header>")
    return _page(f"{pipeline_name} history", header_html + chart + runs, generated_at)


def build_skew(pipeline_name: str, found, generated_at: Optional[str] = None) -> str:
    """A skew check's page (`mlops skew`): each feature's distance with its threshold,
    the drift when asked, and the anomalies (`skew.SkewReport`)."""
    def shifts(items) -> str:
        rows = [(_e(s.feature), _e(s.measure), _fmt(s.value), _e(f"{s.threshold:g}"),
                 '<span class="bad">shifted</span>' if s.exceeded else
                 '<span class="ok">ok</span>') for s in items]
        return _table(("feature", "measure", "value", "threshold", ""), rows, "metrics")

    verdict = (f'<span class="badge bad">{len(found.problems)} problem(s)</span>'
               if found.problems else '<span class="badge ok">no skew</span>')
    body = (f"<header><h1>{_e(pipeline_name)}: served requests {verdict}</h1>"
            f'<p class="facts">{found.requests} requests ({len(found.files)} files) against '
            f"the training data of version {found.version}</p></header>"
            + _section("skew", "Skew: requests against the training data", shifts(found.skew)))
    if found.drift:
        body += _section("drift", "Drift: against the previous requests", shifts(found.drift))
    body += _section("anomalies", "Anomalies against the schema", "".join(
        f"<p>{_e(a)}</p>" for a in found.anomalies) or '<p class="muted">None.</p>')
    return _page(f"{pipeline_name} skew, version {found.version}", body, generated_at)


def build(report: RunReport, history: Iterable[RunReport] = (),
          slice_metrics: Sequence[SliceMetrics] = (),
          feature_statistics: Optional[dict[str, list[FeatureSummary]]] = None,
          found_anomalies: Optional[list[Anomaly]] = None,
          used_columns: Optional[dict[str, str]] = None,
          generated_at: Optional[str] = None,
          pushed_rollout: Optional[RolloutSummary] = None) -> str:
    """The whole page, as text (a Rollout section only when the pushed version has one)."""
    title = f"{report.pipeline_name} run {report.run_id or ''}".strip()
    links = [*_NAV[:1], *([("rollout", "Rollout")] if pushed_rollout else []), *_NAV[1:]]
    nav = "<nav>" + "".join(f'<a href="#{a}">{_e(t)}</a>' for a, t in links) + "</nav>"
    body = "".join((header(report).replace("</header>", nav + "</header>"),
                    outcome(report, pushed_rollout), rollout(pushed_rollout),
                    metrics(report), over_time(history, report), slices(report, slice_metrics),
                    statistics(feature_statistics or {}, used_columns),
                    anomalies(found_anomalies, report), components(report)))
    return _page(title, body, generated_at)
