"""A small REST client for `mlops predict`: requests from JSON files or CSV rows.

A CSV row becomes one row-format instance typed by the served signature (read from the
metadata API): float inputs get numbers (an empty cell is NaN, the model's "missing"),
integer inputs JSON integers, string inputs the cell's text ("" when empty); columns the
signature does not take (the label, say) are left out. So any CSV laid out like the
training data can be sent as it is.

An integer input has no "missing" value (int64 has no NaN), and ``serving_default`` needs
every input, as TF Serving does. So a row with an empty integer cell is sent the way a
missing integer is sent to this model: as a ``tf.Example`` without that feature, to the
model's classify / regress signature (``:classify`` / ``:regress``), which answers the same
scores for the same values; a note on stderr says so.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path
from typing import Any, Optional

import httpx

from serving import tls

_NUMERIC = {"DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16"}
_INTEGER = {"DT_INT8", "DT_INT16", "DT_INT32", "DT_INT64", "DT_UINT8", "DT_UINT16"}
# TF Serving's method names of the tf.Example signatures, and the REST verb of each.
_EXAMPLE_METHODS = {"tensorflow/serving/classify": "classify",
                    "tensorflow/serving/regress": "regress"}


class ClientError(Exception):
    """A request that could not be built or sent; the message names the file, row or field."""


class InputTypes(dict):
    """A signature's input dtypes by name (``DT_...``), and the model's tf.Example signature.

    ``examples_signature`` is (signature name, REST verb) of the model's classify / regress
    signature, or None when it has none.
    """

    def __init__(self, dtypes: dict[str, str],
                 examples_signature: Optional[tuple[str, str]]) -> None:
        super().__init__(dtypes)
        self.examples_signature = examples_signature


class CsvInstance(dict):
    """A CSV row as a row-format instance; ``absent`` lists its empty integer cells.

    ``as_example()`` is the same row as a classify / regress example: only the cells that
    hold a value, each in the data's own type.
    """

    def __init__(self, values: dict[str, Any], absent: list[str], where: str,
                 examples_signature: Optional[tuple[str, str]]) -> None:
        super().__init__(values)
        self.absent = absent
        self.where = where
        self.examples_signature = examples_signature

    def as_example(self) -> dict[str, Any]:
        """The row as a classify / regress example: empty cells (NaN, "") left out, so the
        model sees them missing as in training."""
        return {name: value for name, value in self.items()
                if not (isinstance(value, float) and math.isnan(value)) and value != ""}


def model_path(name: str, version: Optional[int] = None, label: Optional[str] = None) -> str:
    """The REST path of a model, or of one version or label of it (version wins)."""
    path = f"/v1/models/{name}"
    if version is not None:
        path += f"/versions/{version}"
    elif label:
        path += f"/labels/{label}"
    return path


def _get(url: str, verify=True) -> httpx.Response:
    try:
        return httpx.get(url, timeout=10, verify=verify)
    except httpx.HTTPError as err:
        raise unreachable(url, err) from None


def unreachable(url: str, error: httpx.HTTPError) -> ClientError:
    """The error for a request that got no answer: a TLS mismatch says which setting to
    change, anything else that no server answers."""
    failure = tls.client_failure(error)
    if failure:
        return ClientError(f"{url}: {failure}")
    return ClientError(f"no server answers at {url} ({error}); start one with `mlops serve`")


def input_dtypes(base_url: str, path: str, signature: str, verify=True) -> InputTypes:
    """The input dtypes of ``signature``, from the metadata API, so CSV cells can be typed.

    ``verify``: httpx's, an ``ssl.SSLContext`` for an https ``base_url``
    (``server_files.rest_verify``).

    Returns:
        Input name -> `DT_...`, with the model's classify / regress signature, if any.

    Raises:
        ClientError: no server answers at the URL, or the TLS handshake fails (the
            message then names the `serving.tls` setting to change); the metadata request
            answers other than HTTP 200; or the model has no signature ``signature``
            (the message lists those it has).
    """
    response = _get(f"{base_url}{path}/metadata", verify)
    if response.status_code != 200:
        raise ClientError(f"metadata: HTTP {response.status_code}: {response.text.strip()}")
    signatures = response.json()["metadata"]["signature_def"]["signature_def"]
    if signature not in signatures:
        raise ClientError(f"the model has no signature {signature!r} (it has: "
                          f"{', '.join(sorted(k for k in signatures if not k.startswith('__')))})")
    examples = next(((name, _EXAMPLE_METHODS[sig.get("method_name")])
                     for name, sig in sorted(signatures.items())
                     if sig.get("method_name") in _EXAMPLE_METHODS), None)
    return InputTypes({name: spec["dtype"]
                       for name, spec in signatures[signature]["inputs"].items()}, examples)


def instance_from_csv(path: Path, row: int, dtypes: dict[str, str]) -> CsvInstance:
    """Data row ``row`` (1 = first row after the header) as an instance for ``dtypes``.

    An empty integer cell is left out (listed in ``absent``): see the module's docstring.

    Raises:
        ClientError: the file cannot be read, has no column for an input, has no data
            row ``row``, or a cell of a float or integer input is not a number of that kind.
    """
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = sorted(set(dtypes) - set(reader.fieldnames or ()))
            if missing:
                raise ClientError(f"{path}: no column for input(s) {', '.join(missing)}")
            for number, record in enumerate(reader, start=1):
                if number == row:
                    values, absent = {}, []
                    for name, dtype in dtypes.items():
                        value = _typed(record[name], dtype, path, row, name)
                        if value is None:
                            absent.append(name)
                        else:
                            values[name] = value
                    return CsvInstance(values, absent, f"{path}: row {row}",
                                       getattr(dtypes, "examples_signature", None))
    except OSError as err:
        raise ClientError(f"{path}: {err.strerror}") from None
    raise ClientError(f"{path}: there is no data row {row}")


def _typed(cell: str, dtype: str, path: Path, row: int, column: str) -> Any:
    """The cell as ``dtype`` wants it; None for an empty integer cell (no "missing" int)."""
    cell = (cell or "").strip()
    if dtype in _NUMERIC:
        try:
            return float(cell) if cell else math.nan
        except ValueError:
            raise ClientError(f"{path}: row {row}, column {column}: {cell!r} is not a "
                              "number") from None
    if dtype in _INTEGER:
        if not cell:
            return None
        try:
            return int(cell)
        except ValueError:
            raise ClientError(f"{path}: row {row}, column {column}: {cell!r} is not an "
                              "integer") from None
    return cell


def route(method: str, body: dict) -> tuple[str, dict]:
    """Where a request goes: a predict of CSV rows with empty integer cells goes as
    tf.Examples without those features to the classify / regress signature (see above).

    Raises:
        ClientError: instances with empty integer cells are mixed with ones not from CSV
            rows, or the model has no classify / regress signature to send them to.
    """
    instances = body.get("instances") if method == "predict" else None
    if not isinstance(instances, list) or not any(
            isinstance(item, CsvInstance) and item.absent for item in instances):
        return method, body
    if not all(isinstance(item, CsvInstance) for item in instances):
        raise ClientError("empty integer cells can only be sent from CSV rows")
    first = next(item for item in instances if item.absent)
    if first.examples_signature is None:
        raise ClientError(f"{first.where}: no value for integer input(s) "
                          f"{', '.join(first.absent)}, which serving_default cannot take "
                          "missing, and the model has no classify / regress signature to "
                          "send it to as a tf.Example without them")
    signature, verb = first.examples_signature
    print(f"note: {first.where} has no value for integer input(s) "
          f"{', '.join(first.absent)} (an int64 input of serving_default has no 'missing' "
          f"value): sent to :{verb} (signature {signature!r}) as a tf.Example without "
          "them", file=sys.stderr)
    return verb, {"signature_name": signature,
                  "examples": [item.as_example() for item in instances]}


def read_json(path: Path) -> dict:
    """A request body from a file, sent as it is (`mlops predict --json`).

    Raises:
        ClientError: the file cannot be read or is not JSON.
    """
    try:
        return json.loads(Path(path).read_text())
    except OSError as err:
        raise ClientError(f"{path}: {err.strerror}") from None
    except ValueError as err:
        raise ClientError(f"{path}: not valid JSON: {err}") from None


def post(base_url: str, path: str, method: str, body: dict, verify=True
         ) -> tuple[int, Any]:
    """Sends one request (re-routed by `route` when a CSV row needs it).

    Returns:
        The HTTP status and the JSON answer ({"error": text} when it is not JSON): a
        refused request is an answer to show, not an exception.

    Raises:
        ClientError: `route`'s reasons; no server answers at the URL, or the TLS
            handshake fails (the message then names the `serving.tls` setting to change).
    """
    method, body = route(method, body)
    try:
        response = httpx.post(f"{base_url}{path}:{method}",
                              content=json.dumps(body, allow_nan=True), timeout=30,
                              headers={"Content-Type": "application/json"}, verify=verify)
    except httpx.HTTPError as err:
        raise unreachable(base_url, err) from None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"error": response.text}
