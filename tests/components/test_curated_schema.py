"""CuratedSchemaGen: TFX's ImportSchemaGen, keyed by the schema file's content as well."""
from __future__ import annotations

from pathlib import Path

from tfx.types import standard_artifacts

from components import curated_schema

SCHEMA = 'feature { name: "fare" type: FLOAT }\n'


def test_the_file_content_is_a_parameter_so_an_edit_changes_the_cache_key(tmp_path: Path):
    schema_file = tmp_path / "schema.pbtxt"
    schema_file.write_text(SCHEMA)
    before = curated_schema.CuratedSchemaGen(schema_file=str(schema_file))
    same = curated_schema.CuratedSchemaGen(schema_file=str(schema_file))
    schema_file.write_text(SCHEMA + 'feature { name: "tips" type: FLOAT }\n')
    edited = curated_schema.CuratedSchemaGen(schema_file=str(schema_file))

    assert before.id == "ImportSchemaGen"
    assert before.exec_properties["schema_file"] == str(schema_file)
    assert before.exec_properties == same.exec_properties
    assert edited.exec_properties["content_fingerprint"] != \
        before.exec_properties["content_fingerprint"]


def test_an_unreadable_file_is_keyed_by_its_path_alone(tmp_path: Path):
    component = curated_schema.CuratedSchemaGen(schema_file=str(tmp_path / "absent.pbtxt"))
    assert component.exec_properties["content_fingerprint"] == ""


def test_tfx_executor_imports_the_file_with_the_extra_parameter(tmp_path: Path):
    schema_file = tmp_path / "schema.pbtxt"
    schema_file.write_text(SCHEMA)
    component = curated_schema.CuratedSchemaGen(schema_file=str(schema_file))
    output = standard_artifacts.Schema()
    output.uri = str(tmp_path / "output")

    component.executor_spec.executor_class().Do(
        {}, {"schema": [output]}, dict(component.exec_properties))

    assert (tmp_path / "output" / "schema.pbtxt").read_text() == SCHEMA
