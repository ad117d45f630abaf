"""The HTML run report, built from RunReport objects made here (no pipeline run), its
artifact readers on protos written here, its Rollout section on made-up decisions
(`rollout_records`), and `mlops report` on records written here.
The page on a real run, and in a real browser: tests/e2e/story/test_report.py."""
from __future__ import annotations

import os
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from pipeline.definition.config import Threshold, load_config
from pipeline.records import history as history_lib
from pipeline.records import html as html_report
from pipeline.records import rollouts, store
from pipeline.records.html import artifacts, page, svg
from pipeline.records.summary import ComponentStatus, MetricCheck, RunReport
from tests.conftest import mlops
from tests.pipeline.records.rollout_records import (
    aborted, at, end, promoted, write_decisions)

SECTIONS = ("outcome", "metrics", "over-time", "slices", "statistics", "anomalies",
            "components")


def checks(accuracy=0.91, auc=0.95, change=None, failures=()):
    return [MetricCheck("BinaryAccuracy", accuracy, change,
                        Threshold(metric="BinaryAccuracy", lower_bound=0.8, max_regression=0.01),
                        list(failures)),
            MetricCheck("AUC", auc, None if change is None else change / 2,
                        Threshold(metric="AUC", lower_bound=0.8, max_regression=0.01), [])]


def run(run_id="2026-11-26T04:05:54.983262", **fields) -> RunReport:
    values = dict(pipeline_name="chicago-taxi", run_id=run_id, span=3,
                  components=[ComponentStatus("CsvExampleGen", "done", 1.0),
                              ComponentStatus("Trainer", "done", 13.8),
                              ComponentStatus("Evaluator", "cached", 0.0),
                              ComponentStatus("Pusher", "done", 0.0)],
                  metrics=checks(), evaluated=True, blessed=True, pushed_version="2",
                  pushed_path="/srv/models/chicago-taxi/2", baseline_compared=True,
                  baseline_version=1, finished_at=f"{run_id}+00:00")
    values.update(fields)
    return RunReport(**values)


