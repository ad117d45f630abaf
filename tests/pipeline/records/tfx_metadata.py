"""A real SQLite ML Metadata store holding pipeline runs laid out as TFX lays them out.

TFX's local runner (`tfx/orchestration/portable/mlmd/context_lib.py`) records, for every
node it runs, a `pipeline` context named after the pipeline, a `pipeline_run` context named
after the run (the pipeline context is its parent), and a `node` context named
`<pipeline>.<node id>`; each execution is attributed to the run and node contexts, and its
outputs are linked by OUTPUT events whose path's first step is the output key. This module
writes exactly that through ml_metadata's own API, so `mlops history` and `mlops lineage`
read a store like a run's without a run (a pipeline run takes minutes).
"""
from __future__ import annotations

import os
import time
from typing import Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

State = metadata_store_pb2.Execution.State


class TfxStore:
    """A read-write store at `path` (created) with TFX's context and artifact types."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        connection = metadata_store_pb2.ConnectionConfig()
        connection.sqlite.filename_uri = path
        connection.sqlite.connection_mode = \
            metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = metadata_store.MetadataStore(connection)
        self._context_types = {name: self.store.put_context_type(
            metadata_store_pb2.ContextType(name=name))
            for name in ("pipeline", "pipeline_run", "node")}
        examples = metadata_store_pb2.ArtifactType(name="Examples")
        examples.properties["span"] = metadata_store_pb2.INT
        examples.properties["split_names"] = metadata_store_pb2.STRING
        self._examples_type = self.store.put_artifact_type(examples)
        self._model_type = self.store.put_artifact_type(
            metadata_store_pb2.ArtifactType(name="Model"))
        self._contexts: dict[tuple[str, str], int] = {}

    def _context(self, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._contexts:
            [self._contexts[key]] = self.store.put_contexts([metadata_store_pb2.Context(
                type_id=self._context_types[kind], name=name)])
        return self._contexts[key]

    def add_run(self, pipeline_name: str, run_id: str) -> int:
        """Records run `run_id` of `pipeline_name`; returns its start (ms since the epoch).

        MLMD stamps a context's creation time itself; a short pause keeps the runs'
        times distinct and in the order they were added.
        """
        time.sleep(0.005)
        pipeline = self._context("pipeline", pipeline_name)
        run = self._context("pipeline_run", run_id)
        self.store.put_parent_contexts([metadata_store_pb2.ParentContext(
            parent_id=pipeline, child_id=run)])
        [context] = self.store.get_contexts_by_id([run])
        return context.create_time_since_epoch

    def add_execution(self, pipeline_name: str, run_id: str, node: str, state: int,
                      examples: Optional[tuple[str, int]] = None,
                      model_uri: Optional[str] = None) -> None:
        """An execution of `node` in the run, with an `examples` (uri, span) or `model`
        output as CsvExampleGen and Trainer write them."""
        execution_type = self.store.put_execution_type(metadata_store_pb2.ExecutionType(
            name=f"tfx.components.{node}"))
        artifacts, keys = [], []
        if examples:
            artifact = metadata_store_pb2.Artifact(type_id=self._examples_type,
                                                   uri=examples[0])
            artifact.properties["span"].int_value = examples[1]
            artifact.properties["split_names"].string_value = '["train", "eval"]'
            artifacts.append(artifact)
            keys.append("examples")
        if model_uri:
            artifacts.append(metadata_store_pb2.Artifact(type_id=self._model_type,
                                                         uri=model_uri))
            keys.append("model")
        [execution_id] = self.store.put_executions([metadata_store_pb2.Execution(
            type_id=execution_type, last_known_state=state)])
        artifact_ids = self.store.put_artifacts(artifacts) if artifacts else []
        events = []
        for artifact_id, key in zip(artifact_ids, keys):
            event = metadata_store_pb2.Event(artifact_id=artifact_id, execution_id=execution_id,
                                             type=metadata_store_pb2.Event.OUTPUT)
            event.path.steps.add().key = key
            event.path.steps.add().index = 0
            events.append(event)
        if events:
            self.store.put_events(events)
        self.store.put_attributions_and_associations(
            [metadata_store_pb2.Attribution(context_id=self._context(kind, name),
                                            artifact_id=artifact_id)
             for artifact_id in artifact_ids
             for kind, name in (("pipeline_run", run_id), ("node", f"{pipeline_name}.{node}"))],
            [metadata_store_pb2.Association(context_id=self._context(kind, name),
                                            execution_id=execution_id)
             for kind, name in (("pipeline", pipeline_name), ("pipeline_run", run_id),
                                ("node", f"{pipeline_name}.{node}"))])
