"""The rollout loop in a real embedded server, with real SavedModels and REST clients on
loopback: a version pushed beside the champion is loaded, started as the candidate,
judged every second on the requests it answered, and promoted or aborted; a client never
sees the candidate's failures.

The toy versions answer `scores = [1 - sigmoid(x), sigmoid(x)]` (the champion, and a
candidate that is the same model), the clients send x ~ N(-1.5, 1) (mostly negatives, as
most of a classifier's traffic is one class); one answers the scores reversed (a model that learned
the wrong label: caught by prediction divergence), one refuses a fifth of the inputs with
TensorFlow's InvalidArgument (TF Serving's 400, as a graph's check fails; caught by the
error rate and answered by the champion).
"""
from __future__ import annotations

import random
import threading
from pathlib import Path

import httpx
import pytest

from serving import config_files, server_files
from serving.rollout import records
from serving.rollout.records import RolloutFiles
from tests.serving.conftest import add_version, wait_for

pytestmark = pytest.mark.slow  # a server and four SavedModels

MODEL = "toy"


def save_toy(folder: Path, kind: str) -> Path:
    """A SavedModel of one kind: same, reversed, or refusing (x < -2.34: about a fifth of
    the clients' inputs)."""
    import tensorflow as tf

    class Toy(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def serve(self, x):
            if kind == "refusing":
                tf.debugging.assert_greater_equal(x, -2.34, message="x out of range")
            positive = tf.sigmoid(x)
            scores = tf.stack([1 - positive, positive], axis=1)
            return {"scores": scores[:, ::-1] if kind == "reversed" else scores}

    module = Toy()
    tf.saved_model.save(module, str(folder / kind), signatures={"serving_default": module.serve})
    return folder / kind


@pytest.fixture(scope="module")
def toys(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("toys")
    return {kind: save_toy(folder, kind) for kind in ("same", "reversed", "refusing")}


class Clients:
    """Threads sending bare-URL predictions with random request keys; what a client saw."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = f"{url}/v1/models/{MODEL}:predict"
        self.statuses: dict[int, int] = {}
        self.versions: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._send, args=(seed,), daemon=True)
                         for seed in range(threads)]

    def _send(self, seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                body = {"instances": [rng.gauss(-1.5, 1)]}
                response = client.post(self.url, json=body,
                                       headers={"X-Request-Key": str(rng.random())})
                with self._lock:
                    self.statuses[response.status_code] = \
                        self.statuses.get(response.status_code, 0) + 1
                    version = response.headers.get("X-Model-Version", "?")
                    self.versions[version] = self.versions.get(version, 0) + 1

    def __enter__(self) -> "Clients":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


def test_pushes_are_promoted_or_aborted_on_live_checks_and_clients_never_see_a_failure(
        tmp_path, toys, start_server):
    serving = tmp_path / "serving"
    base = serving / MODEL
    base.mkdir(parents=True)
    add_version(base, toys["same"], 1)
    models_config = serving / "models.config"
    settings = server_files.settings_for(models_config, MODEL)
    config_files.write_model_server_config(
        server_files.default_models_config(settings, str(base)), models_config)
    server = start_server(model_config_file=str(models_config),
                          model_config_file_poll_wait_seconds=1, rollout=True,
                          rollout_steps="25,50", rollout_interval_seconds=1.0,
                          rollout_threshold=2, rollout_min_requests=20)
    files = RolloutFiles(serving, MODEL)

    def outcome_of(version: int) -> str:
        state = files.read_state()
        return state.state if version in state.decided else ""

    with Clients(server.rest_url) as clients:
        wait_for(lambda: files.read_state().champion == 1, "version 1 pinned")
        for version, kind, expected in ((2, "same", records.PROMOTED),
                                        (3, "reversed", records.ABORTED),
                                        (4, "refusing", records.ABORTED)):
            add_version(base, toys[kind], version)
            wait_for(lambda v=version: outcome_of(v), f"version {version} decided",
                     timeout=90)
            assert outcome_of(version) == expected, files.read_state()
    assert clients.statuses.keys() == {200}, clients.statuses  # no failure reached a client
    assert {"1", "2", "3", "4"} <= clients.versions.keys()  # every version answered some

    ends = {d["candidate"]: d for d in files.decisions() if d["event"] != "interval"
            and d["event"] != "start"}
    assert ends[2]["by"] == "checks"
    assert "divergence" in ends[3]["reason"] and "error_rate" not in ends[3]["reason"]
    assert "error_rate" in ends[4]["reason"]
    refused = [d for d in files.decisions(candidate=4) if d["event"] == "interval"]
    error_rates = [c["value"] for d in refused for c in d["checks"]
                   if c["name"] == "error_rate" and c["value"] is not None]
    assert error_rates and all(0.1 < rate < 0.3 for rate in error_rates), error_rates
    assert files.read_state().champion == 2
    served = server.server.repository.view(MODEL)
    assert set(served.servables) == {2}
