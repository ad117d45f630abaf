"""The span window: which spans and files a run reads, and its ExampleGen custom_config."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import json_format

from components import span_window

PATTERN = "span-{SPAN}/*.csv"


def make_spans(base: Path, *spans: int) -> None:
    for span in spans:
        folder = base / f"span-{span}"
        folder.mkdir(parents=True)
        for part in ("b", "a"):
            (folder / f"{part}.csv").write_text("x\n1\n")


@pytest.mark.parametrize("newest,count,expected", [
    (3, 1, [3]), (3, 2, [2, 3]), (3, 5, [0, 1, 2, 3]), (0, 3, [0])])
def test_window_spans_end_at_the_newest_and_stop_at_zero(newest, count, expected) -> None:
    assert list(span_window.window_spans(newest, count)) == expected


def test_window_files_are_oldest_span_first_and_skip_missing_spans(tmp_path: Path) -> None:
    make_spans(tmp_path, 1, 2, 4, 5)
    files = span_window.window_files(str(tmp_path), PATTERN, newest=4, count=3)
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == [
        "span-2/a.csv", "span-2/b.csv", "span-4/a.csv", "span-4/b.csv"]  # span 3 is missing
    assert span_window.window_files(str(tmp_path), PATTERN, newest=1, count=1) == sorted(
        str(p) for p in (tmp_path / "span-1").glob("*.csv"))


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "proto"])
def test_window_config_round_trips_through_the_execution_property(as_json: bool) -> None:
    config = span_window.window_config(PATTERN, 3)
    value = json_format.MessageToJson(config) if as_json else config
    assert span_window.read_window_config({"custom_config": value}) == (PATTERN, 3)


def test_missing_window_config_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="needs window_config"):
        span_window.read_window_config({"custom_config": None})
    with pytest.raises(ValueError, match="needs window_config"):
        span_window.read_window_config({"custom_config": json.dumps({})})
