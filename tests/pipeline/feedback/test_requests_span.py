"""`mlops span-from-requests` on a request log written here by the server's own request
logger: labelled requests become the next span as a CSV of the config's columns; requests
that cannot make a span are one clear error. The whole loop against a real server:
tests/e2e/story/ (its last step)."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

from pipeline.definition import data_files
from pipeline.definition.config import load_config
from pipeline.feedback import requests_span
from tests.conftest import copy_taxi_span, write_config


def log_requests(folder: Path, model_name: str) -> Path:
    """Four requests through the server's own request log: two rows under key "a", one
    under "b", one without a key, one under a key nobody labelled."""
    from serving.request_log import RequestLog

    log = RequestLog(str(folder), model_name, sample_rate=1.0)
    for key, columns in (
            ("a", {"fare": np.array([12.5, 7.25], np.float32),
                   "trip_miles": np.array([np.nan, 1.5], np.float32),
                   "payment_type": np.array(["Cash", "Credit Card"], object),
                   "trip_start_hour": np.array([14, 3], np.int64)}),
            ("b", {"fare": np.array([30.0], np.float32), "payment_type": np.array(["Mobile"],
                                                                                  object)}),
            (None, {"fare": np.array([5.0], np.float32)}),
            ("z", {"fare": np.array([6.0], np.float32)})):
        assert log.sample(1, columns, key=key)
    log.close()
    return folder / model_name


def write_labels(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_labelled_requests_become_the_next_span(tmp_path: Path):
    copy_taxi_span(1, tmp_path / "data", rows=5)
    config = load_config(write_config(tmp_path))
    log = log_requests(tmp_path / "request_logs", config.serving.model_name)
    labels = write_labels(tmp_path / "labels.csv", "key,tips,note\na,1.5,x\nb,0.0,\n"
                                                   "c,2.0,never asked\nz,,not known yet\n")
    made = requests_span.span_from_requests(config, str(log), str(labels), "key")
    path = tmp_path / "data" / "span-2" / "requests.csv"
    assert made == requests_span.NewSpan(2, str(path), 3, 1, 1)
    assert data_files.span_files(config.data.input_base, config.data.span_pattern,
                                 "latest") == [str(path)]
    with open(path, newline="") as handle:
        table = list(csv.reader(handle))
    header = [*config.features.all_names(), "tips", "request_key"]
    assert table[0] == header
    rows = [dict(zip(header, row)) for row in table[1:]]
    picked = [{k: r[k] for k in ("fare", "trip_miles", "payment_type", "trip_start_hour",
                                 "company", "tips", "request_key")} for r in rows]
    assert all(set(r.values()) == {""} for r in rows  # the columns no request sent
               for r in [{k: v for k, v in r.items() if k not in picked[0]}])
    # requests may land in more than one file, read in name order: compare as a set
    assert sorted(picked, key=lambda r: r["fare"]) == [
        {"fare": "12.5", "trip_miles": "", "payment_type": "Cash", "trip_start_hour": "14",
         "company": "", "tips": "1.5", "request_key": "a"},
        {"fare": "30.0", "trip_miles": "", "payment_type": "Mobile", "trip_start_hour": "",
         "company": "", "tips": "0.0", "request_key": "b"},
        {"fare": "7.25", "trip_miles": "1.5", "payment_type": "Credit Card",
         "trip_start_hour": "3", "company": "", "tips": "1.5", "request_key": "a"}]
    assert not list(path.parent.glob("*.tmp"))


def test_requests_that_cannot_make_a_span_are_one_clear_error(tmp_path: Path):
    copy_taxi_span(1, tmp_path / "data", rows=5)
    config = load_config(write_config(tmp_path))
    log = log_requests(tmp_path / "request_logs", config.serving.model_name)

    def refused(labels: Path, requests_dir: Path = log, label: Optional[str] = None) -> str:
        with pytest.raises(requests_span.SpanError) as error:
            requests_span.span_from_requests(config, str(requests_dir), str(labels), "key",
                                             label)
        return str(error.value)

    wrong = write_labels(tmp_path / "wrong.csv", "id,tips\na,1\n")
    assert refused(wrong) == f"{wrong}: no column 'key' (its columns: id, tips)"
    assert refused(wrong, label="tipped") == \
        f"{wrong}: no column 'key', 'tipped' (its columns: id, tips)"
    assert refused(tmp_path / "absent.csv") == f"{tmp_path / 'absent.csv'}: " \
                                               "No such file or directory"
    unmatched = write_labels(tmp_path / "unmatched.csv", "key,tips\nq,1\n")
    assert refused(unmatched) == (f"none of the 5 logged requests under {log} has a "
                                  f"labelled key in {unmatched} (1 without a key)")
    assert refused(unmatched, tmp_path / "no-log").startswith("no request log under ")
    assert sorted(data_files.spans(config.data.input_base, config.data.span_pattern)) == [1]


def test_the_server_s_labels_folder_labels_the_span(tmp_path: Path):
    """What clients posted (`LabelFolder.keep`, column `label`) and a file dropped beside
    it with the config's label column: every file read, the later label of a key wins."""
    from serving.labels import LabelFolder

    copy_taxi_span(1, tmp_path / "data", rows=5)
    config = load_config(write_config(tmp_path))
    log = log_requests(tmp_path / "request_logs", config.serving.model_name)
    folder = LabelFolder(str(tmp_path / "request_logs"))
    folder.keep(config.serving.model_name, [("a", "1"), ("z", "0")])
    dropped = folder.folder(config.serving.model_name) / "later.csv"
    dropped.write_text("request_key,tips\nz,1\n")
    later = dropped.stat().st_mtime + 10
    os.utime(dropped, (later, later))  # written after the posted file, whatever the clock
    made = requests_span.span_from_requests(config, str(log),
                                            str(folder.folder(config.serving.model_name)),
                                            "request_key")
    with open(made.path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted((row["request_key"], row["tips"]) for row in rows) == [
        ("a", "1"), ("a", "1"), ("z", "1")]

    empty = tmp_path / "no-labels"
    empty.mkdir()
    with pytest.raises(requests_span.SpanError, match="no labels .* in this folder"):
        requests_span.span_from_requests(config, str(log), str(empty), "request_key")
