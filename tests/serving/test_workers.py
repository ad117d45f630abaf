"""REST workers (`--rest_api_workers`): several processes answering one REST port.

Two servers of two processes each, started as a user starts them (`python -m serving`),
with the model the pipeline trained; their requests go over new connections, which the
kernel spreads over the processes (SO_REUSEPORT), so each guarantee is checked across
both.

- The first serves a directory laid out by `mlops serve`'s files, batching, metrics and a
  request log of every request on: the metrics page counts every process's requests; a
  push swaps versions in both with load running and no request failing; a canary split
  keeps a key on one side whichever process answers, and its promotion reaches both;
  Ctrl-C stops both with the request log complete, written by both.
- The second serves a base path with TLS on both ports: HTTPS from both processes,
  ReloadConfig (gRPC over TLS, on the primary) reaches the worker, a killed worker is
  started again and takes the config too, and a worker whose primary is killed (SIGKILL:
  no chance to clean up) stops by itself.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import httpx
import pytest

from serving import operations, traffic
from tests.conftest import REPO
from tests.serving.conftest import (
    METRICS_PATH,
    MODEL_NAME,
    MODEL_PATH,
    PREDICT_BODY,
    BackgroundClients,
    add_version,
    serving_site,
    version_counts,
    wait_for,
)

pytestmark = pytest.mark.slow

READY = re.compile(r"Serving gRPC(?: \(TLS\))? on [^\s:]+:(\d+) and REST(?: \(HTTPS\))? on "
                   r"[^\s:]+:(\d+) \((\d+) processes\)")
WORKER_READY = re.compile(r"REST worker (\d+) ready \(pid (\d+)\)")
QUIET = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "3"}


class ServerProcesses:
    """``python -m serving --rest_api_workers=2 ...`` in its own process, its log in a file."""

    def __init__(self, folder: Path, *flags: str, https_ca: Optional[str] = None) -> None:
        """Started in a process group of its own, as a terminal's job is (Ctrl-C: SIGINT to
        the whole group). ``https_ca``: the REST port serves HTTPS with a certificate of
        this CA, for localhost."""
        self.log = folder / "server.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "serving", "--port=0", "--rest_api_port=0",
                 "--rest_api_workers=2", *flags],
                cwd=REPO, env=QUIET, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
        try:
            wait_for(lambda: READY.search(self.text()) or self.process.poll() is not None,
                     "the server's ready line", timeout=180)
            ready = READY.search(self.text())
            assert ready, self.text()
        except AssertionError:  # no server left behind by a failed start
            self.stop()
            raise
        self.grpc_target = f"127.0.0.1:{ready.group(1)}"
        self.rest_url = f"http://127.0.0.1:{ready.group(2)}"
        self.verify = True  # httpx's TLS setting for the REST port
        if https_ca is not None:
            from tests.serving.pki import https_context

            self.rest_url = f"https://localhost:{ready.group(2)}"
            self.verify = https_context(https_ca)

    def text(self) -> str:
        return self.log.read_text()

    def worker_pid(self) -> int:
        """The worker's pid, from its latest ready line (the primary logs each start)."""
        return int(WORKER_READY.findall(self.text())[-1][1])

    def stop(self, signum: int = signal.SIGTERM) -> Optional[int]:
        """``signum`` to the primary (SIGINT: to the whole group, as Ctrl-C sends it);
        returns its exit code."""
        if self.process.poll() is None:
            if signum == signal.SIGINT:
                os.killpg(self.process.pid, signum)
            else:
                self.process.send_signal(signum)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.returncode


def new_connections(server: ServerProcesses) -> httpx.Client:
    """A client that opens a new connection for every request: the kernel chooses the
    process for each, so a few dozen requests reach both."""
    return httpx.Client(base_url=server.rest_url, timeout=60, verify=server.verify,
                        limits=httpx.Limits(max_keepalive_connections=0))


def predict(client: httpx.Client, path: str = f"{MODEL_PATH}:predict",
            key: Optional[str] = None) -> int:
    response = client.post(path, content=PREDICT_BODY,
                           headers={"X-Request-Key": key} if key else None)
    assert response.status_code == 200, response.text
    return int(response.headers["X-Model-Version"])


def in_every_process(server: ServerProcesses, check, tries: int = 60) -> bool:
    """``check(client)`` holds for ``tries`` requests in a row on new connections (with two
    processes, the chance that all missed one of them is 2^-59)."""
    with new_connections(server) as client:
        return all(check(client) for _ in range(tries))


class Load(BackgroundClients):
    """Three REST clients on the bare URL, on new connections; failures recorded."""

    def __init__(self, server: ServerProcesses) -> None:
        self.server = server
        self.failures: list[str] = []
        self.answered = 0
        super().__init__(*[self._client] * 3)

    def _client(self) -> None:
        with new_connections(self.server) as client:
            while not self._stop.is_set():
                response = client.post(f"{MODEL_PATH}:predict", content=PREDICT_BODY)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code} {response.text}")
                self.answered += 1