class _Parsed(HTMLParser):
    """Checks the page parses: tags balanced, and collects the text and section ids."""

    VOID = {"meta", "br", "circle", "line", "rect", "polyline", "path", "hr", "img"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ids: list[str] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.ids.append(dict(attrs).get("id"))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parsed(html: str) -> _Parsed:
    result = _Parsed(html)
    assert result.stack == [], f"unclosed tags: {result.stack}"
    return result


def section(html: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', html, re.S)
    assert match, f"no section {anchor}"
    return match.group(1)


def statistics() -> dict[str, list[artifacts.FeatureSummary]]:
    fare = artifacts.FeatureSummary("fare", "numeric", 95, 5, {"mean": 12.5, "max": 80.0},
                                    histogram=[(0, 10, 50), (10, 20, 30), (20, 80, 15)])
    company = artifacts.FeatureSummary("company", "text", 100, 0, unique=3,
                                       top_values=[("Flash Cab", 60), ("<Blue & Co>", 40)])
    extra = artifacts.FeatureSummary("trip_id", "text", 100, 0, unique=100)
    return {"train": [company, extra, fare],
            "eval": [artifacts.FeatureSummary("fare", "numeric", 20, 0),
                     artifacts.FeatureSummary("company", "text", 20, 0)]}


def test_every_section_with_numbers_thresholds_and_baseline():
    html = page.build(run(metrics=checks(0.9123, 0.9456, change=-0.004)),
                      slice_metrics=[artifacts.SliceMetrics("all rows", {
                          "example_count": 320, "binary_accuracy": 0.9123, "auc": 0.9456}),
                          artifacts.SliceMetrics("payment_type = Cash", {
                              "example_count": 184, "binary_accuracy": 0.75, "auc": 0.0})],
                      feature_statistics=statistics(), found_anomalies=[],
                      used_columns={"fare": "numeric feature", "company": "categorical feature"})
    result = parsed(html)
    assert result.ids == list(SECTIONS)
    metrics = section(html, "metrics")
    assert "0.9123" in metrics and "0.9456" in metrics
    assert "&gt;= 0.8; change &gt;= -0.01" in metrics
    assert "-0.0040" in metrics and "served version 1" in metrics
    assert "<th>served v1</th>" in metrics and "0.9163" in metrics  # 0.9123 + 0.004
    assert "Pushed version <strong>2</strong>" in html and "/srv/models/chicago-taxi/2" in html
    slices = section(html, "slices")
    assert "payment_type = Cash" in slices and "184" in slices
    assert '<span class="bad">0.7500</span>' in slices  # below the 0.8 bound, not gated
    stats = section(html, "statistics")
    assert stats.index("company") < stats.index("trip_id")  # used columns first
    assert "5 (5.0 %)" in stats and "not used" in stats
    assert stats.count('<svg class="hist"') == 1 and stats.count('<svg class="bars"') == 1
    assert "None: every split matches the schema" in section(html, "anomalies")
    components = section(html, "components")
    assert "13.8 s" in components and "cached" in components
    assert "<script" not in html and "http://" not in html.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # self-contained: nothing to fetch
    assert " src=" not in html and set(re.findall(r'href="(.)', html)) == {"#"}
    assert "@media print" in html


def test_text_from_the_run_and_its_data_is_escaped():
    hostile = "<script>alert('x')</script>"
    report = run(pipeline_name=f"taxi {hostile}", error=f"column {hostile} & more",
                 metrics=[], blessed=None, pushed_version=None,
                 not_pushed_reason="the run stopped <before> the Pusher")
    html = page.build(report, slice_metrics=[artifacts.SliceMetrics(f"c = {hostile}", {})],
                      feature_statistics={"train": [artifacts.FeatureSummary(
                          hostile, "text", 1, 0, unique=1, top_values=[(hostile, 1)])]},
                      found_anomalies=[artifacts.Anomaly("eval", hostile, "error", hostile)])
    parsed(html)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "column &lt;script&gt;" in html and "&amp; more" in html
    assert "stopped &lt;before&gt; the Pusher" in html


def test_the_model_over_time_plots_every_run_with_metrics():
    history = [run("2026-11-01T00:00:00", pushed_version="1", metrics=checks(0.85, 0.90),
                   baseline_compared=False, baseline_version=None),
               run("2026-11-02T00:00:00", pushed_version=None, blessed=False,
                   metrics=checks(0.70, 0.80, failures=["binary_accuracy 0.7 is below 0.8"])),
               run("2026-11-03T00:00:00", error="data validation failed", metrics=[],
                   pushed_version=None, blessed=None)]  # no metrics: not plotted
    current = run("2026-11-04T00:00:00", pushed_version="2", metrics=checks(0.88, 0.93))
    html = page.build(current, history=history)
    parsed(html)
    over_time = section(html, "over-time")
    chart = re.search(r'<svg class="chart".*?</svg>', over_time, re.S).group(0)
    assert chart.count("<polyline") == 2  # one line per metric
    assert chart.count("<circle") == 3 * 2 + 3  # three runs, two metrics, and the key
    assert ">v1<" in chart and ">v2<" in chart and ">11-02 00:00<" in chart
    assert 'stroke-dasharray="5 4"' in chart and "min 0.8" in chart  # the thresholds
    assert "3 runs with metrics, 2 pushed" in over_time
    table = over_time[over_time.index("<table"):]
    assert table.index("0.8800") < table.index("0.7000") < table.index("0.8500")  # newest first
    assert "(this run)" in over_time


def test_a_failed_run_shows_its_error_and_no_metrics():
    report = run(error="data validation failed:\n  - split train: feature 'fare': missing",
                 metrics=[], evaluated=False, blessed=None, pushed_version=None,
                 pushed_path=None, not_pushed_reason="the run stopped before the Pusher",
                 components=[ComponentStatus("CsvExampleGen", "done", 1.0),
                             ComponentStatus("DataValidationGate", "failed", 0.1),
                             ComponentStatus("Trainer", "not run")])
    html = page.build(report)
    parsed(html)
    assert '<span class="badge failed">Run failed</span>' in html
    assert "feature &#x27;fare&#x27;: missing" in section(html, "outcome")
    assert "Nothing pushed: the run stopped before the Pusher" in html
    assert "No metrics: the run stopped before the Evaluator" in section(html, "metrics")
    assert "No run has metrics yet" in section(html, "over-time")
    earlier = run("2026-11-01T00:00:00", pushed_version="1")
    over_time = section(page.build(report, history=[earlier]), "over-time")
    assert "This run has no metrics: it is not plotted." in over_time
    assert "min 0.8" in over_time  # the thresholds of the newest run that had them
    assert "No statistics" in section(html, "statistics")
    assert "did not run" in section(html, "anomalies")
    assert '<span class="bad">failed</span>' in section(html, "components")


def test_a_first_run_has_no_baseline():
    report = run(baseline_compared=False, baseline_version=None, pushed_version="1")
    html = page.build(report, history=[report])
    metrics = section(html, "metrics")
    assert "No serving model to compare with: change thresholds not applied." in metrics
    assert metrics.count("<td>–</td>") == 4  # no baseline values, no changes
    assert "The first run with metrics" in section(html, "over-time")


def test_a_blessing_refused_names_the_threshold():
    failure = "binary_accuracy changed by -0.0300 against the serving model (allowed -0.01)"
    html = page.build(run(metrics=checks(0.88, 0.93, change=-0.03, failures=[failure]),
                          blessed=False, pushed_version=None,
                          not_pushed_reason="model not blessed"))
    assert '<span class="badge bad">Not blessed</span>' in html
    assert failure in section(html, "outcome") and failure in section(html, "metrics")
    assert '<span class="bad">-0.0300</span>' in section(html, "metrics")


def test_nice_ticks_are_round_and_cover_the_range():
    assert svg.nice_ticks(0.976, 1.002, 6) == [0.98, 0.985, 0.99, 0.995, 1.0]
    assert svg.nice_ticks(0, 100) == [0, 25, 50, 75, 100]
    assert svg.nice_ticks(3, 3) == [3]


def test_a_far_threshold_does_not_flatten_the_plot():
    chart = svg.line_chart([svg.Series("AUC", [0.97, 0.99], 0.6, "min 0.6")],
                           [svg.Point("v1", ""), svg.Point("v2", "", current=True)])
    assert "min 0.6 (off scale)" in chart and 'stroke-dasharray="5 4" stroke-width' not in chart


# -- the rollout of the pushed version ----------------------------------------------------

def rows(html: str, css: str) -> list[list[str]]:
    """A table's body as the text of its cells (tags dropped, a <br> as a space)."""
    table = re.search(rf'<table class="{css}">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    return [[re.sub(r"<[^>]+>", "", cell.replace("<br>", " ")) for cell in
             re.findall(r"<td>(.*?)</td>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def chart_path(chart: str) -> list[tuple[float, float]]:
    points = re.search(r'<polyline [^>]*points="([^"]+)"', chart).group(1)
    return [tuple(map(float, pair.split(","))) for pair in points.split()]


def test_the_rollout_section_charts_the_weight_and_lists_each_intervals_checks():
    found = rollouts.summarise(2, promoted(2, champion=1))
    html = page.build(run(), pushed_rollout=found)
    result = parsed(html)
    assert result.ids == ["outcome", "rollout", *SECTIONS[1:]]
    assert '<a href="#rollout">Rollout</a>' in html.split("</nav>")[0]
    assert ('<p>Rollout: <a href="#rollout">promoted 2026-03-02 12:05:01 UTC by checks after 5 '
            "intervals, last weight 50 %</a></p>") in section(html, "outcome")
    rollout = section(html, "rollout")
    assert ('Version <strong>2</strong> against version 1: <span class="ok">promoted '
            "2026-03-02 12:05:01 UTC by checks") in rollout
    assert "passed every step: version 2 serves alone" in rollout

    [chart] = re.findall(r'<svg class="chart".*?</svg>', rollout, re.S)
    labels = re.findall(r'text-anchor="middle" class="tick">([^<]+)</text>', chart)
    assert labels == ["start", "#1", "#2", "#3", "#4", "#5", "promoted"]
    path = chart_path(chart)
    assert all(a[0] == b[0] or a[1] == b[1] for a, b in zip(path, path[1:]))  # steps only
    levels = sorted({y for _, y in path}, reverse=True)  # screen y: down is less
    assert len(levels) == 4 and path[0][1] == levels[0] and path[-1][1] == levels[-1]
    assert [y for _, y in path].count(levels[1]) == 6  # 25 %: from #1's end through #4
    markers = re.findall(r'<circle [^>]*fill="([^"]+)"[^>]*>(?:<title>([^<]*)</title>)?', chart)
    titles = [title for _, title in markers if title]
    assert len(titles) == 7  # the start, five intervals, the end (the key has no tooltip)
    assert titles[3] == ("weight (%) 25: interval 3, judged 2026-03-02 12:03:00 UTC: fail on "
                         "divergence, then stay")
    assert titles[2].startswith("weight (%) 25: interval 2")
    assert titles[2].endswith(": hold, then hold")
    fills = [fill for fill, title in markers if title]
    assert fills[2] == "#fff" and fills[3] == svg.PALETTE[1] and fills[-1] == svg.PALETTE[2]
    key = re.findall(r'class="tick">([^<]+)</text>', chart.split("</polyline>")[-1])
    assert key[-4:] == ["passed", "held", "failed", "promoted"]
    assert ">100<" in chart and ">0<" in chart  # the axis spans every share

    table = rows(rollout, "rollout")
    assert [row[0] for row in table] == ["1", "2", "3", "4", "5"]
    assert table[2] == ["3", "2026-03-02 12:03:00 UTC", "25 %", "540 / 61", "0 max 0.01",
                        "8 max 19.5", "0.231 fail max 0.1", "fail", "stay"]
    assert table[1][5:7] == ["not measured no limit", "not measured max 0.1"]
    assert ('<span title="p=0.0004"><strong class="bad">0.231 fail</strong></span>'
            in rollout)  # the failing check, red, what it stands on when hovered
    assert rollout.count('class="bad"') == 2  # that check and its interval's verdict
    header = re.search(r'<table class="rollout"><thead>(.*?)</thead>', rollout).group(1)
    assert re.findall(r"<th>([^<]+)</th>", header) == [
        "interval", "judged", "weight", "requests (champion / candidate)", "error_rate",
        "p99_vs_champion_ms", "divergence", "verdict", "then"]


def test_an_aborted_rollout_drops_to_zero_and_a_load_failure_has_no_chart():
    html = page.build(run(), pushed_rollout=rollouts.summarise(2, aborted(2, champion=1)))
    parsed(html)
    rollout = section(html, "rollout")
    assert ('<span class="bad">aborted 2026-03-02 12:04:01 UTC by checks on divergence after '
            "4 intervals, last weight 25 %</span>") in rollout
    chart = re.search(r'<svg class="chart".*?</svg>', rollout, re.S).group(0)
    path = chart_path(chart)
    assert path[-1][1] == max(y for _, y in path)  # the end: 0 %, the lowest
    assert ">aborted<" in chart and [r[-1] for r in rows(rollout, "rollout")] == [
        "step", "stay", "stay", "abort"]

    never = rollouts.summarise(3, [end(3, 2, at(9), "aborted", "load", "version 3 did not "
                                                                       "load")])
    html = page.build(run(pushed_version="3"), pushed_rollout=never)
    parsed(html)
    rollout = section(html, "rollout")
    assert "by load before it got any traffic" in rollout and "version 3 did not load" in rollout
    assert "No interval was judged." in rollout and "<svg" not in rollout


def test_without_a_rollout_the_outcome_says_so_in_one_line():
    html = page.build(run())
    assert parsed(html).ids == list(SECTIONS) and "#rollout" not in html
    assert ('<p class="muted">No rollout recorded for version 2: with '
            "<code>serving.rollout.enabled</code>") in section(html, "outcome")
    nothing = page.build(run(pushed_version=None, not_pushed_reason="model not blessed"))
    assert "rollout" not in section(nothing, "outcome").lower()


def test_the_written_report_reads_the_pushed_versions_decisions(config_file: Path,
                                                                tmp_path: Path):
    config = load_config(config_file)
    write_decisions(config, *promoted(2, champion=1), *aborted(3, champion=2))
    report = run(pushed_version="2", evaluation_uri=None)
    text = Path(html_report.write(config, report, str(tmp_path / "page.html"))).read_text()
    assert "Version <strong>2</strong> against version 1" in section(text, "rollout")
    assert '<span class="ok">promoted' in section(text, "rollout")  # not version 3's abort
    older = Path(html_report.write(config, run(pushed_version="5"),
                                   str(tmp_path / "older.html"))).read_text()
    assert 'id="rollout"' not in older and "No rollout recorded for version 5" in older


def test_the_history_page_shows_each_pushed_versions_rollout():
    entries = [history_lib.HistoryEntry("run-2", "2026-03-02T12:00:00+00:00", "metadata",
                                        pushed_version=2,
                                        rollout="promoted 2026-03-02 12:05 (checks)"),
               history_lib.HistoryEntry("run-1", "2026-03-01T12:00:00+00:00", "metadata",
                                        pushed_version=1)]
    html = page.build_history("chicago-taxi", entries, [])
    parsed(html)
    assert [row[5:7] for row in rows(html, "runs")] == [
        ["v2", "promoted 2026-03-02 12:05 (checks)"], ["v1", "–"]]


# -- the artifacts, from protos written here ---------------------------------------------

def test_statistics_and_anomalies_are_read_from_their_protos(tmp_path: Path):
    from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

    for split, rows in (("train", 80), ("eval", 20)):
        stats = statistics_pb2.DatasetFeatureStatisticsList()
        data = stats.datasets.add(num_examples=rows)
        fare = data.features.add()
        fare.path.step.append("fare")
        fare.num_stats.common_stats.num_non_missing = rows - 2
        fare.num_stats.common_stats.num_missing = 2
        fare.num_stats.mean = 11.5
        histogram = fare.num_stats.histograms.add(type=statistics_pb2.Histogram.STANDARD)
        histogram.buckets.add(low_value=0, high_value=10, sample_count=rows - 10)
        histogram.buckets.add(low_value=10, high_value=50, sample_count=8)
        company = data.features.add()
        company.path.step.append("company")
        company.string_stats.common_stats.num_non_missing = rows
        company.string_stats.unique = 2
        company.string_stats.top_values.add(value="Flash Cab", frequency=rows - 5)
        folder = tmp_path / "statistics" / f"Split-{split}"
        folder.mkdir(parents=True)
        (folder / "FeatureStats.pb").write_bytes(stats.SerializeToString())
        found = anomalies_pb2.Anomalies()
        if split == "eval":
            info = found.anomaly_info["company"]
            info.severity = anomalies_pb2.AnomalyInfo.ERROR
            info.short_description = "Unexpected string values"
            info.description = "Examples contain values missing from the schema: Acme."
        folder = tmp_path / "anomalies" / f"Split-{split}"
        folder.mkdir(parents=True)
        (folder / "SchemaDiff.pb").write_bytes(found.SerializeToString())

    stats = artifacts.feature_statistics(str(tmp_path / "statistics"))
    assert list(stats) == ["train", "eval"]
    fare, company = stats["train"]
    assert (fare.name, fare.kind, fare.present, fare.missing) == ("fare", "numeric", 78, 2)
    assert fare.histogram == [(0, 10, 70), (10, 50, 8)] and fare.numbers["mean"] == 11.5
    assert company.top_values == [("Flash Cab", 75)] and company.unique == 2
    found = artifacts.anomalies(str(tmp_path / "anomalies"))
    assert [(a.split, a.feature, a.severity) for a in found] == [("eval", "company", "error")]
    assert "Unexpected string values: Examples contain values missing" in found[0].description


def test_missing_artifacts_read_as_nothing(tmp_path: Path):
    assert artifacts.feature_statistics(None) == {}
    assert artifacts.feature_statistics(str(tmp_path / "gone")) == {}
    assert artifacts.anomalies(None) is None
    assert artifacts.anomalies(str(tmp_path / "gone")) is None
    assert artifacts.slice_metrics(None) == []


# -- writing it, and `mlops report` ------------------------------------------------------

def test_write_puts_the_page_beside_the_run_and_find_takes_the_newest(config_file: Path):
    config = load_config(config_file)
    older = run("2026-11-01T00:00:00", finished_at="2026-11-01T00:05:00+00:00")
    newer = run("2026-11-02T00:00:00", finished_at="2026-11-02T00:05:00+00:00",
                pushed_version="3")
    for record in (older, newer):
        store.save(config, record)
    assert html_report.find(config).run_id == newer.run_id
    assert html_report.find(config, older.run_id).run_id == older.run_id
    with pytest.raises(html_report.ReportError, match="no record of run 'nope'"):
        html_report.find(config, "nope")
    path = html_report.write(config, newer)
    assert path == str(Path(config.pipeline.root, ".mlops", "reports",
                            "2026-11-02T00_00_00.html").resolve())
    text = Path(path).read_text()
    assert "Pushed version 3" in text and ">v3<" in text and ">v2<" in text


def test_mlops_report_prints_the_path_or_says_why_not(config_file: Path, tmp_path: Path):
    missing = mlops("report", "--config", str(config_file))
    assert missing.returncode == 1 and "no runs recorded" in missing.stderr
    config = load_config(config_file)
    store.save(config, run("2026-11-05T00:00:00", evaluation_uri=None))
    target = tmp_path / "out" / "page.html"
    made = mlops("report", "2026-11-05T00:00:00", "--output", str(target),
                 "--config", str(config_file))
    assert made.returncode == 0, made.stderr
    assert made.stdout.strip() == str(target) and target.read_text().startswith("<!DOCTYPE html>")
    opened = tmp_path / "opened"  # --open: the browser $BROWSER names, given the file URL
    browser = f"{sys.executable} -c \"import sys; open('{opened}', 'w').write(sys.argv[1])\" %s"
    default = mlops("report", "--open", "--config", str(config_file),
                    env={**os.environ, "BROWSER": browser})
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip().endswith("/.mlops/reports/2026-11-05T00_00_00.html")
    assert opened.read_text() == Path(default.stdout.strip()).as_uri()
