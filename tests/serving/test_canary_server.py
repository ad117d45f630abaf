"""The canary split on a running embedded server, with the model the pipeline trained.

One server for the module, on a serving directory laid out by `mlops serve`'s own files:
versions 1 and 2, and a canary started (`mlops canary 2 --weight 20`'s operation) before the
server starts, so the server reads the split at start as after a restart. Then, in order:
the split over 2,000 REST requests, the X-Model-Version header and the per-version metrics,
the bypass by version and label, sticky keys on REST and gRPC; and, with REST and gRPC
clients running throughout, the weight changed, the canary aborted, started again and
promoted through the `mlops` operations: not one request may fail.
"""
from __future__ import annotations

import itertools
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import grpc
import httpx
import pytest

from serving import operations, traffic
from tests.serving.conftest import (
    MODEL_NAME,
    MODEL_PATH,
    PREDICT_BODY,
    ROWS,
    BackgroundClients,
    dtype_of,
    serving_site,
    version_counts,
    wait_for,
)

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def site(pipeline_model, tmp_path_factory):
    from tests.serving.conftest import RunningServer

    root = tmp_path_factory.mktemp("canary")
    settings, files = serving_site(root, pipeline_model, (1, 2))
    operations.start_canary(settings, 2, 20)  # no server yet: it reads the split at start
    server = RunningServer(model_config_file=str(files.models_config),
                           monitoring_config_file=str(files.monitoring_config),
                           file_system_poll_wait_seconds=1,
                           model_config_file_poll_wait_seconds=1, enable_batching=True,
                           batching_parameters_file=str(files.batching_parameters))
    yield settings, server
    server.stop()


def predict(client: httpx.Client, path: str = f"{MODEL_PATH}:predict", key=None) -> int:
    response = client.post(path, content=PREDICT_BODY,
                           headers={"X-Request-Key": key} if key else None)
    assert response.status_code == 200, response.text
    assert list(response.json()) == ["predictions"]  # the body stays TF Serving's
    return int(response.headers["X-Model-Version"])


def grpc_request():
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    for name, value in ROWS[0].items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto([value], dtype=dtype_of(name)))
    return request


def test_the_split_over_2000_requests_with_the_version_header_and_metrics(site):
    _, server = site
    before = version_counts(server.rest_url)

    def batch(_: int) -> Counter:
        with httpx.Client(base_url=server.rest_url, timeout=60) as client:
            return Counter(predict(client) for _ in range(500))

    with ThreadPoolExecutor(4) as pool:
        counts = sum(pool.map(batch, range(4)), Counter())
    assert sum(counts.values()) == 2000 and set(counts) == {1, 2}
    assert abs(counts[2] / 2000 * 100 - 20) < 3.5, counts  # exact to a run of 32: 1.6 points
    after = version_counts(server.rest_url)
    assert {v: after[v] - before[v] for v in (1, 2)} == {1: counts[1], 2: counts[2]}


def test_with_batching_on_a_lone_client_s_requests_alternate_at_the_share(site):
    """The server's batcher ends the split's run when the run's version's batch leaves for
    the model: one client's requests are each a batch of their own, so each is its own run
    and a 20 % canary answers every fifth (in runs of a fixed 32, as before, one client saw
    stretches of 32: a quiet service's canary took its share in lumps)."""
    with httpx.Client(base_url=site[1].rest_url, timeout=60) as client:
        versions = [predict(client) for _ in range(480)]
    # The earlier tests' load may have left the canary up to a run ahead of or behind its
    # share: within 180 requests that is made up, and from then on the pattern is exact.
    tail = versions[180:]
    stretches = [(version, len(list(group))) for version, group in itertools.groupby(tail)]
    assert {length for version, length in stretches if version == 2} == {1}
    assert {length for version, length in stretches[1:-1] if version == 1} == {4}
    assert tail.count(2) == 60


def test_a_version_or_a_label_bypasses_the_split(site):
    _, server = site
    with httpx.Client(base_url=server.rest_url, timeout=60) as client:
        for path, version in ((f"{MODEL_PATH}/versions/1:predict", 1),
                              (f"{MODEL_PATH}/versions/2:predict", 2),
                              (f"{MODEL_PATH}/labels/stable:predict", 1),
                              (f"{MODEL_PATH}/labels/canary:predict", 2)):
            assert {predict(client, path) for _ in range(60)} == {version}, path
        metadata = client.get(f"{MODEL_PATH}/versions/1/metadata")
        assert metadata.headers["X-Model-Version"] == "1"
        assert "X-Model-Version" not in client.get(MODEL_PATH).headers  # status: every version