# --- a serving directory, with batching, metrics and a request log ------------------------


@pytest.fixture(scope="module")
def site(pipeline_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("workers")
    settings, files = serving_site(root, pipeline_model)
    logs = root / "request_logs"
    server = ServerProcesses(
        root, f"--model_config_file={files.models_config}",
        f"--monitoring_config_file={files.monitoring_config}", "--enable_batching",
        f"--batching_parameters_file={files.batching_parameters}",
        "--file_system_poll_wait_seconds=1", "--model_config_file_poll_wait_seconds=1",
        "--request_log_sample_rate=1", f"--request_log_dir={logs}")
    yield settings, server, logs, pipeline_model
    server.stop()


def test_the_metrics_page_counts_the_requests_of_every_process(site):
    _, server, _, _ = site
    before = version_counts(server.rest_url)

    def fifty(_: int) -> None:
        with new_connections(server) as client:
            for _ in range(50):
                predict(client)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(fifty, range(4)))
    after = version_counts(server.rest_url)
    assert after[1] - before[1] == 200
    text = httpx.get(server.rest_url + METRICS_PATH).text  # TF Serving's own names and form
    assert re.search(r'^:tensorflow:serving:request_count\{model_name="chicago-taxi",'
                     r'status="OK"\} \d+$', text, re.MULTILINE), text
    assert ':tensorflow:serving:model_version_state{model_name="chicago-taxi",' \
           'state="AVAILABLE",version="1"} 1.0' in text


def test_a_push_swaps_versions_in_every_process_without_a_failed_request(site):
    settings, server, _, model = site
    base = Path(settings.serving_model_dir)
    with Load(server) as load:
        time.sleep(1)
        add_version(base, model, 2)
        wait_for(lambda: in_every_process(
            server, lambda c: c.post(f"{MODEL_PATH}/versions/1:predict",
                                              content=PREDICT_BODY).status_code == 404),
            "version 1 unloaded in both processes", timeout=90)
        time.sleep(1)
    assert load.failures == [] and load.answered > 100
    with new_connections(server) as client:
        assert {predict(client) for _ in range(60)} == {2}


def test_a_canary_keeps_each_key_on_one_side_in_every_process_until_promoted(site):
    """The split's side is the key's BLAKE2b hash (`serving.traffic.bucket`), the same in
    every process: each of 600 keys, asked twice on new connections (most keys reach both
    processes), is answered by the side its hash names."""
    settings, server, _, model = site
    add_version(Path(settings.serving_model_dir), model, 3)
    wait_for(lambda: in_every_process(server, lambda c: predict(c) == 3),
             "version 3 served by both processes", timeout=90)
    operations.start_canary(settings, 3, 20, stable=2)
    keys = [f"customer-{i}" for i in range(600)]
    sides = {key: 3 if traffic.bucket(MODEL_NAME, key) < 20 else 2 for key in keys}
    stable_key = next(key for key in keys if sides[key] == 2)
    wait_for(lambda: in_every_process(server, lambda c: predict(c, key=stable_key) == 2),
             "the split in both processes", timeout=90)

    def answers(chunk: list[str]) -> dict[str, int]:
        with new_connections(server) as client:
            return {key: predict(client, key=key) for key in chunk}

    for _ in range(2):
        with ThreadPoolExecutor(4) as pool:
            chosen = {k: v for part in pool.map(answers, [keys[i::4] for i in range(4)])
                      for k, v in part.items()}
        assert chosen == sides
    assert 0.15 < sum(v == 3 for v in sides.values()) / len(keys) < 0.25
    with Load(server) as load:
        operations.promote(settings)
        wait_for(lambda: in_every_process(server, lambda c: predict(c) == 3),
                 "version 3 alone in both processes", timeout=90)
    assert load.failures == []


def test_ctrl_c_stops_every_process_with_the_request_log_complete(site):
    """Every request so far was logged (rate 1) by the process that answered it, into
    files of its own. Ctrl-C reaches the whole group: the worker leaves it to the primary,
    which stops it (stdin closed: calls finish, its log is written out), then itself; the
    same path as SIGTERM to the primary. After it, both processes' files are finished and
    hold every request."""
    import tensorflow as tf

    _, server, logs, _ = site
    answered = sum(version_counts(server.rest_url).values())
    worker = server.worker_pid()
    assert server.stop(signal.SIGINT) == 0, server.text()
    assert "REST worker 1] SIGINT" not in server.text()  # it was stopped, not interrupted
    assert "exited with code" not in server.text()  # nor taken for a crash and restarted
    wait_for(lambda: not Path(f"/proc/{worker}").exists(), "the worker to exit", timeout=30)
    folder = logs / MODEL_NAME
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    files = sorted(folder.glob("requests-*.tfrecord"))
    writers = {re.match(r"requests-\d{8}T\d{6}-(\d+)-", p.name).group(1) for p in files}
    assert writers == {str(server.process.pid), str(worker)}, files
    records = sum(1 for _ in tf.data.TFRecordDataset([str(p) for p in files]))
    assert records == answered


