"""TF Serving's REST JSON, to and from numpy: the rules of
``tensorflow_serving/util/json_tensor.cc``.

- predict: exactly one of ``instances`` (row format: a list with one entry per batch item,
  an object of named inputs, or a plain value when the signature has one input) or
  ``inputs`` (columnar: an object of named batched values, or one value); binary strings
  as ``{"b64": "..."}``. The response is ``predictions`` (row) or ``outputs`` (columnar):
  plain values for a single output, objects keyed by output name otherwise; outputs whose
  name ends in ``_bytes`` come back base64-encoded.
- classify / regress: ``examples`` (a list of objects, one per ``tf.Example``) and an
  optional ``context`` object merged into each; answered under ``results``.

Values are type-checked against the signature's dtypes so that a string sent for a float
input is a 400 naming the value and the type, never a silent conversion.

Bodies are read and written by orjson where its result is the standard library's, and by
``json`` where it is not (`_loads`, `dumps`): the same documents and bytes, with the
standard library's work per request cut by about five times on the REST port's event loop.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import enum
import json
import re
from typing import Any, Mapping

import numpy as np
import orjson

from serving.errors import invalid_argument

B64 = "b64"
BYTES_SUFFIX = "_bytes"
MAX_DIMS = 32  # numpy's limit (NPY_MAXDIMS): deeper lists cannot become an array


class Format(enum.Enum):
    """How a predict body laid out its values, which the response must mirror:
    `instances` (row) in, `predictions` out; `inputs` (columnar) in, `outputs` out."""

    ROW = "row"
    COLUMNAR = "columnar"


@dataclasses.dataclass(frozen=True)
class PredictRequest:
    """A predict body whose shape is checked, its values still JSON: they are typed only
    once the signature (and so each input's dtype) is resolved."""

    signature_name: str
    body: dict
    format: Format


def _debug(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 256 else text[:253] + "..."


def _json_type(value: Any) -> str:
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, (int, float)):
        return "Number"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    return "Object"


def parse_body(body: bytes) -> dict:
    """The request body as a JSON object, refused with TF Serving's messages otherwise.

    Raises:
        ServingError: INVALID_ARGUMENT when the body is empty, not JSON (or nested too
            deep to parse), not a JSON object, or its `signature_name` is not a string.
    """
    if not body or not body.strip():
        raise invalid_argument("JSON Parse error: The document is empty")
    try:
        document = _loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:  # too deep: a parse error
        raise invalid_argument(f"JSON Parse error: {err}") from None
    if not isinstance(document, dict):
        raise invalid_argument(f"JSON Value: {_debug(document)} Is not object")
    name = document.get("signature_name", "")
    if not isinstance(name, str):
        raise invalid_argument(f"JSON Value: {_debug(name)} not formatted correctly. "
                               "'signature_name' key must be a string value.")
    return document


# Digits as "9", the rest as spaces: a body holding _LONG_DIGITS may hold an integer
# orjson reads as a float (past 64 bits). One C pass over the body, where a regular
# expression tries a match at every digit.
_DIGITS_ONLY = bytes(0x39 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_LONG_DIGITS = b"9" * 19


def _loads(body: bytes) -> Any:
    """``json.loads(body)``, by orjson when it reads the body as that would. orjson refuses
    what the standard library accepts beyond RFC 8259 (NaN and Infinity, numbers out of a
    double's range, lone surrogates, UTF-16/32 bodies, a UTF-8 BOM, deep nesting); those,
    and any integer that may not fit 64 bits, which orjson would read as a float, go to
    the standard library, which also words the errors."""
    if _LONG_DIGITS not in body.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


def read_predict(body: bytes) -> PredictRequest:
    """A predict body's signature name and format (row or columnar).

    Raises:
        ServingError: INVALID_ARGUMENT for `parse_body`'s reasons, or when the body has
            both or neither of `instances` and `inputs`, or `instances` is not a
            non-empty list.
    """
    document = parse_body(body)
    has_instances, has_inputs = "instances" in document, "inputs" in document
    if has_instances and has_inputs:
        raise invalid_argument("Not formatted correctly: expecting only one of 'inputs' or "
                               "'instances' keys to exist")
    if has_instances:
        if not isinstance(document["instances"], list):
            raise invalid_argument("Expecting 'instances' to be an list/array")
        if not document["instances"]:
            raise invalid_argument("No values in 'instances' array")
        return PredictRequest(document.get("signature_name", ""), document, Format.ROW)
    if has_inputs:
        return PredictRequest(document.get("signature_name", ""), document, Format.COLUMNAR)
    raise invalid_argument("Missing 'inputs' or 'instances' key")


# --- values -> arrays ----------------------------------------------------------------

def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and B64 in value


def _leaf(value: Any, dtype: np.dtype) -> Any:
    kind = dtype.kind
    if kind == "O":  # DT_STRING
        if isinstance(value, str):
            return value.encode()
        if _is_b64(value):
            if not isinstance(value[B64], str):
                raise invalid_argument(f"JSON Value: {_debug(value)} not formatted correctly "
                                       "for base64 data")
            try:
                return base64.b64decode(value[B64], validate=True)
            except (binascii.Error, ValueError):
                raise invalid_argument("Unable to base64 decode") from None
    elif kind == "b":
        if isinstance(value, bool):
            return value
    elif kind in "iu":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind in "fc":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    raise invalid_argument(f"JSON Value: {_debug(value)} Type: {_json_type(value)} is not "
                           f"of expected type: {_dtype_name(dtype)}")


def _dtype_name(dtype: np.dtype) -> str:
    return "string" if dtype.kind == "O" else dtype.name


def to_array(value: Any, dtype: np.dtype) -> np.ndarray:
    """A dense tensor from nested JSON lists, every leaf checked against ``dtype``.

    Raises:
        ServingError: INVALID_ARGUMENT when lists nest deeper than 32 levels, the items of
            a list differ in shape (a ragged tensor), a leaf is not of ``dtype``'s JSON type
            (a string for a float, a bool for an int...) or is malformed base64, or a
            number does not fit in ``dtype``.
    """
    flat: list = []

    def shape_of(node: Any, level: int) -> tuple[int, ...]:
        if isinstance(node, list):
            if level >= MAX_DIMS:
                raise invalid_argument(f"Lists nested more than {MAX_DIMS} levels deep: a "
                                       f"tensor here has at most {MAX_DIMS} dimensions")
            shapes = {shape_of(item, level + 1) for item in node}
            if len(shapes) > 1:
                raise invalid_argument(f"Encountered list at unexpected size at level: "
                                       f"{level}: all items of a list must have one shape")
            return (len(node),) + (shapes.pop() if shapes else ())
        flat.append(_leaf(node, dtype))
        return ()

    shape = shape_of(value, 0)
    array = np.empty(len(flat), dtype=dtype) if dtype.kind == "O" else None
    if array is not None:
        array[:] = flat
    else:
        try:
            array = np.array(flat, dtype=dtype)
        except OverflowError:
            raise invalid_argument(f"a value does not fit in {dtype.name}") from None
    return array.reshape(shape)


def predict_inputs(request: PredictRequest, input_dtypes: Mapping[str, np.dtype]) -> dict:
    """The signature's input arrays from a predict body (row or columnar).

    Raises:
        ServingError: INVALID_ARGUMENT, naming the input (and the row for `instances`),
            when a plain list or value is given for a signature of several inputs, an
            instance's keys are not exactly the inputs, `inputs` lacks or adds a name,
            or a value cannot become the input's tensor (see `to_array`).
    """
    if request.format is Format.ROW:
        return _rows(request.body["instances"], input_dtypes)
    return _columns(request.body["inputs"], input_dtypes)


def _fast_row(item: Any, input_dtypes: Mapping[str, np.dtype]):
    """One flat {name: scalar} instance, the usual online request, as batch-of-one arrays,
    or None to take the checked path: half of ``_fast_rows``' time for it, with no list or
    generator per input (bench/serving; see docs/performance.md)."""
    if type(item) is not dict or len(item) != len(input_dtypes):
        return None
    arrays = {}
    for name, dtype in input_dtypes.items():
        value = item.get(name)
        kind, value_type = dtype.kind, type(value)
        if kind == "O":
            if value_type is not str:
                return None
            array = np.empty(1, dtype=object)
            array[0] = value.encode()
        elif value_type is int and kind in "iuf" or value_type is float and kind == "f":
            try:
                array = np.array((value,), dtype=dtype)
            except OverflowError:  # the checked path says which input
                return None
        else:
            return None
        arrays[name] = array
    return arrays


def _fast_rows(instances: list, input_dtypes: Mapping[str, np.dtype]):
    """Columns of flat {name: scalar} instances, or None to take the checked path."""
    if len(instances) == 1:
        return _fast_row(instances[0], input_dtypes)
    arrays = {}
    for name, dtype in input_dtypes.items():
        try:
            column = [item[name] for item in instances]
        except (KeyError, TypeError):
            return None
        kind = dtype.kind
        if kind == "O":
            if not all(type(v) is str for v in column):
                return None
            array = np.empty(len(column), dtype=object)
            array[:] = [v.encode() for v in column]
        elif kind == "f":
            if not all(type(v) is float or type(v) is int for v in column):
                return None
            array = np.array(column, dtype=dtype)
        elif kind in "iu":
            if not all(type(v) is int for v in column):
                return None
            try:
                array = np.array(column, dtype=dtype)
            except OverflowError:  # the checked path says which input
                return None
        else:
            return None
        arrays[name] = array
    if any(len(item) != len(input_dtypes) for item in instances):
        return None
    return arrays


def _rows(instances: list, input_dtypes: Mapping[str, np.dtype]) -> dict:
    fast = _fast_rows(instances, input_dtypes)
    if fast is not None:
        return fast
    names = sorted(input_dtypes)
    as_objects = isinstance(instances[0], dict) and not _is_b64(instances[0])
    if not as_objects:
        if len(names) > 1:
            raise invalid_argument("instances is a plain list, but expecting list of objects "
                                   "as multiple input tensors required as per tensorinfo_map")
        for index, item in enumerate(instances):
            if isinstance(item, dict) and not _is_b64(item):
                raise invalid_argument(f"Expecting value/list but got object at item {index} "
                                       "of input list")
        return {names[0]: _batch(instances, names[0], input_dtypes[names[0]])}
    for index, item in enumerate(instances):
        if not isinstance(item, dict) or _is_b64(item):
            raise invalid_argument(f"Expecting object but got list at item {index} of input "
                                   "list")
        if set(item) != set(names):
            unknown = sorted(set(item) - set(names))
            missing = sorted(set(names) - set(item))
            detail = "; ".join(part for part in (
                f"unknown input(s): {', '.join(unknown)}" if unknown else "",
                f"missing input(s): {', '.join(missing)}" if missing else "") if part)
            raise invalid_argument(f"Failed to process element: {index} of 'instances' list. "
                                   f"JSON object keys must be equal to: {','.join(names)} "
                                   f"({detail})")
    return {name: _batch([item[name] for item in instances], name, input_dtypes[name])
            for name in names}


def _batch(values: Any, name: str, dtype: np.dtype, where: str = "'instances' list"
           ) -> np.ndarray:
    """``to_array``, its errors naming the input (and so, with the value, the dtype wanted)."""
    try:
        return to_array(values, dtype)
    except Exception as err:
        message = getattr(err, "message", str(err))
        raise invalid_argument(f"Failed to process input: {name} of {where}. "
                               f"Error: {message}") from None


def _columns(inputs: Any, input_dtypes: Mapping[str, np.dtype]) -> dict:
    names = sorted(input_dtypes)
    if not isinstance(inputs, dict) or _is_b64(inputs):
        if len(names) > 1:
            raise invalid_argument("inputs is a plain value/list, but expecting an object as "
                                   "multiple input tensors required as per tensorinfo_map")
        return {names[0]: _batch(inputs, names[0], input_dtypes[names[0]], "'inputs'")}
    arrays = {}
    for name in names:
        if name not in inputs:
            raise invalid_argument(f"Missing named input: {name} in 'inputs' object.")
        arrays[name] = _batch(inputs[name], name, input_dtypes[name], "'inputs' object")
    unknown = sorted(set(inputs) - set(names))
    if unknown:
        raise invalid_argument(f"Unknown named input(s): {', '.join(unknown)} in 'inputs' "
                               f"object; the signature takes {', '.join(names)}")
    return arrays


# --- arrays -> JSON ------------------------------------------------------------------

def _map_nested(node: Any, convert) -> Any:
    return [_map_nested(item, convert) for item in node] if isinstance(node, list) \
        else convert(node)


def _jsonable(name: str, array: np.ndarray) -> Any:
    """Plain lists; strings as text, or ``{"b64": ...}`` for outputs named ``*_bytes``."""
    if array.dtype.kind not in ("O", "S"):
        return array.tolist()
    if name.endswith(BYTES_SUFFIX):
        return _map_nested(array.tolist(), lambda b: {B64: base64.b64encode(b).decode()})
    return _map_nested(array.tolist(),
                       lambda b: b.decode("utf-8", "replace") if isinstance(b, bytes) else b)


def predict_response(outputs: Mapping[str, np.ndarray], fmt: Format) -> dict:
    """The response document in the request's format: `outputs` for columnar,
    `predictions` (one entry per row) for row; a single output is not keyed by name.

    Raises:
        ServingError: INVALID_ARGUMENT, for the row format only, when an output is a
            scalar or the outputs differ in batch size (the columnar format answers both).
    """
    names = sorted(outputs)
    if fmt is Format.COLUMNAR:
        if len(names) == 1:
            return {"outputs": _jsonable(names[0], outputs[names[0]])}
        return {"outputs": {name: _jsonable(name, outputs[name]) for name in names}}
    for name in names:
        if outputs[name].ndim == 0:
            raise invalid_argument(f"Tensor name: {name} has no shape information ")
    sizes = {outputs[name].shape[0] for name in names}
    if len(sizes) > 1:
        raise invalid_argument("Output tensors have inconsistent batch sizes: the row format "
                               "needs one; ask for the columnar format (\"inputs\")")
    columns = {name: _jsonable(name, outputs[name]) for name in names}
    if len(names) == 1:
        return {"predictions": columns[names[0]]}
    return {"predictions": [{name: columns[name][row] for name in names}
                            for row in range(sizes.pop())]}


# What orjson writes where ``json`` writes otherwise: NaN and infinities as null, DEL
# unescaped, 1e-05 as 0.00001 (non-ASCII is checked apart), 1e-07 as 1e-7.
_NOT_AS_JSON = (b"null", b"\x7f", b"0.0000")
_ONE_DIGIT_EXPONENT = re.compile(rb"e-[0-9](?![0-9])")


def _as_json_writes(written: bytes) -> bool:
    """Whether orjson's output is byte for byte what ``json.dumps`` would write (a ``null``
    of the document's own, or a string that looks like a number's form, only costs the
    standard library's pass)."""
    return (written.isascii() and not any(part in written for part in _NOT_AS_JSON)
            and (b"e-" not in written or not _ONE_DIGIT_EXPONENT.search(written)))


def dumps(document: Any) -> bytes:
    """JSON as TF Serving writes it: NaN and Infinity allowed (its writer emits them).

    Written by orjson when its bytes are the standard library's (`_as_json_writes`), by
    ``json`` otherwise, so the answer's bytes never depend on which wrote them.
    """
    try:
        written = orjson.dumps(document)
    except TypeError:  # what orjson cannot write (an integer past 64 bits): json can
        pass
    else:
        if _as_json_writes(written):
            return written
    return json.dumps(document, allow_nan=True, separators=(",", ":")).encode()


def error_body(message: str) -> bytes:
    """TF Serving's error body, `{"error": message}`, which its clients parse."""
    return dumps({"error": message})


# --- classify / regress ----------------------------------------------------------------

def read_examples(body: bytes, method: str) -> tuple[str, list[dict], dict | None]:
    """(signature_name, examples, context) of a classify / regress body, shapes checked.

    Raises:
        ServingError: INVALID_ARGUMENT for `parse_body`'s reasons, or when `context` is
            not an object, `examples` is missing, not a list, empty, or holds a non-object.
    """
    document = parse_body(body)
    context = document.get("context")
    if context is not None and not isinstance(context, dict):
        raise invalid_argument(f"Example must be JSON object but got JSON "
                               f"{_json_type(context)}")
    if "examples" not in document:
        raise invalid_argument(f"When method is {method}, key 'examples' is expected and "
                               "was not found")
    examples = document["examples"]
    if not isinstance(examples, list):
        raise invalid_argument("Expecting 'examples' value to be an list/array")
    if not examples:
        raise invalid_argument("'examples' value is an empty array")
    for example in examples:
        if not isinstance(example, dict):
            raise invalid_argument(f"Example must be JSON object but got JSON "
                                   f"{_json_type(example)}")
    return document.get("signature_name", ""), examples, context


def example_features(example: Mapping[str, Any]) -> dict[str, tuple[str, list]]:
    """Feature name -> (kind, values) with TF Serving's JSON typing rules for tf.Example.

    Integers and bools are int64, other numbers float, strings and `{"b64": ...}` bytes;
    an empty list is a float feature with no values.

    Raises:
        ServingError: INVALID_ARGUMENT, naming the feature, for an integer outside int64,
            a value of another JSON type (null, an object, a nested list), malformed
            base64, or values of different kinds in one feature.
    """
    features = {}
    for name, content in example.items():
        kind, values = None, []
        for value in content if isinstance(content, list) else [content]:
            if isinstance(value, bool):
                value_kind, converted = "int64", int(value)
            elif isinstance(value, int):
                if value >= 2 ** 63:
                    raise invalid_argument(f"Feature: {name} has uint64_t element. Only "
                                           "int64_t is supported.")
                if value < -2 ** 63:
                    raise invalid_argument(f"Feature: {name} has an element below the "
                                           "int64_t range.")
                value_kind, converted = "int64", value
            elif isinstance(value, float):
                value_kind, converted = "float", value
            elif isinstance(value, str):
                value_kind, converted = "bytes", value.encode()
            elif _is_b64(value):
                value_kind, converted = "bytes", _leaf(value, np.dtype(object))
            else:
                raise invalid_argument(f"Feature: {name} has element with unexpected JSON "
                                       f"type: {_json_type(value)}")
            if kind is not None and kind != value_kind:
                raise invalid_argument(f"Unexpected element type in feature: {name} "
                                       f"expecting type: {kind}")
            kind = value_kind
            values.append(converted)
        features[name] = (kind or "float", values)
    return features


def classify_response(classes: np.ndarray | None, scores: np.ndarray | None) -> dict:
    """`{"results": [[[label, score], ...], ...]}`, a row per example; a missing output
    (no `classes` or no `scores`) is "" or 0.0."""
    rows = (scores if scores is not None else classes).shape[0]
    results = []
    for row in range(rows):
        count = (scores if scores is not None else classes).shape[1]
        results.append([[classes[row, k].decode("utf-8", "replace") if classes is not None
                         else "", float(scores[row, k]) if scores is not None else 0.0]
                        for k in range(count)])
    return {"results": results}


def regress_response(values: np.ndarray) -> dict:
    """`{"results": [value, ...]}`, one float per example."""
    return {"results": [float(v) for v in values.reshape(-1)]}
