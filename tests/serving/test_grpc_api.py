"""TF Serving's gRPC API on the embedded server, through the official client stubs.

The ``tensorflow_serving.apis`` stubs (what every TF Serving client uses) talk to a server
on loopback holding versions 1 and 2 of the pipeline's model (``specific`` policy, labels
``stable`` -> 1 and ``canary`` -> 2); status codes are TF Serving's: NOT_FOUND for an
unknown model or version, INVALID_ARGUMENT for a bad request or label, FAILED_PRECONDITION
for an unknown signature.
"""
from __future__ import annotations

import re

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

from serving import config_files
from tests.conftest import REPO
from tests.serving.conftest import (INTS, MODEL_NAME, ROWS, RunningServer, add_version, arrays,
                                   csv_row, dtype_of, example_proto, servable)

pytestmark = pytest.mark.slow

TIMEOUT = 30
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.END


def predict_request(rows=ROWS, signature: str = "", version: int | None = None,
                    label: str = "", name: str = MODEL_NAME) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    for key, array in arrays(rows).items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(array, dtype=dtype_of(key)))
    return request


example = example_proto


def rpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=TIMEOUT)
    return caught.value


def models_config(base, *, versions=(1, 2), labels=None, extra=()):
    config = config_files.ModelServerConfig()
    model = config.model_config_list.config.add(name=MODEL_NAME, base_path=str(base),
                                                model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend(versions)
    for label, version in (labels or {}).items():
        model.version_labels[label] = version
    for name, path in extra:
        config.model_config_list.config.add(name=name, base_path=str(path),
                                            model_platform="tensorflow")
    return config


# --- server ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(pipeline_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("grpc_api")
    base = root / MODEL_NAME
    base.mkdir()
    for version in (1, 2):
        add_version(base, pipeline_model, version)
    config_files.write_model_server_config(
        models_config(base, labels={"stable": 1, "canary": 2}), root / "models.config")
    running = RunningServer(model_config_file=str(root / "models.config"),
                            file_system_poll_wait_seconds=0)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.grpc_target) as open_channel:
        yield open_channel


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


# --- Predict -----------------------------------------------------------------------------

def test_predict(predictions, server):
    response = predictions.Predict(predict_request(), timeout=TIMEOUT)
    assert response.model_spec.name == MODEL_NAME
    assert response.model_spec.version.value == 2  # the latest
    assert response.model_spec.signature_name == "serving_default"
    assert set(response.outputs) == {"classes", "scores"}
    classes = tf.make_ndarray(response.outputs["classes"])
    scores = tf.make_ndarray(response.outputs["scores"])
    assert response.outputs["scores"].dtype == types_pb2.DT_FLOAT
    assert classes.tolist() == [[b"no_tip", b"tip"]] * len(ROWS)
    assert scores.shape == (len(ROWS), 2)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    expected = servable(server, 2).run("serving_default", arrays(ROWS))["scores"]
    np.testing.assert_allclose(scores, expected, rtol=1e-5)


@pytest.mark.parametrize("spec, version", [({"version": 1}, 1), ({"label": "stable"}, 1),
                                           ({"label": "canary"}, 2), ({"version": 2}, 2)])
def test_predict_by_version_or_label(predictions, spec, version):
    response = predictions.Predict(predict_request(**spec), timeout=TIMEOUT)
    assert response.model_spec.version.value == version


def test_predict_output_filter(predictions):
    request = predict_request(signature="serving_default")
    request.output_filter.append("scores")
    response = predictions.Predict(request, timeout=TIMEOUT)
    assert list(response.outputs) == ["scores"]
    assert response.model_spec.signature_name == "serving_default"


def test_predict_missing_values(predictions, server):
    gaps = [{**ROWS[0], "fare": float("nan"), "company": "", "payment_type": ""}]
    response = predictions.Predict(predict_request(gaps), timeout=TIMEOUT)
    scores = tf.make_ndarray(response.outputs["scores"])
    assert np.isfinite(scores).all()
    np.testing.assert_allclose(
        scores, servable(server, 2).run("serving_default", arrays(gaps))["scores"], rtol=1e-5)


