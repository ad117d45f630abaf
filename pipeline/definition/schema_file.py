"""Checks a curated schema file (`data.schema_path`) against the config on load.

A curated schema replaces the one SchemaGen would infer; Transform parses the data by it.
A schema that is not valid text, or that lacks a declared column, or that types a numeric
column as text, would otherwise fail deep inside Transform with a TensorFlow error. Here it
fails in `mlops check-config`, naming the file, the line or the column. Only protobuf is
imported: config checks stay instant.
"""
from __future__ import annotations

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from models import features as feature_lib

NUMERIC_TYPES = {schema_pb2.INT, schema_pb2.FLOAT}


def read(path: str) -> schema_pb2.Schema:
    """The schema in `path` (TFX's schema.pbtxt text format); ValueError saying where not.

    Raises:
        ValueError: the text is not a Schema in text format (the message names the file
            and the line).
        OSError: the file cannot be read.
    """
    with open(path) as handle:
        text = handle.read()
    try:
        return text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as err:
        raise ValueError(f"{path} is not a schema in text format: line {err}") from None


def problems(path: str, contract: dict[str, str]) -> list[str]:
    """What keeps `path` from describing the declared columns (`PipelineConfig.data_contract`).

    A schema that does not parse is one problem line, not an exception.

    Raises:
        OSError: the file cannot be read.
    """
    try:
        schema = read(path)
    except ValueError as err:
        return [str(err)]
    types = {feature.name: feature.type for feature in schema.feature}
    found = []
    for name, kind in contract.items():
        what = "the label" if kind in feature_lib.LABEL_KINDS else f"declared {kind}"
        if name not in types:
            found.append(f"{path} has no feature '{name}' ({what})")
        elif kind in feature_lib.NUMERIC_KINDS and types[name] not in NUMERIC_TYPES:
            found.append(f"{path} types '{name}' as {schema_pb2.FeatureType.Name(types[name])}, "
                         f"but it is {what}: INT or FLOAT needed")
    return found
