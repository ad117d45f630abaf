"""The run summary as a person reads it: thresholds written the way they are judged."""
from __future__ import annotations

from pipeline.definition.config import Threshold
from pipeline.records.summary import ComponentStatus, MetricCheck, RunReport, render_text


def report_with(*checks: MetricCheck, **fields) -> RunReport:
    return RunReport("chicago-taxi", "2026-11-26T05:00:00",
                     [ComponentStatus("Pusher", "done", 0.1)], metrics=list(checks), **fields)


def check(metric: str, value: float, failures: tuple[str, ...] = (), **bounds) -> MetricCheck:
    return MetricCheck(metric, value, 0.002, Threshold(metric=metric, **bounds), list(failures))


def rows(text: str) -> dict[str, str]:
    """Metric table rows by metric name, the other cells joined by " | "."""
    found = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.replace("┃", "│").split("│")]
        if len(cells) == 5:
            found[cells[0]] = " | ".join(cells[1:])
    return found


def test_thresholds_read_as_they_are_judged():
    text = render_text(report_with(
        check("AUC", 0.91, lower_bound=0.8, max_regression=0.01),
        check("BinaryAccuracy", 0.95, lower_bound=0.8),          # max_regression 0
        check("BinaryCrossentropy", 0.2, upper_bound=0.5, max_regression=0.05),
        check("Recall", 0.6, lower_bound=0.7, max_regression=None,
              failures=("recall 0.6000 is below the lower bound 0.7",)),
        baseline_compared=True, blessed=False, not_pushed_reason="model not blessed"))
    table = rows(text)
    assert table["AUC"] == "0.9100 | 0.0020 | >= 0.8; change >= -0.01 | yes"
    assert table["BinaryAccuracy"] == "0.9500 | 0.0020 | >= 0.8; change >= 0 | yes"
    assert table["BinaryCrossentropy"] == "0.2000 | 0.0020 | <= 0.5; change <= +0.05 | yes"
    assert table["Recall"] == "0.6000 | 0.0020 | >= 0.7 | no"
    assert "Not blessed: recall 0.6000 is below the lower bound 0.7" in text
    assert "Nothing pushed: model not blessed" in text


def test_without_a_baseline_changes_are_not_shown_and_that_is_said():
    text = render_text(report_with(check("AUC", 0.91, lower_bound=0.8), blessed=True,
                                   pushed_version="1", pushed_path="/serving/1"))
    assert rows(text)["AUC"].startswith("0.9100 | - |")
    assert "No serving model to compare with: change thresholds not applied." in text
    assert "Pushed version 1 -> /serving/1" in text


def test_sentences_stay_whole_in_a_log(capsys):
    """Piped to a file (CI logs), rich would wrap at 80 columns mid-sentence; error and
    summary lines must stay whole and greppable."""
    from pipeline.records.summary import render

    error = ("data validation failed: split train: feature 'trip_miles': declared numeric "
             "but holds text in 150 of 1500 rows: 'far' (150)")
    render(report_with(error=error, not_pushed_reason="the run stopped before the Pusher"))
    lines = capsys.readouterr().out.splitlines()
    assert f"Run failed: {error}" in lines
    assert "Nothing pushed: the run stopped before the Pusher" in lines