def test_predict_examples_signature(predictions):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = "predict_examples"
    request.inputs["examples"].CopyFrom(tf.make_tensor_proto(
        [example(row).SerializeToString() for row in ROWS], dtype=tf.string))
    response = predictions.Predict(request, timeout=TIMEOUT)
    assert response.model_spec.signature_name == "predict_examples"
    tip = tf.make_ndarray(response.outputs["outputs"])[:, 0]
    scores = tf.make_ndarray(predictions.Predict(predict_request(), timeout=TIMEOUT)
                             .outputs["scores"])
    np.testing.assert_allclose(tip, scores[:, 1], rtol=1e-4)


def test_one_raw_csv_row_gets_the_same_scores_over_grpc_and_rest(predictions, server):
    """A trip as the data set holds it: Predict (int64 / float / string tensors) and
    Classify (the same values in a tf.Example) agree with each other and with REST."""
    import httpx

    row = csv_row(REPO / "data" / "chicago_taxi" / "span-2" / "trips.csv", 1)
    assert len(row) == 14 and isinstance(row["pickup_community_area"], int)
    predicted = tf.make_ndarray(predictions.Predict(predict_request([row]), timeout=TIMEOUT)
                                .outputs["scores"])
    request = classify_request()
    request.input.example_list.examples.append(example(row))
    classified = scores(predictions.Classify(request, timeout=TIMEOUT))
    np.testing.assert_allclose(classified, predicted, rtol=1e-5)
    rest = httpx.post(f"{server.rest_url}/v1/models/{MODEL_NAME}:predict",
                      json={"instances": [row]}, timeout=TIMEOUT).json()
    np.testing.assert_allclose([rest["predictions"][0]["scores"]], predicted, rtol=1e-5)


# --- Classify / Regress --------------------------------------------------------------------

def classify_request(signature: str = "classify") -> classification_pb2.ClassificationRequest:
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = signature
    return request


def labelled(response) -> list[list[tuple[str, float]]]:
    return [[(c.label, c.score) for c in entry.classes]
            for entry in response.result.classifications]


def scores(response) -> np.ndarray:
    return np.array([[score for _, score in result] for result in labelled(response)])


def test_classify_example_list(predictions, server):
    request = classify_request()
    request.input.example_list.examples.extend(example(row) for row in ROWS)
    response = predictions.Classify(request, timeout=TIMEOUT)
    assert response.model_spec.name == MODEL_NAME
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "classify"
    results = labelled(response)
    assert [[label for label, _ in result] for result in results] == \
        [["no_tip", "tip"]] * len(ROWS)
    expected = servable(server, 2).run("serving_default", arrays(ROWS))["scores"]
    np.testing.assert_allclose([[score for _, score in r] for r in results], expected,
                               rtol=1e-4)


def test_classify_example_list_with_context(predictions):
    shared = ("payment_type", "company", "trip_start_month")
    rows = [{**row, "payment_type": "Credit Card", "company": "Flash Cab",
             "trip_start_month": 11} for row in ROWS]
    request = classify_request()
    with_context = request.input.example_list_with_context
    with_context.context.CopyFrom(example({key: rows[0][key] for key in shared}))
    with_context.examples.extend(example(row, skip=shared) for row in rows)
    by_context = predictions.Classify(request, timeout=TIMEOUT)
    assert [[label for label, _ in r] for r in labelled(by_context)] == \
        [["no_tip", "tip"]] * len(rows)

    whole = classify_request()
    whole.input.example_list.examples.extend(example(row) for row in rows)
    np.testing.assert_allclose(scores(predictions.Classify(whole, timeout=TIMEOUT)),
                               scores(by_context), rtol=1e-5)
    alone = classify_request()  # without the context the answer differs
    alone.input.example_list.examples.extend(example(row, skip=shared) for row in rows)
    assert not np.allclose(scores(predictions.Classify(alone, timeout=TIMEOUT)),
                           scores(by_context), rtol=1e-3)


def test_classify_takes_a_missing_integer_left_out(predictions):
    """A missing integer goes as a tf.Example without it (Predict has no way to say it):
    Transform's absent value, the OOV bucket for a category, as an unseen hour gets."""
    row = ROWS[0]
    left_out, unseen = classify_request(), classify_request()
    left_out.input.example_list.examples.append(example(row, skip=("trip_start_hour",)))
    unseen.input.example_list.examples.append(example({**row, "trip_start_hour": 99}))
    np.testing.assert_allclose(scores(predictions.Classify(left_out, timeout=TIMEOUT)),
                               scores(predictions.Classify(unseen, timeout=TIMEOUT)), rtol=1e-5)
    error = rpc_error(predictions.Predict, without(predict_request([row]), "trip_start_hour"))
    assert "Missing but required: {trip_start_hour}" in error.details()


