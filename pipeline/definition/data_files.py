"""The CSV files a run would read, looked at before it starts: which span, which header.

`mlops check-config` reads the header of the span a run would train on (milliseconds), so
a declared column that is not in the data is one line naming the key, instead of a
data-validation failure after ingestion and statistics. (A run itself leaves that to the
data gate: there a span without a column is bad data, not a bad config.)
"""
from __future__ import annotations

import csv
import difflib
import glob
import os
import re
from typing import Union

SPAN_TOKEN = "{SPAN}"


def spans(input_base: str, span_pattern: str) -> dict[int, list[str]]:
    """Every span present, with its files."""
    full = os.path.join(input_base, span_pattern)
    before, _, _ = full.partition(SPAN_TOKEN)
    number = re.compile(re.escape(before).replace(r"\*", "[^/]*") + r"(\d+)")
    found: dict[int, list[str]] = {}
    for path in glob.glob(full.replace(SPAN_TOKEN, "*")):
        match = number.match(path)
        if match:
            found.setdefault(int(match.group(1)), []).append(path)
    return found


def new_span_file(input_base: str, span_pattern: str, span: int, name: str) -> str:
    """Where a file of span `span` goes: the pattern with `{SPAN}` filled and its glob
    (`*`) replaced by `name` (`span-{SPAN}/*.csv` -> `span-4/<name>.csv`)."""
    return os.path.join(input_base,
                        span_pattern.replace(SPAN_TOKEN, str(span)).replace("*", name))


def span_files(input_base: str, span_pattern: str, span: Union[str, int]) -> list[str]:
    """The files of the span a run reads: `span`, or the newest one for "latest" (as TFX's
    ExampleGen resolves `{SPAN}`: the highest number that matches)."""
    if span != "latest":
        return sorted(glob.glob(os.path.join(
            input_base, span_pattern.replace(SPAN_TOKEN, str(span)))))
    found = spans(input_base, span_pattern)
    return sorted(found[max(found)]) if found else []


def header(path: str) -> list[str]:
    """The CSV file's column names (its first row; [] for an empty file), read without
    reading the rest, so checking a large span stays instant."""
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        return next(csv.reader(handle), [])


def missing_columns(files: list[str], declared: dict[str, str]) -> list[str]:
    """One line per declared column (`{column: config key}`) absent from the first file's
    header, naming the key, the file and a close match."""
    if not files:
        return []
    columns = header(files[0])
    problems = []
    for column, key in declared.items():
        if column not in columns:
            close = difflib.get_close_matches(column, columns, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{key}: '{column}' is not a column of {files[0]}{hint}; its "
                            f"columns: {', '.join(columns)}")
    return problems
