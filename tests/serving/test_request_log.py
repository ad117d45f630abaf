"""The request log: a sample of requests as tf.Examples, bounded, complete after a stop."""
from __future__ import annotations

import glob
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from serving.request_log import RequestLog, examples_from_columns

COLUMNS = {"fare": np.array([12.5, np.nan], np.float32),
           "trip_start_hour": np.array([19, 7], np.int64),
           "payment_type": np.array([b"Cash", b""], dtype=object)}


def read(folder: Path) -> list[tf.train.Example]:
    files = sorted(glob.glob(str(folder / "m" / "*.tfrecord")))
    return [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(files)]


def test_a_row_becomes_a_tf_example_with_missing_values_empty():
    first, second = (tf.train.Example.FromString(e) for e in examples_from_columns(COLUMNS))
    assert first.features.feature["fare"].float_list.value == [12.5]
    assert first.features.feature["trip_start_hour"].int64_list.value == [19]
    assert first.features.feature["payment_type"].bytes_list.value == [b"Cash"]
    # NaN and "" are missing: an empty value list, as the pipeline's CSV ingestion writes
    # an empty cell, so requests and training data are read alike
    assert not second.features.feature["fare"].float_list.value
    assert not second.features.feature["payment_type"].bytes_list.value
    assert second.features.feature["trip_start_hour"].int64_list.value == [7]


def test_everything_sampled_is_on_disk_after_a_clean_stop(tmp_path: Path):
    requests = RequestLog(str(tmp_path), "m", sample_rate=1.0)
    for _ in range(50):
        requests.sample(1, COLUMNS)
    requests.sample(1, [examples_from_columns(COLUMNS)[0]])  # a classify request's examples
    requests.close()
    assert len(read(tmp_path)) == 101 == requests.written
    assert not [n for n in os.listdir(tmp_path / "m") if n.startswith(".")]  # no partial


def test_the_sample_rate_is_kept(tmp_path: Path):
    requests = RequestLog(str(tmp_path), "m", sample_rate=0.1, seed=7)
    taken = sum(requests.sample(1, {"x": np.zeros(1, np.float32)}) for _ in range(5000))
    requests.close()
    assert 400 <= taken <= 600
    assert len(read(tmp_path)) == taken


def test_files_rotate_and_only_the_newest_are_kept(tmp_path: Path):
    requests = RequestLog(str(tmp_path), "m", sample_rate=1.0, max_file_bytes=2000,
                          max_files=3)
    for _ in range(200):
        requests.sample(1, COLUMNS)
    requests.close()
    files = sorted(glob.glob(str(tmp_path / "m" / "*.tfrecord")))
    assert len(files) == 3
    assert all(os.path.getsize(f) < 2000 + 200 for f in files)


def test_two_processes_logging_into_one_folder_keep_its_bound_together(tmp_path: Path,
                                                                        monkeypatch):
    """A server's REST workers log into one folder (`serving.workers`): each names its
    files by its pid, and the newest `max_files` of the folder are kept whoever wrote
    them; a file another process removed first is not an error (here every removal finds
    the file gone, as when the other process got there first)."""
    real_remove = os.remove

    def removed_by_another_process_first(path):
        real_remove(path)
        raise FileNotFoundError(path)

    monkeypatch.setattr(os, "remove", removed_by_another_process_first)
    logs = [RequestLog(str(tmp_path), "m", sample_rate=1.0, max_file_bytes=2000, max_files=4)
            for _ in range(2)]
    for _ in range(300):
        for log in logs:
            log.sample(1, COLUMNS)
    for log in logs:
        log.close()
    files = sorted(glob.glob(str(tmp_path / "m" / "*.tfrecord")))
    assert len(files) == 4
    assert {Path(f).name.split("-")[2] for f in files} == {str(os.getpid())}
    assert [log.written for log in logs] == [600, 600]


