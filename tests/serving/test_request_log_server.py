"""The embedded server's request log: what it answered, sampled as tf.Examples that `mlops
skew` reads, complete once the server has stopped."""
from __future__ import annotations

import glob
from pathlib import Path

import httpx
import pytest
import tensorflow as tf

from tests.serving.conftest import MODEL_NAME, ROWS, RunningServer

pytestmark = pytest.mark.slow


def test_predict_and_classify_requests_are_logged_as_tf_examples(base_path: Path,
                                                                   tmp_path: Path):
    logs = tmp_path / "request_logs"
    server = RunningServer(model_name=MODEL_NAME, model_base_path=str(base_path),
                           request_log_sample_rate=1.0, request_log_dir=str(logs))
    try:
        url = f"{server.rest_url}/v1/models/{MODEL_NAME}"
        for _ in range(3):
            answer = httpx.post(f"{url}:predict", json={"instances": ROWS}, timeout=30)
            assert answer.status_code == 200, answer.text
        examples = [{k: v for k, v in row.items() if v != ""} for row in ROWS]
        answer = httpx.post(f"{url}:classify", json={"signature_name": "classify",
                                                       "examples": examples}, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()  # a clean stop: everything sampled is written
    files = glob.glob(str(logs / MODEL_NAME / "*.tfrecord"))
    rows = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]
    assert len(rows) == 4 * len(ROWS)
    first = rows[0].features.feature
    assert first["trip_start_hour"].int64_list.value == [ROWS[0]["trip_start_hour"]]
    assert first["fare"].float_list.value[0] == pytest.approx(ROWS[0]["fare"])
    assert not first["company"].bytes_list.value  # "" is missing: empty, as in the data
    assert rows[-1].features.feature["payment_type"].bytes_list.value == [
        ROWS[-1]["payment_type"].encode()]
