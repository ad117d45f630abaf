"""Warm-up: the pipeline's model carries TF Serving's warm-up file, the server replays it
before a version answers, and a warm-up request that fails fails the load (as in TF
Serving), leaving the serving version in place."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from serving import warmup
from serving.errors import ServingError
from serving.repository import ModelRepository, State
from serving.config_files import single_model_config
from serving.servable import Servable
from serving.server import load_servable

pytestmark = pytest.mark.slow


def test_pipeline_model_carries_a_warmup_request_that_replays(pipeline_model: Path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    assert (pipeline_model / warmup.WARMUP_FILE).is_file()
    servable = Servable("m", 1, str(pipeline_model))
    assert warmup.warm_up(servable) == 1
    # One serving_default request in the signature's own dtypes (int64 for the integer
    # columns, which have no "missing" value: 0 there; NaN and "" elsewhere).
    (record,) = list(tf.compat.v1.io.tf_record_iterator(
        str(pipeline_model / warmup.WARMUP_FILE)))
    request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
    signature = servable.signature("serving_default")
    assert {name: tensor.dtype for name, tensor in request.inputs.items()} == \
        {name: spec.dtype.as_datatype_enum for name, spec in signature.inputs.items()}
    assert tf.make_ndarray(request.inputs["trip_start_hour"]).tolist() == [0]
    assert tf.make_ndarray(request.inputs["company"]).tolist() == [b""]


def test_a_failing_warmup_request_fails_the_load(tmp_path: Path, pipeline_model: Path):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    base = tmp_path / "m"
    shutil.copytree(pipeline_model, base / "1")
    repository = ModelRepository(load_servable(warmup=True))
    repository.apply_config(single_model_config("m", str(base)))
    repository.poll()
    assert repository.resolve("m").version == 1

    staging = tmp_path / "staging"
    shutil.copytree(pipeline_model, staging)
    record = prediction_log_pb2.PredictionLog()
    record.predict_log.request.inputs["no_such_input"].CopyFrom(tf.make_tensor_proto([1.0]))
    with tf.io.TFRecordWriter(str(staging / warmup.WARMUP_FILE)) as writer:
        writer.write(record.SerializeToString())
    with pytest.raises(ServingError, match="Sent extra: {no_such_input}"):
        warmup.warm_up(Servable("m", 2, str(staging)))

    staging.rename(base / "2")
    repository.poll()
    status = {s.version: s for s in repository.status("m")}
    assert status[2].state is State.END and "no_such_input" in status[2].error_message
    assert status[1].state is State.AVAILABLE
    assert repository.resolve("m").version == 1
