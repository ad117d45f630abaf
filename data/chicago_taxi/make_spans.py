"""Rebuilds the span folders from the Chicago taxi sample that ships inside the tfx package.

Run with the project's venv: `.venv/bin/python data/chicago_taxi/make_spans.py`.
Rows are ordered by trip start time and cut into three equal spans, oldest first, so the
newest span is the one a scheduled run picks up. Values are copied unchanged (missing
values stay empty), which keeps the data's gaps real.
"""
import csv
import os
from pathlib import Path

import tfx

NUM_SPANS = 3
SOURCE = Path(tfx.__file__).parent / "examples/chicago_taxi_pipeline/data/simple/data.csv"
HERE = Path(__file__).parent


def main() -> None:
    with open(SOURCE, newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames
        rows = sorted(reader, key=lambda row: int(row["trip_start_timestamp"]))
    size = -(-len(rows) // NUM_SPANS)
    for index in range(NUM_SPANS):
        folder = HERE / f"span-{index + 1}"
        os.makedirs(folder, exist_ok=True)
        with open(folder / "trips.csv", "w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows[index * size:(index + 1) * size])
        print(f"{folder}: {len(rows[index * size:(index + 1) * size])} rows")


if __name__ == "__main__":
    main()