def test_classify_errors(predictions):
    error = rpc_error(predictions.Classify, classify_request())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # no examples
    request = classify_request(signature="")  # serving_default: a predict signature
    request.input.example_list.examples.append(example(ROWS[0]))
    error = rpc_error(predictions.Classify, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "classification signature" in error.details()
    request = classify_request(signature="nope")
    request.input.example_list.examples.append(example(ROWS[0]))
    assert rpc_error(predictions.Classify, request).code() == \
        grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize("signature", ["", "classify"])
def test_regress_without_a_regression_signature(predictions, signature):
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = signature
    request.input.example_list.examples.append(example(ROWS[0]))
    error = rpc_error(predictions.Regress, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "regression signature" in error.details()


# --- GetModelMetadata ----------------------------------------------------------------------

def metadata_request(version: int | None = None, fields=("signature_def",)):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = MODEL_NAME
    if version is not None:
        request.model_spec.version.value = version
    request.metadata_field.extend(fields)
    return request


def test_get_model_metadata(predictions):
    response = predictions.GetModelMetadata(metadata_request(), timeout=TIMEOUT)
    assert response.model_spec.name == MODEL_NAME
    assert response.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    defs = signatures.signature_def
    assert {"serving_default", "classify", "predict_examples", "transform_features"} <= \
        set(defs)
    default = defs["serving_default"]
    assert default.method_name == "tensorflow/serving/predict"
    assert len(default.inputs) == 14
    assert default.inputs["fare"].dtype == types_pb2.DT_FLOAT
    assert default.inputs["payment_type"].dtype == types_pb2.DT_STRING
    assert {default.inputs[name].dtype for name in INTS} == {types_pb2.DT_INT64}
    assert [d.size for d in default.outputs["scores"].tensor_shape.dim] == [-1, 2]
    assert defs["classify"].method_name == "tensorflow/serving/classify"


def test_get_model_metadata_of_a_version(predictions):
    response = predictions.GetModelMetadata(metadata_request(version=1), timeout=TIMEOUT)
    assert response.model_spec.version.value == 1


@pytest.mark.parametrize("fields", [("signature_def", "graph_def"), ("nope",), ()])
def test_get_model_metadata_needs_supported_fields(predictions, fields):
    error = rpc_error(predictions.GetModelMetadata, metadata_request(fields=fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "metadata_field" in error.details() or "not supported" in error.details()


# --- GetModelStatus -------------------------------------------------------------------------

def status_request(name=MODEL_NAME, version=None, label=""):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = name
    if version is not None:
        request.model_spec.version.value = version
    if label:
        request.model_spec.version_label = label
    return request


def states(response) -> list[tuple[int, int]]:
    return [(s.version, s.state) for s in response.model_version_status]


def test_get_model_status_all_versions(models):
    response = models.GetModelStatus(status_request(), timeout=TIMEOUT)
    assert states(response) == [(2, AVAILABLE), (1, AVAILABLE)]
    for status in response.model_version_status:
        assert status.status.error_code == 0 and status.status.error_message == ""


def test_get_model_status_one_version(models):
    assert states(models.GetModelStatus(status_request(version=1), timeout=TIMEOUT)) == \
        [(1, AVAILABLE)]
    assert states(models.GetModelStatus(status_request(label="canary"), timeout=TIMEOUT)) \
        == [(2, AVAILABLE)]


def test_get_model_status_errors(models):
    error = rpc_error(models.GetModelStatus, status_request(name="nope"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error.details() == "Could not find any versions of model nope"
    assert rpc_error(models.GetModelStatus, status_request(version=5)).code() == \
        grpc.StatusCode.NOT_FOUND
    assert rpc_error(models.GetModelStatus, status_request(label="beta")).code() == \
        grpc.StatusCode.INVALID_ARGUMENT


# --- status codes ----------------------------------------------------------------------------

def without(request: predict_pb2.PredictRequest, key: str) -> predict_pb2.PredictRequest:
    del request.inputs[key]
    return request


def retyped(request: predict_pb2.PredictRequest, key: str, dtype) -> predict_pb2.PredictRequest:
    value = "19" if dtype == tf.string else 1.0
    request.inputs[key].CopyFrom(tf.make_tensor_proto([value] * len(ROWS), dtype=dtype))
    return request


def raw_tensor(request: predict_pb2.PredictRequest, key: str, dtype: int,
               dims: tuple[int, ...] = (len(ROWS),)) -> predict_pb2.PredictRequest:
    """An input as a hand-made TensorProto, as a buggy client could send it."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    for size in dims:
        proto.tensor_shape.dim.add(size=size)
    request.inputs[key].CopyFrom(proto)
    return request


def filtered(request: predict_pb2.PredictRequest, alias: str) -> predict_pb2.PredictRequest:
    request.output_filter.append(alias)
    return request


def extra(request: predict_pb2.PredictRequest) -> predict_pb2.PredictRequest:
    request.inputs["tips"].CopyFrom(tf.make_tensor_proto([1.0] * len(ROWS)))
    return request


@pytest.mark.parametrize("request_, code, expected", [
    (predict_request(name="nope"), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    (predict_request(version=3), grpc.StatusCode.NOT_FOUND,
     f"Servable not found for request: Specific({MODEL_NAME}, 3)"),
    (predict_request(label="beta"), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: beta"),
    (predict_request(name=""), grpc.StatusCode.INVALID_ARGUMENT, "model name"),
    (without(predict_request(), "trip_miles"), grpc.StatusCode.INVALID_ARGUMENT,
     "Missing but required: {trip_miles}"),
    (extra(predict_request()), grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: {tips}"),
    (retyped(predict_request(), "fare", tf.float64), grpc.StatusCode.INVALID_ARGUMENT,
     r"Expects arg\[\d+\] to be float(32)? but (double|float64) is provided"),
    (retyped(predict_request(), "company", tf.float32), grpc.StatusCode.INVALID_ARGUMENT,
     r"Expects arg\[\d+\] to be string but float(32)? is provided"),
    (retyped(predict_request(), "trip_start_hour", tf.string),
     grpc.StatusCode.INVALID_ARGUMENT,
     r"Expects arg\[\d+\] to be int64 but string is provided \(input 'trip_start_hour'\)"),
    (raw_tensor(predict_request(), "fare", types_pb2.DT_INVALID),
     grpc.StatusCode.INVALID_ARGUMENT, "to be float"),
    (raw_tensor(predict_request(), "fare", 999), grpc.StatusCode.INVALID_ARGUMENT,
     "unknown DataType 999"),
    (raw_tensor(predict_request(), "fare", types_pb2.DT_FLOAT, dims=(-5,)),
     grpc.StatusCode.INVALID_ARGUMENT, "malformed TensorProto"),
    (filtered(predict_request(), "probabilities"), grpc.StatusCode.INVALID_ARGUMENT,
     "output tensor alias not found in signature: probabilities"),
    (predict_request(signature="nope"), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
], ids=["unknown-model", "unknown-version", "unknown-label", "no-model-name", "missing-input",
        "unknown-input", "wrong-dtype", "float-for-string", "string-for-int64", "invalid-dtype",
        "unknown-dtype-enum", "negative-dimension", "unknown-output-filter",
        "unknown-signature"])
def test_predict_status_codes(predictions, request_, code, expected):
    error = rpc_error(predictions.Predict, request_)
    assert error.code() == code
    assert expected in error.details() or re.search(expected, error.details()), \
        error.details()


def test_metadata_status_codes(predictions):
    request = metadata_request()
    request.model_spec.name = "nope"
    assert rpc_error(predictions.GetModelMetadata, request).code() == \
        grpc.StatusCode.NOT_FOUND
    assert rpc_error(predictions.GetModelMetadata, metadata_request(version=9)).code() == \
        grpc.StatusCode.NOT_FOUND


# --- metrics ---------------------------------------------------------------------------------

def test_grpc_requests_are_counted_as_tf_serving_counts_them(predictions, server):
    # TF Serving labels the counter by model and status; latency by API and entrypoint.
    count = re.compile(r'^:tensorflow:serving:request_count\{(?=[^}]*model_name="chicago-taxi")'
                       r'(?=[^}]*status="(\w+)")[^}]*\}\s+(\S+)$', re.MULTILINE)
    timed = re.compile(r'^:tensorflow:serving:request_latency_count\{(?=[^}]*API="Predict")'
                       r'(?=[^}]*entrypoint="GRPC")(?=[^}]*model_name="chicago-taxi")'
                       r'[^}]*\}\s+(\S+)$', re.MULTILINE)

    def counts() -> tuple[dict[str, float], float]:
        text = server.server.metrics.exposition().decode()
        return ({status: float(number) for status, number in count.findall(text)},
                sum(float(number) for number in timed.findall(text)))

    # Each call is read back as soon as its answer arrives: the server counts a call before
    # answering it, so no read may miss the call just answered.
    for _ in range(20):
        before, timed_before = counts()
        predictions.Predict(predict_request(), timeout=TIMEOUT)
        rpc_error(predictions.Predict, predict_request(signature="nope"))
        after, timed_after = counts()
        assert after.get("OK", 0) == before.get("OK", 0) + 1
        assert after.get("FAILED_PRECONDITION", 0) == before.get("FAILED_PRECONDITION", 0) + 1
        assert timed_after == timed_before + 2


# --- HandleReloadConfigRequest -------------------------------------------------------------

def test_reload_config(pipeline_model, tmp_path, start_server):
    base, other = tmp_path / MODEL_NAME, tmp_path / "other"
    for folder in (base, other):
        folder.mkdir()
        add_version(folder, pipeline_model, 1)
    add_version(base, pipeline_model, 2)
    config_files.write_model_server_config(
        models_config(base, extra=[("other", other)]), tmp_path / "models.config")
    running = start_server(model_config_file=str(tmp_path / "models.config"),
                           file_system_poll_wait_seconds=0, enable_model_warmup=False)
    with grpc.insecure_channel(running.grpc_target) as open_channel:
        models = model_service_pb2_grpc.ModelServiceStub(open_channel)
        predictions = prediction_service_pb2_grpc.PredictionServiceStub(open_channel)
        assert states(models.GetModelStatus(status_request(name="other"), timeout=TIMEOUT)) \
            == [(1, AVAILABLE)]
        assert predictions.Predict(predict_request(), timeout=TIMEOUT) \
            .model_spec.version.value == 2

        # A config that cannot be served is refused; the running one stays.
        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(models_config("relative/path", versions=(1,)))
        response = models.HandleReloadConfigRequest(request, timeout=TIMEOUT)
        assert response.status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert MODEL_NAME in response.status.error_message
        assert "base_path" in response.status.error_message
        assert states(models.GetModelStatus(status_request(), timeout=TIMEOUT)) == \
            [(2, AVAILABLE), (1, AVAILABLE)]

        # Drop "other", and pin the model to version 1 with a label.
        request = model_management_pb2.ReloadConfigRequest()
        request.config.CopyFrom(models_config(base, versions=(1,), labels={"stable": 1}))
        response = models.HandleReloadConfigRequest(request, timeout=TIMEOUT)
        assert response.status.error_code == 0, response.status.error_message

        assert states(models.GetModelStatus(status_request(), timeout=TIMEOUT)) == \
            [(2, END), (1, AVAILABLE)]
        answered = predictions.Predict(predict_request(), timeout=TIMEOUT)
        assert answered.model_spec.version.value == 1
        assert predictions.Predict(predict_request(label="stable"), timeout=TIMEOUT) \
            .model_spec.version.value == 1
        assert rpc_error(predictions.Predict, predict_request(version=2)).code() == \
            grpc.StatusCode.NOT_FOUND
        assert rpc_error(predictions.Predict, predict_request(name="other")).code() == \
            grpc.StatusCode.NOT_FOUND
        try:
            dropped = models.GetModelStatus(status_request(name="other"), timeout=TIMEOUT)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
        else:  # still listed is fine, as long as nothing of it is served
            assert {state for _, state in states(dropped)} == {END}


def test_multi_inference_is_unimplemented(predictions):
    from tensorflow_serving.apis import inference_pb2

    request = inference_pb2.MultiInferenceRequest()
    assert rpc_error(predictions.MultiInference, request).code() == \
        grpc.StatusCode.UNIMPLEMENTED
