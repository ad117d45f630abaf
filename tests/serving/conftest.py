"""Fixtures for serving tests: a model the real pipeline produced, and servers on loopback.

``pipeline_model`` is the SavedModel the session's shared pipeline run pushed (small data,
few steps); tests copy it into their own base paths as versions.
``start_server`` runs the embedded server in this process on free loopback ports (its own
event loop on a thread) and stops it at the end of the test.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import stat
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterator

import pytest

MODEL_NAME = "chicago-taxi"

# Requests for the taxi model: raw features in the data's own types, as every signature
# takes them (serving_default instances and classify examples alike).
FLOATS = ("fare", "trip_miles", "pickup_latitude", "pickup_longitude", "dropoff_latitude",
          "dropoff_longitude")
INTS = ("trip_seconds", "pickup_community_area", "dropoff_community_area", "trip_start_hour",
        "trip_start_day", "trip_start_month")
ROWS = [
    {"fare": 12.5, "trip_miles": 2.0, "trip_seconds": 600, "pickup_latitude": 41.9,
     "pickup_longitude": -87.6, "dropoff_latitude": 41.9, "dropoff_longitude": -87.6,
     "payment_type": "Cash", "company": "", "pickup_community_area": 8,
     "dropoff_community_area": 8, "trip_start_hour": 12, "trip_start_day": 3,
     "trip_start_month": 5},
    {"fare": 32.0, "trip_miles": 11.3, "trip_seconds": 1500, "pickup_latitude": 41.97,
     "pickup_longitude": -87.9, "dropoff_latitude": 41.89, "dropoff_longitude": -87.63,
     "payment_type": "Credit Card", "company": "Flash Cab", "pickup_community_area": 76,
     "dropoff_community_area": 32, "trip_start_hour": 18, "trip_start_day": 6,
     "trip_start_month": 11},
    {"fare": 7.25, "trip_miles": 0.9, "trip_seconds": 300, "pickup_latitude": 41.88,
     "pickup_longitude": -87.63, "dropoff_latitude": 41.89, "dropoff_longitude": -87.62,
     "payment_type": "Credit Card", "company": "Taxi Affiliation Services",
     "pickup_community_area": 32, "dropoff_community_area": 8, "trip_start_hour": 9,
     "trip_start_day": 2, "trip_start_month": 3},
]
MODEL_PATH = f"/v1/models/{MODEL_NAME}"
METRICS_PATH = "/monitoring/prometheus/metrics"
PREDICT_BODY = json.dumps({"instances": [ROWS[0]]}).encode()  # one row, as REST sends it


def version_counts(rest_url: str) -> Counter:
    """OK REST predict requests by the version that answered, from the metrics page
    (`:mlops:serving:request_count`; every process's, with REST workers)."""
    import httpx

    text = httpx.get(rest_url + METRICS_PATH, timeout=30).text
    counts: Counter = Counter()
    for version, value in re.findall(
            rf'^:mlops:serving:request_count\{{model_name="{MODEL_NAME}",version="(\d+)",'
            r'API="Predict",entrypoint="REST",status="OK"\} (\S+)$', text, re.MULTILINE):
        counts[int(version)] += float(value)
    return counts


def dtype_of(name: str) -> "tf.DType":  # noqa: F821 (TensorFlow is imported on use)
    """The model's dtype for a feature (its raw type: int64, float32 or string)."""
    import tensorflow as tf

    return tf.float32 if name in FLOATS else tf.int64 if name in INTS else tf.string


def arrays(rows: list[dict]) -> dict:
    """The rows as the serving_default signature's input arrays, for in-process calls."""
    import numpy as np

    result = {}
    for key in rows[0]:
        values = [row[key] for row in rows]
        if key in FLOATS:
            result[key] = np.array(values, dtype=np.float32)
        elif key in INTS:
            result[key] = np.array(values, dtype=np.int64)
        else:
            result[key] = np.array([v.encode() for v in values], dtype=object)
    return result


def example_proto(row: dict, skip: tuple[str, ...] = ()):
    """A row as a tf.Example, by TF Serving's JSON rules: ints int64, floats float, text
    bytes; "" and NaN (missing) and the ``skip`` keys are left out."""
    import math

    from tensorflow.core.example import example_pb2

    proto = example_pb2.Example()
    for key, value in row.items():
        if key in skip or value == "" or (isinstance(value, float) and math.isnan(value)):
            continue
        feature = proto.features.feature[key]
        if isinstance(value, int):
            feature.int64_list.value.append(value)
        elif isinstance(value, float):
            feature.float_list.value.append(value)
        else:
            feature.bytes_list.value.append(value.encode())
    return proto


def csv_row(path: Path, number: int) -> dict:
    """Data row ``number`` (1 = first) of a taxi CSV, its model inputs in the CSV's own
    types (ints as int, floats as float, text as str). An empty cell is "missing" as the
    model takes it: NaN for a float, "" for text, left out for an integer."""
    import csv

    with open(path, newline="") as handle:
        for index, record in enumerate(csv.DictReader(handle), start=1):
            if index == number:
                break
        else:
            raise AssertionError(f"{path} has no row {number}")
    row = {}
    for key in (*FLOATS, *INTS, "payment_type", "company"):
        cell = record[key]
        if key in FLOATS:
            row[key] = float(cell) if cell else float("nan")
        elif key in INTS:
            if cell:
                row[key] = int(cell)
        else:
            row[key] = cell
    return row


@pytest.fixture(scope="session")
def pipeline_model(pushed_workspace) -> Path:
    """Version 1 as the pipeline pushed it (the session's shared run: tests/conftest.py)."""
    return pushed_workspace.model_dir


def servable(server, version: int):
    """The version a running embedded server has loaded (its in-process repository)."""
    return server.server.repository.resolve(MODEL_NAME, version)


def nested(value, levels: int):
    """`value` inside `levels` lists: a JSON tensor of that rank."""
    for _ in range(levels):
        value = [value]
    return value


class BackgroundClients:
    """Client threads running `target`s until the `with` block ends (then joined)."""

    def __init__(self, *targets: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=t, daemon=True) for t in targets]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def fake_real_server(folder: Path) -> tuple[Path, dict[str, str]]:
    """A `tensorflow_model_server` on PATH that only prints "started": (its path, the
    environment that finds it), for the commands that must refuse the real server."""
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "tensorflow_model_server"
    fake.write_text("#!/bin/sh\necho started\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    return fake, {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def free_port() -> int:
    """A loopback port free now, for a server process that needs its ports on the command line."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, process, verify=True, timeout: float = 180) -> None:
    """Polls a server process's model status URL until it answers 200 (`verify`: httpx's
    TLS setting, e.g. an SSLContext trusting the test CA); fails if the process exits."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read()}")
        try:
            if httpx.get(url, timeout=1, verify=verify).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError("server did not come up")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    """Polls ``condition`` until it holds; fails naming ``what`` was awaited if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    if not condition():
        raise AssertionError(f"timed out waiting for {what}")


def add_version(base_path: Path, model: Path, version: int) -> Path:
    """Publishes ``model`` as ``version`` the safe way: copy beside, then rename."""
    staging = base_path / f".staging-{version}"
    shutil.copytree(model, staging)
    target = base_path / str(version)
    staging.rename(target)
    return target


def serving_site(root: Path, model: Path, versions: tuple[int, ...] = (1,)):
    """A serving directory as `mlops serve` lays it out (models.config, batching and
    monitoring files), polled every second, holding ``versions`` of ``model``: (the
    serving settings, the files)."""
    from pipeline.definition.config import load_config
    from serving import server_files
    from tests.conftest import write_config

    settings = load_config(write_config(root, {
        "serving.file_system_poll_wait_seconds": 1,
        "serving.model_config_file_poll_wait_seconds": 1}),
        check_files=False).serving_settings()
    base = Path(settings.serving_model_dir)
    base.mkdir(parents=True)
    for version in versions:
        add_version(base, model, version)
    return settings, server_files.write_server_files(settings)


@pytest.fixture
def base_path(tmp_path: Path, pipeline_model: Path) -> Path:
    """A model base path holding version 1 of the pipeline's model."""
    folder = tmp_path / "models" / MODEL_NAME
    folder.mkdir(parents=True)
    add_version(folder, pipeline_model, 1)
    return folder


class RunningServer:
    """An embedded ModelServer on its own event loop thread, on free loopback ports."""

    def __init__(self, **options) -> None:
        from serving import event_loop
        from serving.options import ServerOptions
        from serving.server import ModelServer

        options.setdefault("port", 0)
        options.setdefault("rest_api_port", 0)
        self.server = ModelServer(ServerOptions(**options))
        self.loop = event_loop.new_event_loop()  # the loop `python -m serving` runs on
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(120)
        self.rest_url = f"http://127.0.0.1:{self.server.rest_port}"
        self.grpc_target = f"127.0.0.1:{self.server.grpc_port}"

    def stop(self) -> None:
        """Stops the server and its loop (again: nothing; a test may stop one itself)."""
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@pytest.fixture
def start_server() -> Iterator[Callable[..., RunningServer]]:
    servers: list[RunningServer] = []

    def start(**options) -> RunningServer:
        server = RunningServer(**options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
