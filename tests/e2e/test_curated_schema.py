"""A curated schema (`data.schema_path`), end to end on real TFX components, in the way the
README describes it: start from the schema a run inferred, tighten it, and the next run
judges the data by it; edit it again, and the run after that sees the edit.

The run that inferred the schema is the session's shared one (tests/conftest.py
`pushed_workspace`: span 1 of the same data, of which this workspace holds the first
rows), so only the curated runs are made here.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from pipeline.definition.config import load_config
from pipeline.local.run import run_pipeline
from tests.conftest import PushedWorkspace, copy_taxi_span, write_config

pytestmark = pytest.mark.slow

ROWS = 600
# Absolute thresholds only: whether the model is good enough to push is not what this test
# is about.
SETTINGS = {"training.train_steps": 100, "training.eval_steps": 5, "training.batch_size": 64,
            "evaluation.thresholds": [{"metric": "AUC", "lower_bound": 0.5,
                                       "max_regression": None}]}


def newest_inferred_schema(pipeline_root: str) -> schema_pb2.Schema:
    """The file the README points to: SchemaGen's output of the newest run."""
    folders = glob.glob(os.path.join(pipeline_root, "SchemaGen", "schema", "*"))
    newest = max(folders, key=lambda folder: int(os.path.basename(folder)))
    return text_format.Parse(Path(newest, "schema.pbtxt").read_text(), schema_pb2.Schema())


def payment_types(schema: schema_pb2.Schema) -> list[str]:
    return next(domain for domain in schema.string_domain if domain.name == "payment_type").value


def test_a_curated_schema_judges_the_data_and_its_edits_take_effect(
        tmp_path: Path, pushed_workspace: PushedWorkspace) -> None:
    (tmp_path / "data").mkdir()
    copy_taxi_span(1, tmp_path / "data", rows=ROWS)

    schema = newest_inferred_schema(pushed_workspace.config.pipeline.root)
    assert "Cash" in payment_types(schema)
    curated = tmp_path / "schema.pbtxt"
    tightened = schema_pb2.Schema()
    tightened.CopyFrom(schema)
    payment_types(tightened).remove("Cash")
    curated.write_text(text_format.MessageToString(tightened))

    config = load_config(write_config(tmp_path, {**SETTINGS, "data.schema_path": str(curated)}))
    stopped = run_pipeline(config)
    assert not stopped.succeeded
    assert "feature 'payment_type'" in stopped.error and "Cash" in stopped.error, stopped.error
    states = {c.name: c.state for c in stopped.components}
    assert states["ImportSchemaGen"] == "done" and states["Trainer"] == "not run", states
    assert stopped.pushed_version is None

    # The same path, new content: the run must read it, not reuse the schema imported above.
    curated.write_text(text_format.MessageToString(schema))
    accepted = run_pipeline(config)
    assert accepted.succeeded, accepted.error
    states = {c.name: c.state for c in accepted.components}
    assert states["ImportSchemaGen"] == "done" and states["Trainer"] == "done", states
    assert accepted.pushed_version == "1", accepted.not_pushed_reason
