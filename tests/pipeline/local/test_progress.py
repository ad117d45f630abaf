"""What a run shows while it runs, in a log and on a terminal."""
from __future__ import annotations

import io

from rich.console import Console

from pipeline.local.progress import RunProgress


def test_in_a_log_each_component_gets_a_start_and_an_end_line_with_its_time():
    out = io.StringIO()
    with RunProgress(Console(file=out, force_terminal=False, soft_wrap=True)) as progress:
        progress("CsvExampleGen", "running")
        progress("CsvExampleGen", "finished")
        progress("Trainer", "running")
        progress("Trainer", "cached")
        progress("Trainer", "finished")  # a second end of the same node is not repeated
        progress("Evaluator", "running")
        progress("Evaluator", "failed")
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        "CsvExampleGen: running", "CsvExampleGen: finished", "Trainer: running",
        "Trainer: cached", "Evaluator: running", "Evaluator: failed"]
    assert all(line.endswith("s)") for line in lines if "running" not in line)


def test_on_a_terminal_one_transient_line_names_the_running_component():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    with RunProgress(console) as progress:
        progress("Transform", "running")
        console.file.flush()
        progress._live.refresh()  # pylint: disable=protected-access
        shown = out.getvalue()
    assert "running Transform (0 components done)" in shown
    assert "0:00:0" in shown  # its elapsed time
