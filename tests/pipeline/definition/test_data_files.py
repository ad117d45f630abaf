"""Which span's files a run reads, and their header, found without TFX."""
from __future__ import annotations

from pathlib import Path

from pipeline.definition import data_files


def spans(base: Path, *numbers: int, header: str = "a,b\n") -> None:
    for number in numbers:
        folder = base / f"span-{number}"
        folder.mkdir(parents=True)
        (folder / "part.csv").write_text(header + "1,2\n")


def test_latest_is_the_highest_number_not_the_last_name(tmp_path: Path):
    spans(tmp_path, 2, 9, 10)
    files = data_files.span_files(str(tmp_path), "span-{SPAN}/*.csv", "latest")
    assert files == [str(tmp_path / "span-10" / "part.csv")]


def test_a_given_span_and_a_missing_one(tmp_path: Path):
    spans(tmp_path, 1, 2)
    assert data_files.span_files(str(tmp_path), "span-{SPAN}/*.csv", 1) == [
        str(tmp_path / "span-1" / "part.csv")]
    assert data_files.span_files(str(tmp_path), "span-{SPAN}/*.csv", 3) == []
    assert data_files.span_files(str(tmp_path / "none"), "span-{SPAN}/*.csv", "latest") == []


def test_missing_columns_name_the_key_and_a_close_match(tmp_path: Path):
    spans(tmp_path, 1, header="fare,tips\n")
    files = data_files.span_files(str(tmp_path), "span-{SPAN}/*.csv", "latest")
    found = data_files.missing_columns(files, {"fare": "features.numeric",
                                               "tip": "label.column"})
    assert found == [f"label.column: 'tip' is not a column of {files[0]} (did you mean "
                     "'tips'?); its columns: fare, tips"]
    assert data_files.missing_columns([], {"x": "label.column"}) == []
