"""TF Serving's REST API on the embedded server, against the model the pipeline trained.

One server per module: two versions (1 and 2) of the model under a models.config with a
``specific`` policy and the labels ``stable`` -> 1, ``canary`` -> 2, Prometheus enabled by a
monitoring config. A second, small server (one version, no monitoring, a 1,000-byte body
limit) checks what only such a server can show. Every client error must come back as its
4xx with an ``{"error": ...}`` body, never as a 500.
"""
from __future__ import annotations

import base64
import json
import math
import re
import socket
import time
from unittest import mock

import httpx
import numpy as np
import pytest

from serving import config_files
from tests.conftest import REPO
from tests.serving.conftest import (INTS, MODEL_NAME, ROWS, RunningServer, add_version, arrays,
                                   csv_row, example_proto, nested, servable, wait_for)

pytestmark = pytest.mark.slow

MODEL = f"/v1/models/{MODEL_NAME}"
METRICS_PATH = "/monitoring/prometheus/metrics"
ROW = ROWS[0]


def example_json(row: dict) -> dict:
    """A row as a classify example: the same dict, "" (missing) left out."""
    return {key: value for key, value in row.items() if value != ""}


def serialized_example(row: dict) -> bytes:
    return example_proto(row).SerializeToString()


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def columns(rows: list[dict]) -> dict:
    return {key: [row[key] for row in rows] for key in rows[0]}


def error(response: httpx.Response, status: int) -> str:
    """The error message of a refused request, after checking its status and shape."""
    assert response.status_code == status, (response.status_code, response.text)
    document = response.json()
    assert list(document) == ["error"], document
    assert isinstance(document["error"], str) and document["error"]
    return document["error"]


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def scores_of(predictions: list[dict]) -> np.ndarray:
    return np.array([p["scores"] for p in predictions], dtype=np.float64)


