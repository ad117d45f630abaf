"""The model checks served to Flagger (`mlops rollout webhook`), against stand-in servers.

Two stand-ins for tensorflow_model_server's REST API run on loopback and answer the probe
with fixed class scores (the primary's, the same again, or the same reversed, as a
candidate whose classes were swapped would); the webhook is called the way Flagger calls
it (POST of its payload, `pkg/controller/webhook.go`) and must pass the first, fail the
second with a reason Flagger shows, and fail whatever leaves nothing to compare.
"""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Optional

import httpx
import numpy as np
import pytest

from serving import deployment
from serving.rollout import webhook
from serving.rollout.policy import RolloutPolicy
from tests.conftest import REPO, write_config

MODEL = "chicago-taxi"
POLICY = RolloutPolicy(max_divergence=0.1)
# The probe: 300 rows; the stand-ins' tip probability is the row's `x`, skewed towards
# "no tip" (Beta(2, 5)) as the taxi model's is, so that swapping the classes moves both
# score columns' histograms.
PROBE = {"instances": [{"x": float(x)} for x in np.random.default_rng(3).beta(2, 5, 300)]}
FLAGGER_PAYLOAD = {"name": MODEL, "namespace": "mlops", "phase": "Progressing",
                   "checksum": "6d8c5f7b9", "metadata": {}}


def champion(instances: list[dict]) -> Any:
    return [[1 - row["x"], row["x"]] for row in instances]


def reversed_classes(instances: list[dict]) -> Any:
    return [[row["x"], 1 - row["x"]] for row in instances]


