"""Hot swaps under load: clients keep sending requests while versions come and go.

One server, one scenario in order, as an operator would live it: a new version is pushed
(by the pipeline's own publish function), a partial copy appears and later completes, a
corrupt version appears and is removed, the model is rolled back and restored with the
`mlops` operations. REST and gRPC clients run throughout: not one request may fail, and the
status API must tell the truth at every step.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import grpc
import httpx
import pytest

from serving import operations
from tests.serving.conftest import (
    MODEL_NAME,
    BackgroundClients,
    dtype_of,
    serving_site,
    wait_for,
)

pytestmark = pytest.mark.slow

ROW = {"fare": 9.25, "trip_miles": 1.5, "trip_seconds": 420, "pickup_latitude": 41.88,
       "pickup_longitude": -87.63, "dropoff_latitude": float("nan"),
       "dropoff_longitude": float("nan"), "payment_type": "Credit Card", "company": "",
       "pickup_community_area": 32, "dropoff_community_area": 8, "trip_start_hour": 9,
       "trip_start_day": 2, "trip_start_month": 6}


class Load(BackgroundClients):
    """Background REST and gRPC clients; they record failures and the versions answering."""

    def __init__(self, rest_url: str, grpc_target: str) -> None:
        self.rest_url, self.grpc_target = rest_url, grpc_target
        self.failures: list[str] = []
        self.versions: list[int] = []
        self.count = 0
        super().__init__(*[self._rest] * 3, *[self._grpc] * 2)

    def _rest(self) -> None:
        body = httpx.Request("POST", "/", json={"instances": [ROW]}).content
        with httpx.Client(base_url=self.rest_url, timeout=30) as client:
            while not self._stop.is_set():
                response = client.post(f"/v1/models/{MODEL_NAME}:predict", content=body)
                self.count += 1
                if response.status_code != 200 or "predictions" not in response.json():
                    self.failures.append(f"REST {response.status_code} {response.text}")

    def _grpc(self) -> None:
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL_NAME
        for name, value in ROW.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto([value], dtype=dtype_of(name)))
        with grpc.insecure_channel(self.grpc_target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not self._stop.is_set():
                try:
                    response = stub.Predict(request, timeout=30)
                    self.versions.append(response.model_spec.version.value)
                    self.count += 1
                except grpc.RpcError as err:
                    self.failures.append(f"gRPC {err.code()} {err.details()}")


def status(rest_url: str) -> dict[int, tuple[str, str]]:
    body = httpx.get(f"{rest_url}/v1/models/{MODEL_NAME}").json()
    return {int(s["version"]): (s["state"], s["status"]["error_message"])
            for s in body["model_version_status"]}


def states(rest_url: str) -> dict[int, str]:
    return {version: state for version, (state, _) in status(rest_url).items()}


def test_versions_swap_under_load_without_a_failed_request(tmp_path: Path, pipeline_model: Path,
                                                           start_server):
    from components import versioned_pusher

    config, files = serving_site(tmp_path, pipeline_model)
    base = Path(config.serving_model_dir)
    server = start_server(model_config_file=str(files.models_config),
                          file_system_poll_wait_seconds=1,
                          model_config_file_poll_wait_seconds=1, enable_batching=True,
                          batching_parameters_file=str(files.batching_parameters))
    url = server.rest_url
    assert states(url) == {1: "AVAILABLE"}

    with Load(url, server.grpc_target) as load:
        wait_for(lambda: load.count > 20, "clients to get going")

        # 1. The pipeline publishes version 2: loaded, then 1 unloaded.
        version, _ = versioned_pusher.publish_model(str(pipeline_model), str(base),
                                                    {"model_uri": "test"})
        assert version == 2
        wait_for(lambda: states(url) == {2: "AVAILABLE", 1: "END"}, "version 2 to take over")
        answered = len(load.versions)
        wait_for(lambda: 2 in load.versions[answered:], "version 2 to answer")

        # 2. A partial copy (no variables yet) fails to load; 2 keeps serving; once the copy
        #    completes the version loads.
        partial = base / "3"
        partial.mkdir()
        shutil.copy(pipeline_model / "saved_model.pb", partial / "saved_model.pb")
        wait_for(lambda: states(url).get(3) == "END", "the partial version to fail")
        state, error = status(url)[3]
        assert error, "a failed load carries its error"
        assert status(url)[2][0] == "AVAILABLE"
        for item in ("variables", "assets", "assets.extra", "fingerprint.pb"):
            source = pipeline_model / item
            if source.is_dir():
                shutil.copytree(source, partial / item)
            elif source.exists():
                shutil.copy(source, partial / item)
        wait_for(lambda: states(url) == {3: "AVAILABLE", 2: "END", 1: "END"},
                 "the completed copy to load")

        # 3. A corrupt version fails, 3 keeps serving; removing it clears it from the list.
        corrupt = base / ".staging-4"
        shutil.copytree(pipeline_model, corrupt)
        (corrupt / "saved_model.pb").write_bytes(b"\x00not a SavedModel\xff" * 10)
        corrupt.rename(base / "4")
        wait_for(lambda: states(url).get(4) == "END", "the corrupt version to fail")
        assert "Could not parse" in status(url)[4][1] and states(url)[3] == "AVAILABLE"
        assert httpx.get(f"{url}/v1/models/{MODEL_NAME}/versions/4").json()[
            "model_version_status"][0]["status"]["error_code"] == "DATA_LOSS"
        shutil.rmtree(base / "4")
        wait_for(lambda: 4 not in states(url), "the removed version to leave the list")

        # 4. Roll back (one command's worth): 2 serves again, 3 stays on disk; then restore.
        change = operations.rollback(config)
        assert change.version == 2 and (base / "3").is_dir()
        wait_for(lambda: states(url) == {3: "END", 2: "AVAILABLE", 1: "END"}, "the rollback")
        answered = len(load.versions)
        wait_for(lambda: len(load.versions) > answered + 20, "requests after the rollback")
        assert set(load.versions[answered + 5:]) == {2}
        listing = operations.list_versions(config, url)
        assert listing.policy == "specific 2"
        assert {row.version: row.state for row in listing.rows} == {
            3: "END", 2: "AVAILABLE", 1: "END"}

        operations.restore(config)
        wait_for(lambda: states(url)[3] == "AVAILABLE" and states(url)[2] == "END",
                 "the restore")
        time.sleep(1)

    assert load.failures == [], load.failures[:5]
    assert load.count > 100
    assert {1, 2, 3} <= set(load.versions)