# --- servers -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(pipeline_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("rest_api")
    base = root / "models" / MODEL_NAME
    base.mkdir(parents=True)
    add_version(base, pipeline_model, 1)
    add_version(base, pipeline_model, 2)
    add_version(base, pipeline_model, 3)  # on disk but not in the policy: never loaded
    models = config_files.ModelServerConfig()
    model = models.model_config_list.config.add(name=MODEL_NAME, base_path=str(base),
                                                model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend([1, 2])
    model.version_labels["stable"] = 1
    model.version_labels["canary"] = 2
    config_files.write_model_server_config(models, root / "models.config")
    monitoring = root / "monitoring.config"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{METRICS_PATH}" }}\n')
    running = RunningServer(model_config_file=str(root / "models.config"),
                            monitoring_config_file=str(monitoring),
                            file_system_poll_wait_seconds=0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.rest_url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def small_server(pipeline_model, tmp_path_factory):
    """One version, no monitoring config, requests limited to 1,000 bytes, a 2 s read
    timeout, at most 8 connections."""
    base = tmp_path_factory.mktemp("rest_small") / MODEL_NAME
    base.mkdir()
    add_version(base, pipeline_model, 1)
    running = RunningServer(model_name=MODEL_NAME, model_base_path=str(base),
                            file_system_poll_wait_seconds=0, max_request_bytes=1000,
                            rest_read_timeout_seconds=2, rest_max_connections=8)
    yield running
    running.stop()


# --- status ----------------------------------------------------------------------------------

def test_status_lists_the_loaded_versions_newest_first(client):
    document = ok(client.get(MODEL))
    assert document == {"model_version_status": [
        {"version": version, "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}} for version in ("2", "1")]}


def test_status_of_one_version(client):
    (status,) = ok(client.get(f"{MODEL}/versions/1"))["model_version_status"]
    assert (status["version"], status["state"]) == ("1", "AVAILABLE")


@pytest.mark.parametrize("label, version", [("stable", "1"), ("canary", "2")])
def test_status_by_label(client, label, version):
    (status,) = ok(client.get(f"{MODEL}/labels/{label}"))["model_version_status"]
    assert (status["version"], status["state"]) == (version, "AVAILABLE")


def test_status_errors(client):
    assert error(client.get("/v1/models/nope"), 404) == \
        "Could not find any versions of model nope"
    assert "version 3" in error(client.get(f"{MODEL}/versions/3"), 404)  # not in the policy
    assert "version 9" in error(client.get(f"{MODEL}/versions/9"), 404)
    assert "Unrecognized servable version label: beta" in error(
        client.get(f"{MODEL}/labels/beta"), 400)


# --- metadata --------------------------------------------------------------------------------

def test_metadata_describes_the_signatures(client):
    document = ok(client.get(f"{MODEL}/metadata"))
    assert document["model_spec"] == {"name": MODEL_NAME, "version": "2",
                                      "signature_name": ""}
    signatures = document["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "classify", "predict_examples",
            "transform_features"} <= set(signatures)
    default = signatures["serving_default"]
    assert default["method_name"] == "tensorflow/serving/predict"
    assert len(default["inputs"]) == 14
    assert default["inputs"]["fare"]["dtype"] == "DT_FLOAT"
    assert default["inputs"]["company"]["dtype"] == "DT_STRING"
    for name in INTS:  # integer columns take the data's int64, not text
        assert default["inputs"][name]["dtype"] == "DT_INT64", name
    assert default["inputs"]["fare"]["tensor_shape"]["dim"][0]["size"] == "-1"
    assert default["outputs"]["classes"]["dtype"] == "DT_STRING"
    assert default["outputs"]["scores"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in default["outputs"]["scores"]["tensor_shape"]["dim"]] == \
        ["-1", "2"]
    classify = signatures["classify"]
    assert classify["method_name"] == "tensorflow/serving/classify"
    assert classify["inputs"]["inputs"]["dtype"] == "DT_STRING"


@pytest.mark.parametrize("path, version", [("/versions/1", "1"), ("/labels/stable", "1"),
                                           ("/labels/canary", "2")])
def test_metadata_of_a_version_or_label(client, path, version):
    document = ok(client.get(f"{MODEL}{path}/metadata"))
    assert document["model_spec"]["version"] == version


def test_metadata_errors(client):
    assert "Latest(nope)" in error(client.get("/v1/models/nope/metadata"), 404)
    assert error(client.get(f"{MODEL}/versions/7/metadata"), 404)
    assert "beta" in error(client.get(f"{MODEL}/labels/beta/metadata"), 400)


# --- predict ---------------------------------------------------------------------------------

def test_predict_row_format(client, server):
    predictions = ok(client.post(f"{MODEL}:predict", json={"instances": ROWS}))["predictions"]
    assert len(predictions) == len(ROWS)
    for prediction in predictions:
        assert prediction["classes"] == ["no_tip", "tip"]
        assert len(prediction["scores"]) == 2
        assert sum(prediction["scores"]) == pytest.approx(1.0, abs=1e-5)
    expected = servable(server, 2).run("serving_default", arrays(ROWS))
    np.testing.assert_allclose(scores_of(predictions), expected["scores"], rtol=1e-5)
    assert expected["classes"][0].tolist() == [b"no_tip", b"tip"]


def test_row_and_columnar_formats_agree(client):
    rows = ok(client.post(f"{MODEL}:predict", json={"instances": ROWS}))["predictions"]
    outputs = ok(client.post(f"{MODEL}:predict", json={"inputs": columns(ROWS)}))["outputs"]
    assert set(outputs) == {"classes", "scores"}
    assert outputs["classes"] == [["no_tip", "tip"]] * len(ROWS)
    np.testing.assert_allclose(np.array(outputs["scores"]), scores_of(rows), rtol=1e-5)


def test_missing_values_still_predict(client, server):
    gaps = [{**ROW, "fare": math.nan, "trip_miles": math.nan, "company": "",
             "payment_type": ""}]
    body = json.dumps({"instances": gaps + ROWS[1:]})  # NaN is not strict JSON: sent as is
    assert "NaN" in body
    predictions = ok(client.post(f"{MODEL}:predict", content=body))["predictions"]
    scores = scores_of(predictions)
    assert scores.shape == (len(ROWS), 2) and np.isfinite(scores).all()
    expected = servable(server, 2).run("serving_default", arrays(gaps + ROWS[1:]))
    np.testing.assert_allclose(scores, expected["scores"], rtol=1e-5)


def test_predict_by_version_and_label_reaches_that_version(client, server):
    one, two = servable(server, 1), servable(server, 2)
    assert one is not two
    body = {"instances": [ROW]}
    with mock.patch.object(one, "run", wraps=one.run) as run_one, \
            mock.patch.object(two, "run", wraps=two.run) as run_two:
        ok(client.post(f"{MODEL}/versions/1:predict", json=body))
        ok(client.post(f"{MODEL}/labels/stable:predict", json=body))
        assert (run_one.call_count, run_two.call_count) == (2, 0)
        ok(client.post(f"{MODEL}/versions/2:predict", json=body))
        ok(client.post(f"{MODEL}/labels/canary:predict", json=body))
        ok(client.post(f"{MODEL}:predict", json=body))  # latest
        assert (run_one.call_count, run_two.call_count) == (2, 3)


def test_predict_examples_signature_with_b64(client, server):
    serialized = [serialized_example(row) for row in ROWS]
    body = {"signature_name": "predict_examples", "instances": [b64(s) for s in serialized]}
    predictions = ok(client.post(f"{MODEL}:predict", json=body))["predictions"]
    assert np.array(predictions).shape == (len(ROWS), 1)  # one output: plain values
    # The same trips through serving_default give the same tip probability.
    rows = ok(client.post(f"{MODEL}:predict", json={"instances": ROWS}))["predictions"]
    np.testing.assert_allclose(np.array(predictions)[:, 0], scores_of(rows)[:, 1], rtol=1e-4)
    columnar = {"signature_name": "predict_examples",
                "inputs": {"examples": [b64(s) for s in serialized]}}
    outputs = ok(client.post(f"{MODEL}:predict", json=columnar))["outputs"]
    np.testing.assert_allclose(outputs, predictions, rtol=1e-5)


def test_transform_features_signature(client):
    body = {"signature_name": "transform_features",
            "instances": [b64(serialized_example(row)) for row in ROWS[:2]]}
    predictions = ok(client.post(f"{MODEL}:predict", json=body))["predictions"]
    assert len(predictions) == 2
    assert {"fare_xf", "company_xf", "trip_start_hour_xf"} <= set(predictions[0])
    for prediction in predictions:
        assert isinstance(prediction["trip_start_hour_xf"][0], int)  # a vocabulary index
        assert isinstance(prediction["fare_xf"][0], float)  # scaled
    assert predictions[0]["fare_xf"] != predictions[1]["fare_xf"]


def test_one_raw_csv_row_gets_the_same_scores_from_predict_and_classify(client, server):
    """A trip as the data set holds it (integers as JSON integers), sent unchanged to
    serving_default and, as a tf.Example, to classify and predict_examples."""
    row = csv_row(REPO / "data" / "chicago_taxi" / "span-2" / "trips.csv", 1)
    assert isinstance(row["trip_start_hour"], int) and len(row) == 14
    assert all(value == value and value != "" for value in row.values())  # nothing missing
    (prediction,) = ok(client.post(f"{MODEL}:predict", json={"instances": [row]}))[
        "predictions"]
    (result,) = ok(client.post(f"{MODEL}:classify", json={
        "signature_name": "classify", "examples": [row]}))["results"]
    assert [label for label, _ in result] == prediction["classes"] == ["no_tip", "tip"]
    np.testing.assert_allclose([score for _, score in result], prediction["scores"],
                               rtol=1e-5)
    columnar = ok(client.post(f"{MODEL}:predict", json={
        "inputs": {key: [value] for key, value in row.items()}}))["outputs"]
    np.testing.assert_allclose(columnar["scores"], [prediction["scores"]], rtol=1e-5)
    (tip,) = ok(client.post(f"{MODEL}:predict", json={
        "signature_name": "predict_examples",
        "instances": [b64(serialized_example(row))]}))["predictions"]
    assert tip[0] == pytest.approx(prediction["scores"][1], rel=1e-5)


def test_integer_categories_reach_their_vocabulary_entries(client):
    """The int64 input is turned into the vocabulary's text in the graph, as Transform saw
    it: known hours get their own index, an hour never seen gets the OOV bucket."""
    body = {"signature_name": "transform_features",
            "instances": [b64(serialized_example({**ROW, "trip_start_hour": hour}))
                          for hour in (12, 18, 9, 99)]}
    predictions = ok(client.post(f"{MODEL}:predict", json=body))["predictions"]
    indices = [p["trip_start_hour_xf"][0] for p in predictions]
    assert len(set(indices)) == 4 and max(indices[:3]) < indices[3]  # 99: the OOV index


def test_missing_values_mean_the_same_in_every_signature(client):
    """float NaN and text "" are missing in serving_default instances and in tf.Examples
    alike, as is a feature left out of a tf.Example; an integer is missing only that way."""
    gaps = {**ROW, "fare": math.nan, "company": "", "payment_type": ""}
    body = json.dumps({"instances": [gaps]})  # NaN: not strict JSON, as TF Serving reads it
    (prediction,) = ok(client.post(f"{MODEL}:predict", content=body))["predictions"]
    expected = prediction["scores"]
    left_out = {key: value for key, value in gaps.items()
                if key not in ("fare", "company", "payment_type")}
    for example in (gaps, left_out):
        (result,) = ok(client.post(f"{MODEL}:classify", content=json.dumps({
            "signature_name": "classify", "examples": [example]})))["results"]
        np.testing.assert_allclose([score for _, score in result], expected, rtol=1e-5)

    # A missing integer: left out of the tf.Example. It is what Transform imputes for an
    # absent value (the OOV bucket here), not any hour's score, and it needs no sentinel.
    no_hour = {key: value for key, value in ROW.items() if key != "trip_start_hour"}
    (result,) = ok(client.post(f"{MODEL}:classify", json={
        "signature_name": "classify", "examples": [no_hour]}))["results"]
    scores = [score for _, score in result]
    assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    (unseen,) = ok(client.post(f"{MODEL}:classify", json={
        "signature_name": "classify",
        "examples": [{**ROW, "trip_start_hour": 99}]}))["results"]
    np.testing.assert_allclose(scores, [score for _, score in unseen], rtol=1e-5)
    (as_sent,) = ok(client.post(f"{MODEL}:classify", json={
        "signature_name": "classify", "examples": [example_json(ROW)]}))["results"]
    assert not np.allclose(scores, [score for _, score in as_sent], rtol=1e-4)
    # serving_default has no way to say it: every input is required, int64 has no NaN.
    assert "missing input(s): trip_start_hour" in error(
        client.post(f"{MODEL}:predict", json={"instances": [no_hour]}), 400)
    assert "is not of expected type: int64" in error(client.post(
        f"{MODEL}:predict", content=json.dumps({"instances": [
            {**ROW, "trip_start_hour": math.nan}]})), 400)


# --- classify / regress ----------------------------------------------------------------------

def test_classify_with_examples_and_context(client, server):
    context = {"payment_type": "Credit Card", "company": "Flash Cab"}
    rows = [{**row, **context} for row in ROWS]  # the trips the examples + context describe
    body = {"signature_name": "classify", "context": context,
            "examples": [{key: value for key, value in example_json(row).items()
                          if key not in context} for row in rows]}
    document = ok(client.post(f"{MODEL}:classify", json=body))
    assert list(document) == ["results"]
    results = document["results"]
    assert len(results) == len(rows)
    for result in results:
        assert [label for label, _ in result] == ["no_tip", "tip"]
        assert sum(score for _, score in result) == pytest.approx(1.0, abs=1e-5)
    expected = servable(server, 2).run("serving_default", arrays(rows))["scores"]
    np.testing.assert_allclose([[score for _, score in r] for r in results], expected,
                               rtol=1e-4)
    without_context = {**body, "context": {}}
    other = ok(client.post(f"{MODEL}:classify", json=without_context))["results"]
    assert not np.allclose([[s for _, s in r] for r in other],
                           [[s for _, s in r] for r in results], rtol=1e-3)


def test_classify_by_label(client):
    body = {"signature_name": "classify", "examples": [example_json(ROW)]}
    (result,) = ok(client.post(f"{MODEL}/labels/stable:classify", json=body))["results"]
    assert [label for label, _ in result] == ["no_tip", "tip"]


def test_classify_needs_a_classification_signature(client):
    message = error(client.post(f"{MODEL}:classify",
                                json={"examples": [example_json(ROW)]}), 400)
    assert "classification signature" in message and "tensorflow/serving/predict" in message


@pytest.mark.parametrize("signature", ["", "classify", "predict_examples"])
def test_regress_without_a_regression_signature_is_400(client, signature):
    body = {"examples": [example_json(ROW)]}
    if signature:
        body["signature_name"] = signature
    message = error(client.post(f"{MODEL}:regress", json=body), 400)
    assert "regression signature" in message
    assert "tensorflow/serving/regress" in message


def test_classify_body_errors(client):
    assert "'examples' is expected" in error(
        client.post(f"{MODEL}:classify", json={"signature_name": "classify"}), 400)
    assert "empty array" in error(client.post(
        f"{MODEL}:classify", json={"signature_name": "classify", "examples": []}), 400)
    assert "Unexpected element type in feature: fare" in error(client.post(
        f"{MODEL}:classify", json={"signature_name": "classify",
                                   "examples": [{"fare": [1.5, "x"]}]}), 400)
    # A feature of the wrong kind for the model's parsing spec: the model refuses it,
    # naming the feature and the type it expects.
    message = error(client.post(
        f"{MODEL}:classify", json={"signature_name": "classify",
                                   "examples": [{**example_json(ROW),
                                                 "trip_seconds": 600.5}]}), 400)
    assert "trip_seconds" in message and "Expected type: int64" in message
    message = error(client.post(
        f"{MODEL}:classify", json={"signature_name": "classify",
                                   "examples": [{**example_json(ROW),
                                                 "trip_start_hour": "19"}]}), 400)
    assert "Key: trip_start_hour" in message and "Expected type: int64" in message


# --- client errors ---------------------------------------------------------------------------

PARTIAL = {key: value for key, value in ROW.items() if key != "trip_miles"}


@pytest.mark.parametrize("method, path, content, status, expected", [
    ("POST", f"{MODEL}:predict", b'{"instances": [', 400, "JSON Parse error"),
    ("POST", f"{MODEL}:predict", b"", 400, "empty"),
    ("POST", f"{MODEL}:predict", b'["instances"]', 400, "Is not object"),
    ("POST", f"{MODEL}:predict", json.dumps({"instances": [ROW], "inputs": columns([ROW])}),
     400, "only one of 'inputs' or 'instances'"),
    ("POST", f"{MODEL}:predict", b'{"signature_name": "serving_default"}', 400,
     "Missing 'inputs' or 'instances' key"),
    ("POST", f"{MODEL}:predict", b'{"instances": []}', 400, "No values in 'instances'"),
    ("POST", f"{MODEL}:predict", json.dumps({"instances": [{**ROW, "fare": "twelve"}]}),
     400, 'JSON Value: "twelve" Type: String is not of expected type: float32'),
    ("POST", f"{MODEL}:predict", json.dumps({"instances": [{**ROW, "company": 5}]}),
     400, "Type: Number is not of expected type: string"),
    ("POST", f"{MODEL}:predict", json.dumps({"instances": [{**ROW, "trip_start_hour": "19"}]}),
     400, "Failed to process input: trip_start_hour of 'instances' list. Error: JSON Value: "
          '"19" Type: String is not of expected type: int64'),
    ("POST", f"{MODEL}:predict", json.dumps({"instances": [{**ROW, "trip_start_hour": 19.5}]}),
     400, "input: trip_start_hour of 'instances' list. Error: JSON Value: 19.5 Type: Number "
          "is not of expected type: int64"),
    ("POST", f"{MODEL}:predict", json.dumps({"inputs": {**columns([ROW]),
                                                        "trip_start_hour": ["19"]}}),
     400, "Failed to process input: trip_start_hour of 'inputs' object. Error: JSON Value: "
          '"19" Type: String is not of expected type: int64'),
    ("POST", f"{MODEL}:predict", json.dumps({"instances": [ROW, PARTIAL]}), 400,
     "missing input(s): trip_miles"),
    ("POST", f"{MODEL}:predict", json.dumps({"instances": [{**ROW, "tips": 1.0}]}), 400,
     "unknown input(s): tips"),
    ("POST", f"{MODEL}:predict", json.dumps({"inputs": columns([PARTIAL])}), 400,
     "Missing named input: trip_miles"),
    ("POST", f"{MODEL}:predict", json.dumps({"inputs": {**columns([ROW]), "tips": [1.0]}}),
     400, "Unknown named input(s): tips"),
    ("POST", f"{MODEL}:predict", json.dumps({"inputs": {**columns(ROWS[:2]),
                                                        "fare": [1.0]}}),
     400, "shape"),  # one column shorter than the others: the model refuses it
    ("POST", "/v1/models/nope:predict", json.dumps({"instances": [ROW]}), 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", f"{MODEL}/versions/3:predict", json.dumps({"instances": [ROW]}), 404,
     f"Specific({MODEL_NAME}, 3)"),
    ("POST", f"{MODEL}/versions/99:classify", json.dumps({"examples": [{"fare": 1.0}]}),
     404, "99"),
    ("POST", f"{MODEL}/labels/beta:predict", json.dumps({"instances": [ROW]}), 400,
     "Unrecognized servable version label: beta"),
    ("POST", f"{MODEL}:predict", json.dumps({"signature_name": "nope", "instances": [ROW]}),
     400, 'Serving signature key "nope" not found.'),
    ("POST", f"{MODEL}:classify", json.dumps({"signature_name": "nope",
                                              "examples": [{"fare": 1.0}]}),
     400, 'Serving signature key "nope" not found.'),
    ("POST", f"{MODEL}:predict", json.dumps({"signature_name": "predict_examples",
                                             "instances": [{"b64": "%%%not base64"}]}),
     400, "Unable to base64 decode"),
    ("POST", f"{MODEL}:predict", json.dumps({"signature_name": "predict_examples",
                                             "instances": [{"b64": "c2VyaWFs"}]}),
     400, "Could not parse example input"),
    ("POST", f"{MODEL}:predict", b'{"instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
     400, "JSON Parse error"),
    ("POST", f"{MODEL}:predict", json.dumps({"signature_name": "predict_examples",
                                             "inputs": nested("x", 200)}),
     400, "nested more than"),
    ("POST", f"{MODEL}:classify", json.dumps({"signature_name": "classify",
                                              "examples": [{"trip_seconds": -2 ** 70}]}),
     400, "Feature: trip_seconds has an element below the int64_t range"),
    ("POST", f"{MODEL}:explain", json.dumps({"instances": [ROW]}), 400, "Malformed request"),
    ("POST", f"{MODEL}/versions/latest:predict", json.dumps({"instances": [ROW]}), 400,
     "Malformed request"),
    ("GET", "/v1/modelz", None, 400, "Malformed request"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", f"{MODEL}/versions/1/labels/stable", None, 400, "Malformed request"),
    ("GET", f"{MODEL}:predict", None, 400, "Malformed request"),
    ("PUT", f"{MODEL}:predict", json.dumps({"instances": [ROW]}), 400, "Malformed request"),
    ("DELETE", f"{MODEL}:predict", None, 400, "Malformed request"),
    ("POST", MODEL, json.dumps({"instances": [ROW]}), 400, "Malformed request"),
    ("GET", "/", None, 404, "Not found"),
    ("GET", "/v2/models/chicago-taxi", None, 404, "Not found"),
    ("POST", f"/models/{MODEL_NAME}:predict", json.dumps({"instances": [ROW]}), 404,
     "Not found"),
    ("GET", METRICS_PATH + "/other", None, 404, "Not found"),
])
def test_client_errors(client, method, path, content, status, expected):
    response = client.request(method, path, content=content)
    assert response.status_code != 500
    assert expected in error(response, status)


def test_no_client_error_was_counted_as_a_server_fault(client):
    """After every kind of bad request above (and these), nothing was INTERNAL."""
    for response in (
            client.post(f"{MODEL}:predict", content=b"\xff\xfe\x00garbage"),
            client.post(f"{MODEL}:predict", json={"instances": [{**ROW, "fare": None}]}),
            client.post(f"{MODEL}:predict", json={"instances": [{**ROW, "fare": [[1.0]]}]}),
            client.post(f"{MODEL}:predict", json={"instances": [{**ROW, "fare": [1.0]}]}),
            client.post(f"{MODEL}:classify", json={"signature_name": "classify",
                                                   "examples": [{"fare": {"b64": "@"}}]})):
        assert error(response, 400)
    counted = samples(client.get(METRICS_PATH).text, ":tensorflow:serving:request_count")
    assert counted
    for sample in counted:
        assert sample.labels["status"] != "INTERNAL", sample


def test_predict_on_a_single_input_signature_takes_named_objects_too(client):
    serialized = b64(serialized_example(ROW))
    named = {"signature_name": "predict_examples", "instances": [{"examples": serialized}]}
    plain = {"signature_name": "predict_examples", "instances": [serialized]}
    assert ok(client.post(f"{MODEL}:predict", json=named)) == \
        ok(client.post(f"{MODEL}:predict", json=plain))


# --- prometheus ------------------------------------------------------------------------------

class Sample:
    def __init__(self, name: str, labels: dict, value: float) -> None:
        self.name, self.labels, self.value = name, labels, value

    def __repr__(self) -> str:
        return f"{self.name}{self.labels} {self.value}"


_SAMPLE = re.compile(r"^([^{\s]+)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str, name: str) -> list[Sample]:
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if line.startswith("#") or not match or match.group(1) != name:
            continue
        found.append(Sample(name, dict(_LABEL.findall(match.group(2) or "")),
                            float(match.group(3))))
    return found


def value(text: str, name: str, **labels) -> float:
    return sum(s.value for s in samples(text, name)
               if all(s.labels.get(k) == v for k, v in labels.items()))


def test_prometheus_counts_requests(client):
    before = client.get(METRICS_PATH)
    assert before.status_code == 200
    assert before.headers["content-type"].startswith("text/plain")
    count = ":tensorflow:serving:request_count"
    latency = ":tensorflow:serving:request_latency"
    # Labelled as TF Serving labels them: the counter by model and status, the latency by
    # model, API "Predict" and entrypoint "REST".
    predict = {"model_name": MODEL_NAME, "API": "Predict", "entrypoint": "REST"}
    ok_before = value(before.text, count, status="OK", model_name=MODEL_NAME)
    bad_before = value(before.text, count, status="INVALID_ARGUMENT", model_name=MODEL_NAME)
    timed_before = value(before.text, f"{latency}_count", **predict)
    for _ in range(3):
        ok(client.post(f"{MODEL}:predict", json={"instances": [ROW]}))
    error(client.post(f"{MODEL}:predict", json={"instances": [{**ROW, "fare": "x"}]}), 400)

    after = client.get(METRICS_PATH).text
    assert value(after, count, status="OK", model_name=MODEL_NAME) == ok_before + 3
    assert value(after, count, status="INVALID_ARGUMENT", model_name=MODEL_NAME) == \
        bad_before + 1
    assert value(after, f"{latency}_count", **predict) >= timed_before + 3
    assert value(after, f"{latency}_bucket", le="+Inf", **predict) == \
        value(after, f"{latency}_count", **predict)
    assert value(after, f"{latency}_sum", **predict) > 0
    buckets = [s for s in samples(after, f"{latency}_bucket")
               if all(s.labels.get(k) == v for k, v in predict.items())]
    assert len(buckets) > 5  # a histogram, microseconds up to seconds


def test_prometheus_lists_the_loaded_versions(client):
    text = client.get(METRICS_PATH).text
    states = {(s.labels["version"], s.labels["state"]): s.value
              for s in samples(text, ":tensorflow:serving:model_version_state")
              if s.labels.get("model_name") == MODEL_NAME}
    assert states == {("1", "AVAILABLE"): 1.0, ("2", "AVAILABLE"): 1.0}


def test_no_metrics_path_without_a_monitoring_config(small_server):
    response = httpx.get(small_server.rest_url + METRICS_PATH, timeout=30)
    assert error(response, 404)


# --- body size -------------------------------------------------------------------------------

def test_body_over_the_limit_is_refused_and_the_server_keeps_serving(small_server):
    url = f"{small_server.rest_url}{MODEL}:predict"
    small = json.dumps({"instances": [ROW]})
    large = json.dumps({"instances": ROWS * 4})
    assert len(small) < 1000 < len(large)
    with httpx.Client(timeout=30) as http:
        refused = http.post(url, content=large)
        assert refused.status_code == 413, refused.status_code
        assert "larger than the server's limit of 1000 bytes" in refused.json()["error"]
        answered = ok(http.post(url, content=small))  # same connection, still served
    assert len(answered["predictions"]) == 1
    again = ok(httpx.post(url, content=small, timeout=30))
    assert again == answered


# --- protection on a network (the HTTP layer's own tests are in test_http.py) --------------

def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_read_timeout_and_connection_bound_options_reach_the_rest_port(small_server):
    port = small_server.server.rest_port
    http = small_server.server._http
    wait_for(lambda: http.open_connections == 0, "earlier clients to be gone", 10)
    half = socket.create_connection(("127.0.0.1", port), timeout=10)
    started = time.monotonic()
    half.sendall(f"GET {MODEL} HTTP/1.1\r\nHo".encode())
    answer = _read_until_closed(half)
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 1.8 <= time.monotonic() - started < 6
    half.close()
    wait_for(lambda: http.open_connections == 0, "the timed-out connection to be counted", 10)

    admitted = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)]
    wait_for(lambda: http.open_connections == 8, "eight connections to be admitted", 10)
    # at the bound of 8 the newcomer takes the place of the one waiting longest for a head
    excess = socket.create_connection(("127.0.0.1", port), timeout=10)
    excess.sendall(f"GET {MODEL} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    answered = _read_until_closed(excess)
    assert answered.startswith(b"HTTP/1.1 200 "), answered
    assert _read_until_closed(admitted[0]) == b""  # closed, silently, to make room
    assert http.open_connections <= 8
    for sock in (*admitted, excess):
        sock.close()
    wait_for(lambda: http.open_connections == 0, "the closes to be counted", 10)
    assert ok(httpx.get(small_server.rest_url + MODEL, timeout=30))  # once they are gone
