"""The REST JSON rules (``serving.protocol.json_codec``) without a server or a model.

What TF Serving's ``json_tensor.cc`` does is the reference: row and columnar requests,
``{"b64": ...}`` strings, nested lists as dense tensors, values type-checked against the
signature with messages naming the value and the type, ``*_bytes`` outputs base64-encoded,
NaN accepted and written back, and the ``results`` shapes of classify and regress.
"""
from __future__ import annotations

import base64
import json
import math

import numpy as np
import pytest

from serving.errors import Code, ServingError
from serving.protocol import json_codec
from serving.protocol.json_codec import Format
from tests.serving.conftest import nested

FLOAT = np.dtype(np.float32)
STRING = np.dtype(object)
INT = np.dtype(np.int64)
TAXI_DTYPES = {"fare": FLOAT, "trip_miles": FLOAT, "payment_type": STRING, "company": STRING}


def body(document) -> bytes:
    return json.dumps(document).encode()


def invalid(call, *args) -> str:
    """The message of the INVALID_ARGUMENT error ``call(*args)`` must raise."""
    with pytest.raises(ServingError) as caught:
        call(*args)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert caught.value.http_status == 400
    return caught.value.message


def predict(document, dtypes=TAXI_DTYPES) -> dict:
    return json_codec.predict_inputs(json_codec.read_predict(body(document)), dtypes)


ROW = {"fare": 12.5, "trip_miles": 2, "payment_type": "Cash", "company": ""}


# --- the request body ------------------------------------------------------------------

@pytest.mark.parametrize("raw, expected", [
    (b"", "The document is empty"),
    (b"   \n", "The document is empty"),
    (b'{"instances": [1, 2', "JSON Parse error"),
    (b"\xff\xfe", "JSON Parse error"),
    (b"[1, 2]", "Is not object"),
    (b'{"signature_name": 3, "instances": [1]}', "'signature_name' key must be a string"),
])
def test_unreadable_bodies_are_invalid_arguments(raw, expected):
    assert expected in invalid(json_codec.parse_body, raw)


def test_json_nested_too_deep_to_parse_is_a_parse_error():
    deep = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert "JSON Parse error" in invalid(json_codec.parse_body, deep)


def test_exactly_one_of_instances_and_inputs():
    both = {"instances": [ROW], "inputs": {"fare": [1.0]}}
    assert "only one of 'inputs' or 'instances'" in invalid(json_codec.read_predict, body(both))
    assert "Missing 'inputs' or 'instances' key" in invalid(
        json_codec.read_predict, body({"signature_name": "serving_default"}))


def test_instances_must_be_a_non_empty_list():
    assert "No values in 'instances' array" in invalid(json_codec.read_predict,
                                                        body({"instances": []}))
    assert "to be an list/array" in invalid(json_codec.read_predict,
                                            body({"instances": {"fare": 1.0}}))


def test_request_format_and_signature_name():
    row = json_codec.read_predict(body({"signature_name": "s", "instances": [ROW]}))
    assert (row.format, row.signature_name) == (Format.ROW, "s")
    columnar = json_codec.read_predict(body({"inputs": {"fare": [1.0]}}))
    assert (columnar.format, columnar.signature_name) == (Format.COLUMNAR, "")


# --- row format --------------------------------------------------------------------------

def test_row_format_batches_named_inputs_with_the_signature_dtypes():
    arrays = predict({"instances": [ROW, {**ROW, "fare": 3, "payment_type": "Credit Card"}]})
    assert set(arrays) == set(TAXI_DTYPES)
    np.testing.assert_array_equal(arrays["fare"], np.array([12.5, 3.0], dtype=np.float32))
    assert arrays["fare"].dtype == np.float32
    assert arrays["trip_miles"].dtype == np.float32  # an integer JSON number is a float
    assert arrays["payment_type"].dtype == object
    assert list(arrays["payment_type"]) == [b"Cash", b"Credit Card"]
    assert list(arrays["company"]) == [b"", b""]


