"""A small REST client for `mlops predict`: requests from JSON files or CSV rows.

A CSV row becomes one row-format instance typed by the served signature (read from the
metadata API): float inputs get numbers (an empty cell is NaN, the model's "missing"),
string inputs get the cell's text; columns the signature does not take (the label, say)
are left out. So any CSV laid out like the training data can be sent as it is.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Optional

import httpx

_NUMERIC = {"DT_FLOAT", "DT_DOUBLE", "DT_HALF", "DT_BFLOAT16"}
_INTEGER = {"DT_INT8", "DT_INT16", "DT_INT32", "DT_INT64", "DT_UINT8", "DT_UINT16"}


class ClientError(Exception):
    """A request that could not be built or sent; the message names the file, row or field."""


def model_path(name: str, version: Optional[int] = None, label: Optional[str] = None) -> str:
    path = f"/v1/models/{name}"
    if version is not None:
        path += f"/versions/{version}"
    elif label:
        path += f"/labels/{label}"
    return path


def _get(url: str) -> httpx.Response:
    try:
        return httpx.get(url, timeout=10)
    except httpx.HTTPError as err:
        raise ClientError(f"no server answers at {url} ({err}); start one with `mlops serve`") \
            from None


def input_dtypes(base_url: str, path: str, signature: str) -> dict[str, str]:
    response = _get(f"{base_url}{path}/metadata")
    if response.status_code != 200:
        raise ClientError(f"metadata: HTTP {response.status_code}: {response.text.strip()}")
    signatures = response.json()["metadata"]["signature_def"]["signature_def"]
    if signature not in signatures:
        raise ClientError(f"the model has no signature {signature!r} (it has: "
                          f"{', '.join(sorted(k for k in signatures if not k.startswith('__')))})")
    return {name: spec["dtype"] for name, spec in signatures[signature]["inputs"].items()}


def instance_from_csv(path: Path, row: int, dtypes: dict[str, str]) -> dict[str, Any]:
    """Data row ``row`` (1 = first row after the header) as an instance for ``dtypes``."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = sorted(set(dtypes) - set(reader.fieldnames or ()))
            if missing:
                raise ClientError(f"{path}: no column for input(s) {', '.join(missing)}")
            for number, record in enumerate(reader, start=1):
                if number == row:
                    return {name: _typed(record[name], dtype, path, row, name)
                            for name, dtype in dtypes.items()}
    except OSError as err:
        raise ClientError(f"{path}: {err.strerror}") from None
    raise ClientError(f"{path}: there is no data row {row}")


def _typed(cell: str, dtype: str, path: Path, row: int, column: str) -> Any:
    cell = (cell or "").strip()
    if dtype in _NUMERIC:
        try:
            return float(cell) if cell else math.nan
        except ValueError:
            raise ClientError(f"{path}: row {row}, column {column}: {cell!r} is not a "
                              "number") from None
    if dtype in _INTEGER:
        try:
            return int(cell)
        except ValueError:
            raise ClientError(f"{path}: row {row}, column {column}: {cell!r} is not an "
                              "integer") from None
    return cell


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except OSError as err:
        raise ClientError(f"{path}: {err.strerror}") from None
    except ValueError as err:
        raise ClientError(f"{path}: not valid JSON: {err}") from None


def post(base_url: str, path: str, method: str, body: dict) -> tuple[int, Any]:
    try:
        response = httpx.post(f"{base_url}{path}:{method}",
                              content=json.dumps(body, allow_nan=True), timeout=30,
                              headers={"Content-Type": "application/json"})
    except httpx.HTTPError as err:
        raise ClientError(f"no server answers at {base_url} ({err}); start one with "
                          "`mlops serve`") from None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"error": response.text}