# --- a base path: ReloadConfig, a worker restarted, a primary killed ----------------------


@pytest.fixture(scope="module")
def lone(pipeline_model, tmp_path_factory):
    """Two processes on a base path, with TLS on both ports: the workers serve the
    primary's REST certificate; gRPC keeps TLS on the primary (the workers' own gRPC
    ports, for ReloadConfig, are loopback-only and plain)."""
    from tests.serving.pki import make_pki, write_ssl_config

    root = tmp_path_factory.mktemp("workers-lone")
    base = root / "models" / MODEL_NAME
    base.mkdir(parents=True)
    add_version(base, pipeline_model, 1)
    pki = make_pki()
    tls = write_ssl_config(root / "ssl.config", pki, False)
    server = ServerProcesses(root, f"--model_name={MODEL_NAME}", f"--model_base_path={base}",
                             f"--ssl_config_file={tls}", f"--rest_ssl_config_file={tls}",
                             https_ca=pki.ca.pem)
    yield server, base, pki
    server.stop()


def reload_config(server: ServerProcesses, base: Path, names: list[str], ca_pem: str):
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    from serving import config_files

    config = config_files.single_model_config(names[0], str(base))
    for name in names[1:]:
        config.model_config_list.config.add().CopyFrom(config.model_config_list.config[0])
        config.model_config_list.config[-1].name = name
    from tests.serving.test_tls import grpc_channel

    with grpc_channel(server.grpc_target, ca_pem) as channel:
        return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
            model_management_pb2.ReloadConfigRequest(config=config), timeout=120)


def answers_as(name: str):
    return lambda client: client.post(f"/v1/models/{name}:predict",
                                      content=PREDICT_BODY).status_code == 200


def test_reload_config_over_tls_on_the_primary_reaches_the_https_worker(lone):
    server, base, pki = lone
    response = reload_config(server, base, [MODEL_NAME, "taxi-copy"], pki.ca.pem)
    assert response.status.error_code == 0, response.status.error_message
    assert in_every_process(server, answers_as("taxi-copy"))
    assert in_every_process(server, answers_as(MODEL_NAME))


def test_a_killed_worker_is_started_again_with_the_reloaded_config(lone):
    server, _, _ = lone
    worker = server.worker_pid()
    os.kill(worker, signal.SIGKILL)
    wait_for(lambda: server.worker_pid() != worker, "the worker started again", timeout=120)
    assert f"REST worker 1 (pid {worker}) exited with code -9: starting it again" \
        in server.text()
    assert in_every_process(server, answers_as("taxi-copy"))


def test_a_worker_stops_by_itself_when_its_primary_is_killed(lone):
    """...and removes the metrics folder its primary made and had no chance to remove."""
    server, _, _ = lone
    worker = server.worker_pid()
    environment = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
    metrics_dir = Path(next(v for v in environment
                            if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")).split(b"=", 1)[1]
                       .decode())
    assert metrics_dir.is_dir()
    server.process.kill()
    server.process.wait(30)
    wait_for(lambda: not Path(f"/proc/{worker}").exists() or
             "State:\tZ" in Path(f"/proc/{worker}/status").read_text(),
             "the orphaned worker to exit", timeout=60)
    assert not metrics_dir.exists()
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.rest_url + MODEL_PATH, timeout=5, verify=server.verify)


def test_a_port_another_server_shares_is_refused_not_split(pipeline_model, tmp_path):
    """A listener with SO_REUSEPORT already on the port (another server with workers):
    a plain bind would share it silently, splitting that server's connections; the
    server says the port is in use and exits 1, as tensorflow_model_server would."""
    import socket

    base = tmp_path / "models" / MODEL_NAME
    base.mkdir(parents=True)
    add_version(base, pipeline_model, 1)
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "serving", "--port=0", f"--rest_api_port={port}",
             "--rest_api_workers=2", f"--model_name={MODEL_NAME}",
             f"--model_base_path={base}"],
            cwd=REPO, env=QUIET, capture_output=True, text=True, timeout=90)
    assert result.returncode == 1, result.stderr
    assert f"error: cannot listen: [Errno 98] REST port 127.0.0.1:{port} is in use" \
        in result.stderr
    assert "Traceback" not in result.stderr