def test_nan_and_empty_string_are_accepted_values():
    arrays = json_codec.predict_inputs(
        json_codec.read_predict(b'{"instances": [{"fare": NaN, "trip_miles": Infinity, '
                                b'"payment_type": "", "company": ""}]}'), TAXI_DTYPES)
    assert math.isnan(arrays["fare"][0])
    assert math.isinf(arrays["trip_miles"][0])
    assert arrays["payment_type"][0] == b""


def test_one_instance_reads_as_it_does_within_a_batch():
    """The one-instance fast path (the usual online request) against the batch path."""
    dtypes = {**TAXI_DTYPES, "trips": INT}
    row = {**ROW, "trips": 3}
    alone = predict({"instances": [row]}, dtypes)
    batched = predict({"instances": [row] * 2}, dtypes)
    for name, array in alone.items():
        assert (array.dtype, array.shape) == (batched[name].dtype, (1,))
        assert array.tolist() == batched[name][:1].tolist()
    assert "does not fit in int64" in invalid(predict, {"instances": [{**row, "trips": 2 ** 70}]},
                                              dtypes)
    assert "Type: True is not of expected type: int64" in invalid(
        predict, {"instances": [{**row, "trips": True}]}, dtypes)
    assert "missing input(s): trips" in invalid(predict, {"instances": [ROW]}, dtypes)


def test_row_format_names_a_missing_input():
    partial = {key: value for key, value in ROW.items() if key != "company"}
    message = invalid(predict, {"instances": [ROW, partial]})
    assert "element: 1 of 'instances'" in message
    assert "missing input(s): company" in message


def test_row_format_names_an_unknown_input():
    message = invalid(predict, {"instances": [{**ROW, "tip": 1.0}]})
    assert "unknown input(s): tip" in message
    assert "missing" not in message


def test_row_format_string_for_a_float_names_the_value_and_types():
    message = invalid(predict, {"instances": [{**ROW, "fare": "12.5"}]})
    assert "Failed to process input: fare" in message
    assert '"12.5"' in message
    assert "Type: String is not of expected type: float32" in message


@pytest.mark.parametrize("value, json_type", [
    (None, "Null"), (True, "True"), ({"x": 1}, "Object"), (3, "Number")])
def test_row_format_other_wrong_types_for_a_string_input(value, json_type):
    message = invalid(predict, {"instances": [{**ROW, "payment_type": value}]})
    assert f"Type: {json_type} is not of expected type: string" in message


def test_row_format_lists_inside_an_instance_are_extra_dimensions():
    arrays = predict({"instances": [{**ROW, "payment_type": ["Cash", "x"]}]})
    assert arrays["payment_type"].shape == (1, 2)
    assert arrays["fare"].shape == (1,)


def test_mixed_objects_and_values_in_instances_are_refused():
    message = invalid(predict, {"instances": [ROW, 3.0]})
    assert "Expecting object but got list at item 1" in message


def test_plain_values_need_a_single_input_signature():
    assert "expecting list of objects" in invalid(predict, {"instances": [1.0, 2.0]})
    arrays = predict({"instances": [1.0, 2.0]}, {"x": FLOAT})
    np.testing.assert_array_equal(arrays["x"], [1.0, 2.0])
    assert "Expecting value/list but got object at item 1" in invalid(
        predict, {"instances": [1.0, {"a": 1}]}, {"x": FLOAT})


def test_row_format_nested_lists_make_dense_tensors():
    arrays = predict({"instances": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}, {"x": INT})
    assert arrays["x"].shape == (2, 2, 2)
    assert arrays["x"].dtype == np.int64
    assert arrays["x"][1, 0, 1] == 6


def test_lists_deeper_than_an_array_can_be_are_refused():
    assert json_codec.to_array(nested(1.0, json_codec.MAX_DIMS), FLOAT).ndim == \
        json_codec.MAX_DIMS
    too_deep = nested(1.0, json_codec.MAX_DIMS + 1)
    assert "nested more than 32 levels" in invalid(json_codec.to_array, too_deep, FLOAT)
    assert "nested more than 32 levels" in invalid(predict, {"inputs": nested(1.0, 500)},
                                                   {"x": FLOAT})
    assert "nested more than 32 levels" in invalid(
        predict, {"instances": [{**ROW, "fare": nested(1.0, 500)}]})


