"""The embedded server's request log: what it answered, sampled as tf.Examples that `mlops
skew` reads, complete once the server has stopped."""
from __future__ import annotations

import glob
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import tensorflow as tf

from tests.conftest import REPO
from tests.serving.conftest import MODEL_NAME, ROWS, RunningServer, free_port, wait_until_serving

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


def test_sigterm_stops_the_server_process_cleanly_with_every_sample_written(
        base_path: Path, tmp_path: Path):
    """SIGTERM is how docker, Kubernetes and process managers stop a server: the process
    leaves with 0, the log's files are finished (no hidden partial file) and hold every
    sampled request. Before, the process died on it with the last file half written."""
    logs, rest_port = tmp_path / "request_logs", free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving", f"--port={free_port()}",
         f"--rest_api_port={rest_port}", f"--model_name={MODEL_NAME}",
         f"--model_base_path={base_path}", "--request_log_sample_rate=1",
         f"--request_log_dir={logs}"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{rest_port}"
        wait_until_serving(f"{url}/v1/models/{MODEL_NAME}", server)
        for _ in range(5):
            answer = httpx.post(f"{url}/v1/models/{MODEL_NAME}:predict",
                                json={"instances": ROWS}, timeout=30)
            assert answer.status_code == 200, answer.text
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=60)
    assert server.returncode == 0, stderr
    assert "SIGTERM: stopping" in stderr and "Stopped" in stderr
    folder = logs / MODEL_NAME
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []
    files = sorted(str(p) for p in folder.glob("requests-*.tfrecord"))
    assert sum(1 for _ in tf.data.TFRecordDataset(files)) == 5 * len(ROWS)
