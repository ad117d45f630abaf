"""The data plane with stand-in models over a real repository: which version answers,
what a request must send, TF Serving's errors; no server, no pipeline run, no SavedModel."""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from serving.batching import Batcher
from serving.config_files import BatchingParameters, single_model_config
from serving.dataplane import DataPlane, ModelSpec
from serving.errors import Code, ServingError
from serving.repository import ModelRepository
from tests.serving.stand_ins import StandInServable, signature

CLASSIFY = "tensorflow/serving/classify"


def examples_model(name: str, version: int, path: str) -> StandInServable:
    """Versions with a predict and a classify signature (2 classes per example)."""
    return StandInServable(name, version, path, signatures={
        "serving_default": signature("serving_default"),
        "classify": signature("classify", CLASSIFY, {"inputs": tf.string},
                              {"classes": tf.string, "scores": tf.float32}),
        "not_classify": signature("not_classify", inputs={"inputs": tf.string})})


@pytest.fixture
def plane(tmp_path: Path):
    def build(batching: bool = False, labels: dict[str, int] | None = None) -> DataPlane:
        for version in (1, 2):
            (tmp_path / "m" / str(version)).mkdir(parents=True, exist_ok=True)
        repository = ModelRepository(examples_model)
        config = single_model_config("m", str(tmp_path / "m"))
        policy = config.model_config_list.config[0]
        policy.model_version_policy.all.SetInParent()
        for label, version in (labels or {}).items():
            policy.version_labels[label] = version
        repository.apply_config(config)
        repository.poll()
        executor = ThreadPoolExecutor(2)
        batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=1000),
                          lambda s, name, inputs: s.run(name, inputs), executor) \
            if batching else None
        return DataPlane(repository, executor, batcher)
    return build


def predict(plane: DataPlane, spec: ModelSpec, **inputs):
    arrays = {k: np.asarray(v, np.float32) for k, v in inputs.items()}
    return asyncio.run(plane.predict(spec, lambda signature: arrays))


def error_of(call) -> ServingError:
    with pytest.raises(ServingError) as caught:
        call()
    return caught.value


@pytest.mark.parametrize("batching", [False, True], ids=["direct", "batched"])
def test_the_newest_version_answers_unless_a_version_or_label_is_named(plane, batching):
    data_plane = plane(batching=batching, labels={"stable": 1})
    newest = predict(data_plane, ModelSpec("m"), x=[1.0])
    assert (newest.servable.version, newest.outputs["y"].tolist()) == (2, [4.0])
    assert predict(data_plane, ModelSpec("m", version=1), x=[1.0]).outputs["y"].tolist() == [3.0]
    labelled = predict(data_plane, ModelSpec("m", label="stable"), x=[1.0])
    assert labelled.model_spec().version.value == 1
    assert labelled.model_spec().signature_name == "serving_default"


def test_unknown_models_versions_and_labels_get_tf_serving_s_errors(plane):
    data_plane = plane()
    cases = {ModelSpec(""): (Code.INVALID_ARGUMENT, "Missing model name in request."),
             ModelSpec("x"): (Code.NOT_FOUND, "Servable not found for request: Latest(x)"),
             ModelSpec("m", version=9): (Code.NOT_FOUND,
                                         "Servable not found for request: Specific(m, 9)"),
             ModelSpec("m", label="canary"): (Code.INVALID_ARGUMENT,
                                              "Unrecognized servable version label: canary")}
    for spec, (code, message) in cases.items():
        error = error_of(lambda spec=spec: predict(data_plane, spec, x=[1.0]))
        assert (error.code, error.message) == (code, message), spec


def test_inputs_must_be_exactly_the_signature_s(plane):
    error = error_of(lambda: predict(plane(), ModelSpec("m"), x=[1.0], z=[2.0]))
    assert error.code == Code.INVALID_ARGUMENT
    assert error.message == ("input size does not match signature: 2!=1 len({x,z}) != "
                             "len({x}). Sent extra: {z}. Missing but required: {}.")


def test_an_unknown_output_filter_names_the_outputs_there_are(plane):
    data_plane = plane()
    error = error_of(lambda: asyncio.run(data_plane.predict(
        ModelSpec("m"), lambda s: {"x": np.ones(1, np.float32)}, ("scores",))))
    assert error.message == ("output tensor alias not found in signature: scores Outputs "
                             "expected to be in the set {y}.")


def test_classify_needs_a_classify_signature_and_gets_the_examples_as_one_batch(plane):
    data_plane = plane()
    wrong = error_of(lambda: asyncio.run(data_plane.classify(
        ModelSpec("m", signature_name="not_classify"), [b"e"])))
    assert wrong.message == ("Expected classification signature method_name to be "
                             "tensorflow/serving/classify. Was: tensorflow/serving/predict")
    servable = data_plane.servable(ModelSpec("m"))
    servable._outputs = lambda inputs: {  # pylint: disable=protected-access
        "classes": np.array([[b"a", b"b"]] * len(inputs["inputs"]), dtype=object),
        "scores": np.array([[0.25, 0.75]] * len(inputs["inputs"]), np.float32)}
    result = asyncio.run(data_plane.classify(ModelSpec("m", signature_name="classify"),
                                             [b"one", b"two"]))
    assert servable.calls[-1]["inputs"].tolist() == [b"one", b"two"]
    assert result.outputs["scores"].shape == (2, 2)


def test_status_lists_every_version_newest_first(plane):
    response = plane().status(ModelSpec("m"))
    assert [(s.version, s.state) for s in response.model_version_status] == [(2, 30), (1, 30)]
    error = error_of(lambda: plane().status(ModelSpec("m", version=7)))
    assert (error.code, error.message) == (Code.NOT_FOUND, "Could not find version 7 of model m")