def test_ragged_lists_are_refused():
    message = invalid(predict, {"instances": [[1, 2], [3]]}, {"x": INT})
    assert "Encountered list at unexpected size" in message


def test_integer_inputs_refuse_floats_and_booleans_and_overflow():
    assert "Type: Number is not of expected type: int64" in invalid(
        predict, {"instances": [1.5]}, {"x": INT})
    assert "Type: True is not of expected type: int64" in invalid(
        predict, {"instances": [True]}, {"x": INT})
    assert "does not fit in int64" in invalid(predict, {"instances": [2 ** 70]}, {"x": INT})
    bools = predict({"instances": [True, False]}, {"x": np.dtype(bool)})
    assert bools["x"].tolist() == [True, False]
    assert "expected type: bool" in invalid(predict, {"instances": [1]}, {"x": np.dtype(bool)})


def test_b64_values_are_decoded_into_bytes():
    payload = b"\x00\xffserialized"
    encoded = {"b64": base64.b64encode(payload).decode()}
    arrays = predict({"instances": [encoded, encoded]}, {"examples": STRING})
    assert list(arrays["examples"]) == [payload, payload]
    columnar = predict({"inputs": encoded}, {"examples": STRING})
    assert columnar["examples"] == payload and columnar["examples"].shape == ()


def test_bad_base64_is_refused():
    assert "Unable to base64 decode" in invalid(
        predict, {"instances": [{"b64": "not base64!"}]}, {"examples": STRING})
    assert "not formatted correctly for base64" in invalid(
        predict, {"instances": [{"b64": 12}]}, {"examples": STRING})


def test_b64_object_for_a_float_input_is_a_type_error():
    message = invalid(predict, {"instances": [{"b64": "AAAA"}]}, {"x": FLOAT})
    assert "Type: Object is not of expected type: float32" in message


def test_long_values_are_cut_in_messages():
    message = invalid(predict, {"instances": [{**ROW, "fare": "x" * 1000}]})
    assert "..." in message and len(message) < 600


# --- columnar format --------------------------------------------------------------------------

def test_columnar_format_reads_named_batches():
    arrays = predict({"inputs": {"fare": [1.0, 2.0], "trip_miles": [0, 1],
                                 "payment_type": ["Cash", "Cash"], "company": ["a", ""]}})
    np.testing.assert_array_equal(arrays["trip_miles"], [0.0, 1.0])
    assert list(arrays["company"]) == [b"a", b""]


def test_columnar_format_names_missing_and_unknown_inputs():
    columns = {"fare": [1.0], "trip_miles": [1.0], "payment_type": ["x"], "company": ["y"]}
    missing = {key: value for key, value in columns.items() if key != "trip_miles"}
    assert "Missing named input: trip_miles in 'inputs' object" in invalid(
        predict, {"inputs": missing})
    message = invalid(predict, {"inputs": {**columns, "tips": [1.0]}})
    assert "Unknown named input(s): tips" in message


def test_columnar_single_input_takes_a_plain_value():
    arrays = predict({"inputs": [[1.0, 2.0]]}, {"x": FLOAT})
    assert arrays["x"].shape == (1, 2)
    assert "expecting an object" in invalid(predict, {"inputs": [1.0]})


def test_columnar_type_errors_name_the_value():
    columns = {"fare": ["cheap"], "trip_miles": [1.0], "payment_type": ["x"], "company": ["y"]}
    message = invalid(predict, {"inputs": columns})
    assert '"cheap"' in message and "float32" in message


# --- responses -------------------------------------------------------------------------------

OUTPUTS = {"classes": np.array([[b"no_tip", b"tip"], [b"no_tip", b"tip"]], dtype=object),
           "scores": np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)}


