"""ImportSchemaGen that notices when the curated schema file is edited in place.

TFX's cache keys ImportSchemaGen on its parameters, and its only parameter is the file's
path: after an edit to the file, a cached pipeline keeps importing the schema it imported
before, so a tightened schema is not enforced and a loosened one keeps rejecting the data.
This component adds the file's content hash as a second parameter, which only the cache
reads (TFX's executor copies the file as before); KFP's cache, keyed on parameters too,
follows the same way. A path TFX's file system cannot read when the pipeline is built
(a bucket this machine has no access to) is keyed by path alone, as in TFX.
"""
from __future__ import annotations

import hashlib

from tfx import types
from tfx.components.schema_gen.import_schema_gen import executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ExecutionParameter

COMPONENT_ID = "ImportSchemaGen"
FINGERPRINT_KEY = "content_fingerprint"


def content_fingerprint(path: str) -> str:
    """The file's SHA-256 (16 hex digits), or "" when it cannot be read from here."""
    try:
        with fileio.open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()[:16]
    except Exception:  # pylint: disable=broad-except  # any file system's "cannot read"
        return ""


class CuratedSchemaGenSpec(standard_component_specs.ImportSchemaGenSpec):
    PARAMETERS = {**standard_component_specs.ImportSchemaGenSpec.PARAMETERS,
                  FINGERPRINT_KEY: ExecutionParameter(type=str)}


class CuratedSchemaGen(base_component.BaseComponent):
    """`ImportSchemaGen(schema_file)` with TFX's executor, re-run whenever the file's
    content changes; its node id stays "ImportSchemaGen"."""

    SPEC_CLASS = CuratedSchemaGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, schema_file: str):
        super().__init__(spec=CuratedSchemaGenSpec(
            schema_file=schema_file,
            content_fingerprint=content_fingerprint(schema_file),
            schema=types.Channel(type=standard_artifacts.Schema)))
        self.with_id(COMPONENT_ID)
