"""TensorProto <-> numpy for the gRPC API, checked against the signature's dtypes."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from serving.errors import invalid_argument
from serving.servable import Signature


def inputs_from_protos(signature: Signature,
                       protos: Mapping[str, tensor_pb2.TensorProto]) -> dict[str, np.ndarray]:
    arrays = {}
    for index, (name, proto) in enumerate(sorted(protos.items())):
        spec = signature.inputs.get(name)
        if spec is not None and proto.dtype != spec.dtype.as_datatype_enum:
            raise invalid_argument(
                f"Expects arg[{index}] to be {spec.dtype.name} but "
                f"{_dtype_name(proto.dtype)} is provided")
        try:
            arrays[name] = tf.make_ndarray(proto)
        except (TypeError, ValueError, MemoryError) as err:  # MemoryError: a shape too large
            raise invalid_argument(f"input '{name}': malformed TensorProto: {err}") from None
    return arrays


def _dtype_name(datatype: int) -> str:
    """TF's name of a DataType enum value, or the number when TF has none (a bad proto)."""
    try:
        return tf.dtypes.as_dtype(datatype).name
    except TypeError:
        return f"unknown DataType {datatype}"


def to_proto(array: np.ndarray) -> tensor_pb2.TensorProto:
    return tf.make_tensor_proto(array)