def test_a_stop_does_not_wait_for_the_writer_s_next_poll(tmp_path: Path, monkeypatch):
    """The writer takes its queue once a poll interval; a stop wakes it instead of waiting
    that long (here an interval of a minute), and still writes everything sampled."""
    from serving import request_log

    monkeypatch.setattr(request_log, "_POLL_SECONDS", 60.0)
    requests = RequestLog(str(tmp_path), "m", sample_rate=1.0)
    time.sleep(0.2)  # the writer has found the queue empty and waits for its next poll
    requests.sample(1, COLUMNS)
    stopping = threading.Thread(target=requests.close)
    stopping.start()
    stopping.join(timeout=20)
    assert not stopping.is_alive(), "close waited for the writer's next poll"
    assert len(read(tmp_path)) == 2


def test_a_quiet_server_s_samples_become_readable_after_the_rotation_time(tmp_path: Path):
    requests = RequestLog(str(tmp_path), "m", sample_rate=1.0, rotate_seconds=0.5)
    requests.sample(1, COLUMNS)
    deadline = time.monotonic() + 10
    while not glob.glob(str(tmp_path / "m" / "*.tfrecord")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(read(tmp_path)) == 2
    requests.close()


def test_a_full_queue_drops_samples_not_requests(tmp_path: Path, monkeypatch):
    from serving import request_log

    slow = request_log.examples_from_columns

    def slow_writer(columns):  # a disk that cannot keep up
        time.sleep(0.005)
        return slow(columns)

    monkeypatch.setattr(request_log, "examples_from_columns", slow_writer)
    requests = RequestLog(str(tmp_path), "m", sample_rate=1.0, max_queued=1)
    results = [requests.sample(1, COLUMNS) for _ in range(2000)]
    requests.close()
    assert requests.dropped == results.count(False) and requests.dropped > 0
    assert requests.written == 2 * results.count(True)


def test_a_sample_rate_outside_0_1_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="sample_rate"):
        RequestLog(str(tmp_path), "m", sample_rate=0)


def test_example_signatures_are_logged_as_their_examples_and_predict_as_columns(tmp_path):
    from serving.request_log import RequestLogs
    from tests.serving.stand_ins import StandInServable, signature

    classify = signature("classify", "tensorflow/serving/classify", {"inputs": tf.string},
                         {"scores": tf.float32})
    predict = signature("serving_default", inputs={"fare": tf.float32,
                                                   "trip_start_hour": tf.int64,
                                                   "payment_type": tf.string})
    logs = RequestLogs(str(tmp_path), sample_rate=1.0)
    model = StandInServable(name="m", version=3)
    serialized = examples_from_columns(COLUMNS)
    batch = np.empty(2, dtype=object)
    batch[:] = serialized
    logs.sample(model, classify, {"inputs": batch})
    logs.sample(model, predict, COLUMNS)
    logs.close()
    rows = read(tmp_path)
    assert [r.SerializeToString() for r in rows[:2]] == serialized
    assert rows[2].features.feature["trip_start_hour"].int64_list.value == [19]
    assert len(rows) == 4


def test_the_server_options_and_mlops_serve_carry_the_request_log(tmp_path):
    from pipeline.definition.config import load_config
    from serving import server_files
    from serving.errors import ServingError
    from serving.options import ServerOptions
    from tests.conftest import write_config

    with pytest.raises(ServingError, match="needs --request_log_dir"):
        ServerOptions(model_base_path="m", request_log_sample_rate=0.1)
    with pytest.raises(ServingError, match="between 0 and 1"):
        ServerOptions(model_base_path="m", request_log_sample_rate=2, request_log_dir="d")
    config = load_config(write_config(tmp_path, {"serving.request_log.sample_rate": 0.1}),
                         check_files=False)
    files = server_files.ServerFiles(models_config=tmp_path / "models.config",
                                     batching_parameters=None, monitoring_config=None)
    argv = server_files.server_command(config.serving_settings(), files, "python", None)
    assert "--request_log_sample_rate=0.1" in argv
    assert f"--request_log_dir={tmp_path / 'serving_models' / 'request_logs'}" in argv
    assert config.skew.requests == str(tmp_path / "serving_models" / "request_logs" /
                                       "chicago-taxi")  # where mlops skew reads by default
    real = server_files.server_command(config.serving_settings(), files, "python",
                                       "/usr/bin/tensorflow_model_server")
    assert not [a for a in real if a.startswith("--request_log")]