def test_a_request_key_gets_the_same_version_on_rest_and_grpc(site):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    _, server = site
    keys = [f"customer-{i}" for i in range(150)]
    with httpx.Client(base_url=server.rest_url, timeout=60) as client:
        chosen = {key: predict(client, key=key) for key in keys}
        for _ in range(2):
            assert {key: predict(client, key=key) for key in keys} == chosen
    assert set(chosen.values()) == {1, 2}
    request = grpc_request()
    with grpc.insecure_channel(server.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for key in keys[:60]:
            response = stub.Predict(request, timeout=30, metadata=(("x-request-key", key),))
            assert response.model_spec.version.value == chosen[key], key
        unkeyed = Counter(stub.Predict(request, timeout=30).model_spec.version.value
                          for _ in range(200))
    assert set(unkeyed) == {1, 2}


class Load(BackgroundClients):
    """REST and gRPC clients on the bare URL; they record failures and who answered."""

    def __init__(self, rest_url: str, grpc_target: str) -> None:
        self.rest_url, self.grpc_target = rest_url, grpc_target
        self.failures: list[str] = []
        self.answers: list[int] = []  # versions, in the order answers arrived
        self._lock = threading.Lock()
        super().__init__(*[self._rest] * 3, self._grpc)

    def _record(self, version: int) -> None:
        with self._lock:
            self.answers.append(version)

    def _rest(self) -> None:
        with httpx.Client(base_url=self.rest_url, timeout=30) as client:
            while not self._stop.is_set():
                response = client.post(f"{MODEL_PATH}:predict", content=PREDICT_BODY)
                if response.status_code != 200 or "predictions" not in response.json():
                    self.failures.append(f"REST {response.status_code} {response.text}")
                else:
                    self._record(int(response.headers["X-Model-Version"]))

    def _grpc(self) -> None:
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        request = grpc_request()
        with grpc.insecure_channel(self.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self._stop.is_set():
                try:
                    self._record(stub.Predict(request, timeout=30).model_spec.version.value)
                except grpc.RpcError as err:
                    self.failures.append(f"gRPC {err.code()} {err.details()}")

    def share_after(self, applied: Callable[[], bool], count: int = 600) -> Counter:
        """Who answered the next ``count`` requests once ``applied()`` holds (the server
        took the change on its config poll, 1 s). The answers to the requests in flight
        then (one per client) are skipped: they were routed before."""
        wait_for(applied, "the server to apply the change")
        start = len(self.answers) + len(self._threads)
        wait_for(lambda: len(self.answers) >= start + count, f"{count} answers")
        return Counter(self.answers[start:start + count])


def states(url: str) -> dict[int, str]:
    body = httpx.get(f"{url}{MODEL_PATH}", timeout=30).json()
    return {int(s["version"]): s["state"] for s in body["model_version_status"]}


def test_weights_change_under_load_then_abort_then_promote(site):
    settings, server = site
    url = server.rest_url
    loaded = operations.waiter(url, MODEL_NAME)
    gone = operations.unload_waiter(url, MODEL_NAME)
    split_file = operations.split_file(settings)

    def split_applied() -> bool:  # the server routes by what the file says now
        written = traffic.read_splits(split_file) if split_file.exists() else {}
        return server.server.router.splits == written

    with Load(url, server.grpc_target) as load:
        wait_for(lambda: len(load.answers) > 50, "clients to get going")
        share = load.share_after(split_applied)
        assert share[2] / 600 < 0.35, share  # 20 %

        operations.set_canary_weight(settings, 80)  # `mlops canary --weight 80`
        share = load.share_after(split_applied)
        assert 0.70 < share[2] / 600 < 0.90, share

        operations.set_canary_weight(settings, 0)
        assert load.share_after(split_applied, 300) == {1: 300}
        operations.set_canary_weight(settings, 50)
        share = load.share_after(split_applied)
        assert 0.40 < share[2] / 600 < 0.60, share

        change = operations.abort(settings, gone)  # `mlops abort`
        assert "every request goes to stable version 1" in change.message
        assert load.share_after(split_applied, 300) == {1: 300}
        wait_for(lambda: states(url) == {2: "END", 1: "AVAILABLE"}, "the canary to unload")
        assert not split_file.exists()

        operations.start_canary(settings, 2, 50, wait_until_served=loaded)  # again
        wait_for(lambda: states(url) == {2: "AVAILABLE", 1: "AVAILABLE"}, "the canary to load")
        share = load.share_after(split_applied)
        assert 0.40 < share[2] / 600 < 0.60, share

        change = operations.promote(settings, gone)  # `mlops promote`
        assert "version 2 promoted" in change.message
        assert load.share_after(split_applied, 300) == {2: 300}
        wait_for(lambda: states(url) == {2: "AVAILABLE", 1: "END"}, "the old stable to unload")
        assert not split_file.exists()
        count = len(load.answers)

    assert load.failures == [], load.failures[:5]
    assert count > 2000
