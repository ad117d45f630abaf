"""From serving back to training: the embedded server logs the requests it answers, with
their keys; labels known later join them; the result is the next span, which the next
run trains on."""
from __future__ import annotations

import csv
from pathlib import Path

import httpx
import pytest

from pipeline import local, requests_span
from pipeline.config import load_config
from tests.conftest import TAXI_DATA, copy_taxi_span, mlops, write_config
from tests.serving.conftest import INTS, RunningServer, csv_row
from tests.test_pipeline_e2e import FAST_TRAINING, LENIENT, ROWS

pytestmark = pytest.mark.slow
SENT = 400


def test_labelled_requests_become_the_span_the_next_run_trains_on(tmp_path: Path):
    (tmp_path / "data").mkdir()
    copy_taxi_span(1, tmp_path / "data", rows=ROWS)
    config_file = write_config(tmp_path, {**FAST_TRAINING, **LENIENT,
                                          "serving.request_log.sample_rate": 1.0})
    config = load_config(config_file)
    assert local.run_pipeline(config).pushed_version == "1"

    server = RunningServer(model_name=config.serving.model_name,
                           model_base_path=config.serving_model_dir,
                           request_log_sample_rate=1.0,
                           request_log_dir=config.serving.request_log_dir)
    source, sent, labels = TAXI_DATA / "span-2" / "trips.csv", 0, []
    with open(source, newline="") as handle:
        tips = [row["tips"] for row in csv.DictReader(handle)]
    try:
        url = f"{server.rest_url}/v1/models/{config.serving.model_name}:predict"
        for number in range(1, SENT + 1):
            row = csv_row(source, number)
            if any(name not in row for name in INTS):
                continue  # a missing integer cannot be sent to :predict
            key = f"trip-{number}"
            answer = httpx.post(url, json={"instances": [row]},
                                headers={"X-Request-Key": key}, timeout=30)
            assert answer.status_code == 200, answer.text
            sent += 1
            if number % 4:  # the outcome of every fourth trip is not known yet
                labels.append((key, tips[number - 1]))
    finally:
        server.stop()
    labels_file = tmp_path / "outcomes.csv"
    with open(labels_file, "w", newline="") as handle:
        csv.writer(handle).writerows([("request_key", "tips"), *labels])

    made = mlops("span-from-requests", "--labels", str(labels_file), "--config",
                 str(config_file), timeout=300)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith(f"Wrote span 2: {len(labels)} labelled requests -> ")
    span_file = tmp_path / "data" / "span-2" / "requests.csv"
    with open(span_file, newline="") as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(labels) and sent - len(labels) > 0
    assert {row["request_key"]: row["tips"] for row in written} == dict(labels)

    report = local.run_pipeline(load_config(config_file))
    assert report.succeeded, report.error
    assert report.span == 2


def test_labels_without_the_key_column_are_one_clear_error(tmp_path: Path):
    (tmp_path / "data").mkdir()
    copy_taxi_span(1, tmp_path / "data", rows=20)
    config = load_config(write_config(tmp_path))
    labels = tmp_path / "labels.csv"
    labels.write_text("id,tips\n1,0\n")
    with pytest.raises(requests_span.SpanError, match="no column 'request_key'"):
        requests_span.span_from_requests(config, str(tmp_path), str(labels), "request_key")
