"""TensorProto <-> numpy for the gRPC API, checked against the signature's dtypes."""
from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2  # noqa: E402 (after TF)

from serving.errors import invalid_argument
from serving.servable import Signature

_FAST_FIELDS = {types_pb2.DT_FLOAT: ("float_val", np.float32),
                types_pb2.DT_DOUBLE: ("double_val", np.float64),
                types_pb2.DT_INT32: ("int_val", np.int32),
                types_pb2.DT_INT64: ("int64_val", np.int64)}


def _fast_ndarray(proto: tensor_pb2.TensorProto) -> "np.ndarray | None":
    """The common dtypes read straight from the proto (tf.make_ndarray costs far more);
    None sends anything unusual through tf.make_ndarray and its checks."""
    shape = [d.size for d in proto.tensor_shape.dim]
    count = 1
    for size in shape:
        count *= size
    if proto.dtype == types_pb2.DT_STRING:
        values = proto.string_val
        if len(values) != count:
            return None
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    field = _FAST_FIELDS.get(proto.dtype)
    if field is None:
        return None
    if proto.tensor_content:
        array = np.frombuffer(proto.tensor_content, dtype=field[1])
        return array.reshape(shape) if array.size == count else None
    values = getattr(proto, field[0])
    if len(values) != count:
        return None
    # np.fromiter reads the repeated field in C; np.array went through the sequence protocol
    return np.fromiter(values, dtype=field[1], count=count).reshape(shape)


def inputs_from_protos(signature: Signature,
                       protos: Mapping[str, tensor_pb2.TensorProto]) -> dict[str, np.ndarray]:
    """A gRPC request's TensorProtos as arrays, each dtype checked against the signature
    (names are checked by the data plane, so an unknown one passes here).

    Raises:
        ServingError: INVALID_ARGUMENT when a proto's dtype is not its input's (TF
            Serving's "Expects arg[i] to be ..." text), or a proto is malformed (its values
            do not fill its shape, or the shape is too large to allocate).
    """
    arrays = {}
    # Keys, then a lookup each: .items() of a protobuf map is collections.abc's pure-Python
    # view, a visible part of the event loop's time under one-client gRPC load.
    for index, name in enumerate(sorted(protos)):
        proto = protos[name]
        spec = signature.inputs.get(name)
        if spec is not None and proto.dtype != spec.dtype.as_datatype_enum:
            raise invalid_argument(
                f"Expects arg[{index}] to be {spec.dtype.name} but "
                f"{_dtype_name(proto.dtype)} is provided (input '{name}')")
        fast = _fast_ndarray(proto)
        if fast is not None:
            arrays[name] = fast
            continue
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
    """float32 and bytes outputs built directly; other dtypes through tf.make_tensor_proto."""
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in array.shape])
    if array.dtype == np.float32:
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_shape=shape,
                                      float_val=array.ravel().tolist())
    if array.dtype.kind == "O" and all(type(v) is bytes for v in array.flat):
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, tensor_shape=shape,
                                      string_val=list(array.flat))
    return tf.make_tensor_proto(array)
