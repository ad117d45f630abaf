"""`mlops span-from-requests`: served requests, labelled later, as the pipeline's next span.

The loop from serving back to training: the embedded server logs a sample of the requests
it answers as tf.Examples, each with the request's key (`X-Request-Key`, gRPC metadata
`x-request-key`) when the client sent one (`serving/request_log.py`). Once the outcome is
known (was a tip given?), a CSV of `key,label` (or the server's labels folder, where
clients post them: `serving/labels.py`) joins it to those requests, and the rows
become a CSV span laid out as the config's `data.span_pattern` says, the next number after
the newest span, which the next run (or the next scheduled run) trains on.
"""
from __future__ import annotations

import csv
import dataclasses
import glob
import os
from typing import Iterable, Optional

from pipeline.definition import data_files
from pipeline.definition.config import PipelineConfig
from pipeline.errors import UserError
from serving.labels import LABEL_COLUMN
from serving.request_log import REQUEST_KEY_FEATURE

SPAN_FILE_NAME = "requests"


class SpanError(UserError):
    """The labels or requests cannot make a span: the message says which and why."""


@dataclasses.dataclass
class NewSpan:
    """What `span_from_requests` wrote: the span's number and file, its rows, and the
    logged requests left out for want of a key or a label."""

    span: int
    path: str
    rows: int
    requests_without_key: int
    requests_without_label: int


def read_labels(path: str, key_column: str, label_column: str) -> dict[str, str]:
    """`{request key: label}` from a CSV with (at least) those two columns, or from every
    CSV of a folder (the server's labels folder, `serving.labels`: what clients posted
    and dropped there; its files name the label column `label`, used when a file lacks
    `label_column`). A later file's label for the same key wins.

    Rows with an empty key or an empty label are left out: not labelled yet.

    Raises:
        SpanError: a file cannot be opened or read, or lacks either column (the message
            lists the columns it has); a folder without CSV files.
    """
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.csv")), key=os.path.getmtime)
        if not files:
            raise SpanError(f"{path}: no labels (.csv files) in this folder")
        labels: dict[str, str] = {}
        for file in files:
            labels.update(_read_label_file(file, key_column, label_column,
                                           fallback=LABEL_COLUMN))
        return labels
    return _read_label_file(path, key_column, label_column)


def _read_label_file(path: str, key_column: str, label_column: str,
                     fallback: Optional[str] = None) -> dict[str, str]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            if label_column not in columns and fallback in columns:
                label_column = fallback
            missing = [c for c in (key_column, label_column) if c not in columns]
            if missing:
                raise SpanError(f"{path}: no column {', '.join(map(repr, missing))} (its "
                                f"columns: {', '.join(columns)})")
            return {row[key_column]: row[label_column] for row in reader
                    if row[key_column] and row[label_column] != ""}
    except OSError as err:
        raise SpanError(f"{path}: {err.strerror}") from None


def _cell(feature) -> str:
    kind = feature.WhichOneof("kind")
    values = list(getattr(feature, kind).value) if kind else []
    if not values:
        return ""
    value = values[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(float(value)) if kind == "float_list" else str(value)


def _examples(files: Iterable[str]):
    import tensorflow as tf

    from pipeline.feedback.skew import read_records  # the request log's reader, one copy

    for record in read_records(files):
        yield tf.train.Example.FromString(record)


def span_from_requests(config: PipelineConfig, requests_dir: str, labels_path: str,
                       key_column: str, label_column: Optional[str] = None) -> NewSpan:
    """Writes the labelled requests as the next span; returns what was written.

    Raises:
        SpanError: no request log, a labels file without the columns, or no request
            whose key has a label.
    """
    from pipeline.feedback.skew import SkewError, request_files

    label_column = label_column or config.label.column
    labels = read_labels(labels_path, key_column, label_column)
    try:
        files = request_files(requests_dir)
    except SkewError as err:
        raise SpanError(str(err)) from None
    columns = config.features.all_names()
    header = [*columns, config.label.column, REQUEST_KEY_FEATURE]
    rows, without_key, without_label = [], 0, 0
    for example in _examples(files):
        features = example.features.feature
        key = _cell(features[REQUEST_KEY_FEATURE]) if REQUEST_KEY_FEATURE in features else ""
        if not key:
            without_key += 1
            continue
        if key not in labels:
            without_label += 1
            continue
        rows.append([_cell(features[c]) if c in features else "" for c in columns]
                    + [labels[key], key])
    if not rows:
        raise SpanError(f"none of the {without_key + without_label} logged requests under "
                        f"{requests_dir} has a labelled key in {labels_path} "
                        f"({without_key} without a key)")
    present = data_files.spans(config.data.input_base, config.data.span_pattern)
    span = max(present, default=0) + 1
    path = data_files.new_span_file(config.data.input_base, config.data.span_pattern, span,
                                    SPAN_FILE_NAME)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = f"{path}.tmp"
    with open(staging, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(staging, path)  # a run starting now sees the whole span or none of it
    return NewSpan(span, path, len(rows), without_key, without_label)
