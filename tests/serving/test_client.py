"""`mlops predict`'s request building: CSV cells typed by the signature, and a row with an
empty integer cell sent as a tf.Example without it (int64 has no "missing" value)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from serving import client

DTYPES = client.InputTypes({"fare": "DT_FLOAT", "hour": "DT_INT64", "company": "DT_STRING"},
                           ("classify", "classify"))


def csv_file(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "trips.csv"
    path.write_text("\n".join(["fare,hour,company,tips", *rows]) + "\n")
    return path


def test_cells_take_the_signature_types(tmp_path: Path):
    instance = client.instance_from_csv(csv_file(tmp_path, "12,19,Flash Cab,1.0"), 1, DTYPES)
    assert instance == {"fare": 12.0, "hour": 19, "company": "Flash Cab"}
    assert isinstance(instance["fare"], float) and isinstance(instance["hour"], int)
    body = {"signature_name": "serving_default", "instances": [instance]}
    assert client.route("predict", body) == ("predict", body)  # nothing missing: as it is


def test_empty_cells_and_the_route_of_a_missing_integer(tmp_path: Path, capsys):
    instance = client.instance_from_csv(csv_file(tmp_path, ",,,1.0"), 1, DTYPES)
    assert math.isnan(instance["fare"]) and instance["company"] == ""
    assert "hour" not in instance and instance.absent == ["hour"]
    method, body = client.route("predict", {"signature_name": "serving_default",
                                            "instances": [instance]})
    assert (method, body) == ("classify", {"signature_name": "classify", "examples": [{}]})
    assert "hour" in capsys.readouterr().err


def test_a_missing_integer_without_an_examples_signature_is_refused(tmp_path: Path):
    dtypes = client.InputTypes(dict(DTYPES), None)
    instance = client.instance_from_csv(csv_file(tmp_path, "1.5,,x,1.0"), 1, dtypes)
    with pytest.raises(client.ClientError, match="no value for integer input.s. hour"):
        client.route("predict", {"instances": [instance]})


def test_a_cell_that_is_not_an_integer_names_the_column(tmp_path: Path):
    with pytest.raises(client.ClientError, match="column hour: '19.5' is not an integer"):
        client.instance_from_csv(csv_file(tmp_path, "1.5,19.5,x,1.0"), 1, DTYPES)
