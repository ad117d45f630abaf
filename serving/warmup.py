"""Warming a version before it serves, so its first real request is not the slow one.

TF Serving replays ``assets.extra/tf_serving_warmup_requests`` (a TFRecord file of
``PredictionLog``s) when a version loads; the same file is honoured here, and a failing
warm-up request fails the load as it does there. Without the file, ``serving_default`` is
called once on a one-row batch of empty values (NaN, 0 or ""): a session's first call
prepares the graph (~0.5 s), and that one signature answers most traffic, so the version
becomes AVAILABLE sooner than if every signature were warmed. A model that refuses such
values is simply not warmed that way.
"""
from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving import servable as servable_lib
from serving.dataplane import check_inputs, example_batch
from serving.protocol import examples, tensors

log = logging.getLogger("serving.warmup")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's limit


def warm_up(servable: servable_lib.Servable) -> int:
    """Warms ``servable`` and returns how many requests were replayed or synthesised.

    Only a replayed request can fail (a synthetic one the model refuses is skipped); as in
    TF Serving, the load then fails and the status API shows why.

    Raises:
        ServingError: a warm-up record names a signature the version lacks
            (FAILED_PRECONDITION), its inputs do not fit the signature, or the model
            refuses them (INVALID_ARGUMENT and TensorFlow's other codes).
        ValueError: a record is not a predict, classify or regress log.
        tensorflow.errors.OpError: the warm-up file is not a readable TFRecord file.
    """
    path = os.path.join(servable.path, WARMUP_FILE)
    if tf.io.gfile.exists(path):
        return _replay(servable, path)
    return _synthetic(servable)


def _replay(servable: servable_lib.Servable, path: str) -> int:
    count = 0
    for record in tf.compat.v1.io.tf_record_iterator(path):
        if count >= MAX_WARMUP_RECORDS:
            break
        entry = prediction_log_pb2.PredictionLog.FromString(record)
        kind = entry.WhichOneof("log_type")
        if kind == "predict_log":
            request = entry.predict_log.request
            signature = servable.signature(request.model_spec.signature_name)
            inputs = tensors.inputs_from_protos(signature, request.inputs)
            check_inputs(signature, inputs)
            servable.run(signature.name, inputs)
        elif kind in ("classify_log", "regress_log"):
            request = getattr(entry, kind).request
            signature = servable.signature(request.model_spec.signature_name)
            (name,) = signature.inputs
            servable.run(signature.name,
                         {name: example_batch(examples.from_input(request.input))})
        else:
            raise ValueError(f"unsupported warm-up record type {kind!r} in {path}")
        count += 1
    return count


def _synthetic(servable: servable_lib.Servable) -> int:
    signature = servable.signatures.get(servable_lib.DEFAULT_SIGNATURE)
    if signature is None:
        return 0
    inputs = {}
    for name, spec in signature.inputs.items():
        if spec.shape is None or any(d is None for d in spec.shape[1:]):
            return 0  # no one-row batch can be made up for it
        if signature.method_name == servable_lib.PREDICT_METHOD:
            fill = b"" if spec.numpy_dtype.kind == "O" else 0
        else:
            fill = tf.train.Example().SerializeToString()
        inputs[name] = np.full((1,) + tuple(spec.shape[1:]), fill, dtype=spec.numpy_dtype)
    try:
        servable.run(signature.name, inputs)
    except Exception as err:  # the model refuses empty values: not warmed this way
        log.debug("synthetic warm-up of %s failed: %s", signature.name, err)
        return 0
    return 1