def test_row_response_with_several_outputs_is_one_object_per_row():
    document = json_codec.predict_response(OUTPUTS, Format.ROW)
    assert document == {"predictions": [
        {"classes": ["no_tip", "tip"], "scores": [0.25, 0.75]},
        {"classes": ["no_tip", "tip"], "scores": [1.0, 0.0]}]}


def test_single_output_responses_are_plain_values():
    scores = {"scores": OUTPUTS["scores"]}
    assert json_codec.predict_response(scores, Format.ROW) == {
        "predictions": [[0.25, 0.75], [1.0, 0.0]]}
    assert json_codec.predict_response(scores, Format.COLUMNAR) == {
        "outputs": [[0.25, 0.75], [1.0, 0.0]]}


def test_columnar_response_is_an_object_of_outputs():
    document = json_codec.predict_response(OUTPUTS, Format.COLUMNAR)
    assert document == {"outputs": {"classes": [["no_tip", "tip"], ["no_tip", "tip"]],
                                    "scores": [[0.25, 0.75], [1.0, 0.0]]}}


def test_outputs_named_bytes_are_base64_encoded():
    raw = np.array([b"\x00\x01", b"\xff"], dtype=object)
    document = json_codec.predict_response({"image_bytes": raw, "label": raw}, Format.ROW)
    assert document["predictions"][0]["image_bytes"] == {"b64": "AAE="}
    assert document["predictions"][1]["image_bytes"] == {"b64": "/w=="}
    assert document["predictions"][1]["label"] == "\ufffd"  # not *_bytes: text


def test_row_response_needs_one_batch_size():
    message = invalid(json_codec.predict_response,
                      {"a": np.zeros(2), "b": np.zeros(3)}, Format.ROW)
    assert "inconsistent batch sizes" in message
    assert "has no shape information" in invalid(json_codec.predict_response,
                                                 {"a": np.float32(1.0)}, Format.ROW)
    assert json_codec.predict_response({"a": np.zeros(2), "b": np.zeros(3)},
                                       Format.COLUMNAR) == {"outputs": {"a": [0.0, 0.0],
                                                                        "b": [0.0] * 3}}


def test_dumps_writes_nan_and_errors_as_json():
    assert json_codec.dumps({"predictions": [float("nan")]}) == b'{"predictions":[NaN]}'
    assert json.loads(json_codec.error_body("bad")) == {"error": "bad"}


# --- classify / regress ------------------------------------------------------------------------

def test_read_examples_with_context_and_signature():
    name, examples, context = json_codec.read_examples(body({
        "signature_name": "classify", "context": {"company": "x"},
        "examples": [{"fare": 1.0}, {"fare": 2.0}]}), "classify")
    assert name == "classify"
    assert examples == [{"fare": 1.0}, {"fare": 2.0}]
    assert context == {"company": "x"}


@pytest.mark.parametrize("document, expected", [
    ({}, "When method is regress, key 'examples' is expected"),
    ({"examples": {"fare": 1.0}}, "Expecting 'examples' value to be an list/array"),
    ({"examples": []}, "'examples' value is an empty array"),
    ({"examples": [1.0]}, "Example must be JSON object but got JSON Number"),
    ({"examples": [{"fare": 1.0}], "context": [1]},
     "Example must be JSON object but got JSON Array"),
])
def test_read_examples_refuses_bad_shapes(document, expected):
    assert expected in invalid(json_codec.read_examples, body(document), "regress")


def test_example_features_follow_json_types():
    b64 = {"b64": base64.b64encode(b"\x01\x02").decode()}
    features = json_codec.example_features({
        "fare": 1.5, "trips": 3, "flag": True, "company": "Taxi Co", "raw": b64,
        "areas": [8, 9], "empty": [], "edge": [-2 ** 63, 2 ** 63 - 1]})
    assert features == {"edge": ("int64", [-2 ** 63, 2 ** 63 - 1]),
                        "fare": ("float", [1.5]), "trips": ("int64", [3]),
                        "flag": ("int64", [1]), "company": ("bytes", [b"Taxi Co"]),
                        "raw": ("bytes", [b"\x01\x02"]), "areas": ("int64", [8, 9]),
                        "empty": ("float", [])}