@contextlib.contextmanager
def model_server(predictions: Optional[Callable[[list[dict]], Any]] = champion,
                 status: int = 200, key: str = "predictions") -> Iterator[str]:
    """A stand-in REST API answering `:predict` of any model with `predictions(instances)`
    under `key` (or `status` with an error); yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if not self.path.endswith(":predict") or status != 200:
                answer, code = {"error": "Could not parse example input"}, status or 404
            else:
                answer, code = {key: predictions(body["instances"])}, 200
            data = json.dumps(answer).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    with running(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as url:
        yield url


@contextlib.contextmanager
def running(server: ThreadingHTTPServer) -> Iterator[str]:
    """Serves `server` on a thread until the block ends; yields its base URL."""
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def hook(primary: str, canary: str, probe: dict = PROBE) -> Iterator[str]:
    """The webhook on loopback, for the two servers; yields its URL."""
    with running(webhook.make_server(
            webhook.ModelChecks(MODEL, primary, canary, probe, POLICY), "127.0.0.1", 0)) as url:
        yield f"{url}/"


def call(url: str, payload: Any = FLAGGER_PAYLOAD) -> httpx.Response:
    """POST as Flagger does: the JSON payload, Content-Type application/json."""
    return httpx.post(url, content=json.dumps(payload),
                      headers={"Content-Type": "application/json"}, timeout=30)


def a_closed_port() -> str:
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as server:
        return f"http://127.0.0.1:{server.server_address[1]}"


# --- Flagger's contract ----------------------------------------------------------------

def test_a_canary_that_predicts_as_the_primary_passes():
    with model_server() as primary, model_server() as canary, hook(primary, canary) as url:
        response = call(url)
    assert response.status_code == 200  # Flagger: <= 202 passes
    body = response.json()
    assert (body["verdict"], body["canary"], body["phase"], body["rows"]) == (
        "pass", "chicago-taxi.mlops", "Progressing", 300)
    assert body["check"] == "divergence"
    assert body["value"] == pytest.approx(0.0)
    assert body["threshold"] == POLICY.max_divergence


def test_a_canary_with_its_classes_reversed_fails_with_a_reason():
    with model_server() as primary, model_server(reversed_classes) as canary, \
            hook(primary, canary) as url:
        response = call(url)
    assert response.status_code == 412  # a 4xx: Flagger keeps its body for the event
    body = response.json()
    assert (body["verdict"], body["check"]) == ("fail", "divergence")
    assert body["value"] > POLICY.max_divergence
    assert "Jensen-Shannon" in body["reason"] and "p=" in body["reason"]


def test_columnar_and_named_outputs_are_compared_too():
    def named(instances: list[dict]) -> Any:
        return {"scores": champion(instances), "classes": [["0", "1"]] * len(instances)}

    with model_server(named, key="outputs") as primary, \
            model_server(named, key="outputs") as canary, hook(primary, canary) as url:
        assert call(url).status_code == 200


@pytest.mark.parametrize("side", ["canary", "primary"])
def test_nothing_to_compare_fails_the_check(side):
    """A canary failing the probe the primary answers is the candidate's failure; a
    primary that does not answer leaves the canary unmeasured, which must not pass."""
    with model_server() as good, model_server(status=400) as bad:
        primary, canary = (good, bad) if side == "canary" else (bad, good)
        with hook(primary, canary) as url:
            response = call(url)
        with hook(good if side == "canary" else a_closed_port(),
                  a_closed_port() if side == "canary" else good) as url:
            unreachable = call(url)
    for answer in (response, unreachable):
        assert answer.status_code == 412
        assert answer.json()["check"] == "probe"
        assert side in answer.json()["reason"]
    assert "HTTP 400" in response.json()["reason"]


def test_answers_without_a_number_fail_the_check():
    def words(instances: list[dict]) -> Any:
        return [["tip"] for _ in instances]

    with model_server(words) as primary, model_server(words) as canary, \
            hook(primary, canary) as url:
        response = call(url)
    assert response.status_code == 412
    assert "no numeric output" in response.json()["reason"]


def test_a_body_that_is_not_flaggers_payload_is_refused():
    with model_server() as primary, model_server() as canary, hook(primary, canary) as url:
        assert call(url, ["not", "an", "object"]).status_code == 400
        assert call(url, {"name": MODEL}).status_code == 400
        assert httpx.get(f"{url}healthz").json() == {"status": "ok"}
        assert httpx.get(url).status_code == 404


# --- the pieces -------------------------------------------------------------------------

def test_prediction_outputs_reads_tf_servings_answer_formats():
    rows = webhook.prediction_outputs({"predictions": [[0.2, 0.8], [0.6, 0.4]]})
    assert rows["predictions"].shape == (2, 2)
    named = webhook.prediction_outputs({"predictions": [{"scores": [0.2, 0.8], "c": "a"},
                                                        {"scores": [0.6, 0.4], "c": "b"}]})
    assert named["scores"].shape == (2, 2) and named["c"].dtype.kind == "U"
    assert webhook.prediction_outputs({"outputs": [1.0, 2.0]})["outputs"].shape == (2,)
    assert set(webhook.prediction_outputs({"outputs": {"y": [1.0], "z": [[1, 2]]}})) == \
        {"y", "z"}
    assert webhook.prediction_outputs({"predictions": [[1.0], [1.0, 2.0]]}) == {}  # ragged
    assert webhook.prediction_outputs({"error": "x"}) == {}


def test_read_probe_takes_a_predict_body_and_names_what_is_wrong(tmp_path):
    good = tmp_path / "probe.json"
    good.write_text(json.dumps(PROBE))
    assert webhook.read_probe(good) == PROBE
    for text, words in (("{", "not valid JSON"), ('{"examples": []}', "instances")):
        bad = tmp_path / "bad.json"
        bad.write_text(text)
        with pytest.raises(webhook.ProbeError, match=words):
            webhook.read_probe(bad)
    with pytest.raises(webhook.ProbeError, match="missing.json"):
        webhook.read_probe(tmp_path / "missing.json")


# --- the command ------------------------------------------------------------------------

def test_the_default_urls_are_the_services_flagger_makes(tmp_path):
    from pipeline.definition.config import load_config

    settings = load_config(write_config(tmp_path), use_env=False,
                           check_files=False).serving_settings()
    assert deployment.flagger_service_url(settings, "primary") == \
        "http://chicago-taxi-primary.mlops:8501"
    assert deployment.flagger_service_url(settings, "canary") == \
        "http://chicago-taxi-canary.mlops:8501"


def test_mlops_rollout_webhook_serves_the_check(tmp_path):
    """The command end to end: it reads the config's threshold and model, serves on the
    port it prints, and fails a reversed candidate."""
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(PROBE))
    config = write_config(tmp_path)
    with model_server() as primary, model_server(reversed_classes) as canary:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli.main", "rollout", "webhook", "--config",
             str(config), "--probe", str(probe), "--primary", primary, "--canary", canary,
             "--host", "127.0.0.1", "--port", "0"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "COLUMNS": "200"})
        try:
            line = process.stdout.readline()
            assert "rollout webhook on http://127.0.0.1:" in line, (
                line + process.stderr.read() if process.poll() is not None else line)
            url = line.split("on ", 1)[1].split(" ", 1)[0]
            response = call(url)
        finally:
            process.terminate()
            process.wait(timeout=30)
    assert response.status_code == 412
    assert response.json()["threshold"] == 0.1  # the config's max_divergence
    assert "max divergence 0.1" in line and canary in line and primary in line


def test_a_probe_that_is_not_a_predict_body_is_a_one_line_error(tmp_path):
    probe = tmp_path / "probe.json"
    probe.write_text("[]")
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.main", "rollout", "webhook", "--config",
         str(write_config(tmp_path)), "--probe", str(probe), "--port", "0"],
        cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: ") and "predict body" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_webhook_module_imports_nothing_of_the_pipeline():
    code = ("import sys, serving.rollout.webhook; "
            "sys.exit(any(m.split('.')[0] in ('pipeline', 'components', 'tfx') "
            "for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert result.returncode == 0


def test_flaggers_timeout_covers_both_probes():
    """The two probes go one after the other, within the Canary's webhook timeout."""
    assert 2 * webhook.PROBE_TIMEOUT_S < float(deployment.WEBHOOK_TIMEOUT.rstrip("s"))