@pytest.mark.parametrize("example, expected", [
    ({"a": [1, "x"]}, "Unexpected element type in feature: a expecting type: int64"),
    ({"a": 2 ** 64 - 1}, "Feature: a has uint64_t element"),
    ({"a": -2 ** 63 - 1}, "Feature: a has an element below the int64_t range"),
    ({"a": None}, "Feature: a has element with unexpected JSON type: Null"),
    ({"a": {"nested": 1}}, "unexpected JSON type: Object"),
])
def test_example_features_refuse_bad_values(example, expected):
    assert expected in invalid(json_codec.example_features, example)


def test_classify_response_is_label_score_pairs_under_results():
    document = json_codec.classify_response(OUTPUTS["classes"], OUTPUTS["scores"])
    assert document == {"results": [[["no_tip", 0.25], ["tip", 0.75]],
                                    [["no_tip", 1.0], ["tip", 0.0]]]}
    scores_only = json_codec.classify_response(None, OUTPUTS["scores"][:1])
    assert scores_only == {"results": [[["", 0.25], ["", 0.75]]]}


def test_regress_response_is_one_score_per_example():
    document = json_codec.regress_response(np.array([[1.5], [2.5]], dtype=np.float32))
    assert document == {"results": [1.5, 2.5]}


# --- orjson where it agrees with the standard library -------------------------------------

def _tricky_documents():
    """Documents on every edge where orjson and ``json`` differ, and random ones around
    them (fixed seed): small and huge exponents, integers at and past 64 bits, NaN,
    infinities, None, non-ASCII, DEL and control characters, nested containers."""
    rng = np.random.default_rng(7)
    floats = [0.0, -0.0, 1e-7, 1e-5, 9.2e-5, 1e-4, 1.5e-9, 1e16, 1e22, 5e-324,
              1.7976931348623157e308, 0.21481013298034668,
              float("nan"), float("inf"), -float("inf")]
    floats += (rng.standard_normal(400) * 10.0 ** rng.uniform(-30, 30, 400)).tolist()
    floats += np.float32(rng.standard_normal(400) * 10.0 ** rng.uniform(-30, 30, 400)).tolist()
    ints = [0, -1, 2 ** 63 - 1, -2 ** 63, 2 ** 64 - 1, 2 ** 64, -2 ** 63 - 1, 10 ** 30]
    texts = ["", "tip", "no_tip", "null", "type-0", "é", "日本", "\x7f", "\x00\x1f\n\t\"\\/",
             "\ud800"]
    texts += ["".join(chr(c) for c in rng.integers(0, 128, 12)) for _ in range(20)]
    values = floats + ints + texts + [None, True, False]
    documents = [{"predictions": [value]} for value in values]
    for _ in range(200):
        picked = [values[i] for i in rng.integers(0, len(values), 6)]
        documents.append({"predictions": [{"classes": picked[:2], "scores": picked[2:4]},
                                          picked[4:]], "e": {"k": picked[5]}})
    return documents


def test_dumps_writes_the_standard_librarys_bytes():
    for document in _tricky_documents():
        expected = json.dumps(document, allow_nan=True, separators=(",", ":")).encode()
        assert json_codec.dumps(document) == expected, document


def test_bodies_read_as_the_standard_library_reads_them():
    bodies = [json.dumps(document).encode() for document in _tricky_documents()]
    bodies += [b"1e400", b"[18446744073709551616]", b"[-9223372036854775809]",
               b"[12345678901234567890123.5]", b'\xef\xbb\xbf{"a": 1}',
               '{"a": "é"}'.encode("utf-16"), b'{"a": NaN, "b": -Infinity}',
               b'{"a": 1, "a": 2}', b'"\\ud800"', b"[" * 50 + b"]" * 50]
    for body in bodies:
        assert repr(json_codec._loads(body)) == repr(json.loads(body)), body
    for bad in (b"[1,]", b"{'a': 1}", b'"\xff"', b"[" * 5000 + b"]" * 5000):
        with pytest.raises((ValueError, RecursionError)):
            json_codec._loads(bad)
