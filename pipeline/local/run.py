"""Runs the pipeline on this machine: LocalDagRunner, ML Metadata in SQLite, caching on.

Shared by `mlops run` and by `pipeline/local_runner.py` (the file the TFX CLI executes),
so both take the same config and produce the same report.
"""
from __future__ import annotations

import datetime
import gc
import os
from typing import Optional

from pipeline.definition.config import PipelineConfig, load_config
from pipeline.runtime import process, quiet


def metadata_connection_config(config: PipelineConfig):
    """ML Metadata in the SQLite file `pipeline.metadata_path` (its folder created), which
    TFX's cache and `mlops history` / `lineage` read."""
    from tfx import v1 as tfx

    os.makedirs(os.path.dirname(config.pipeline.metadata_path), exist_ok=True)
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(
        config.pipeline.metadata_path)


def _freezing_heap(on_node: Optional[quiet.NodeListener]) -> quiet.NodeListener:
    """A node listener that first moves everything alive into the GC's permanent generation.

    A run holds millions of long-lived objects (TensorFlow, TFX, Beam and their caches),
    which every full collection walks again, seconds of a cold run (bench/pipeline; figures
    in docs/performance.md). Objects alive when a component starts (imports, the previous
    component's leftovers) are frozen, so collections look only at what the running
    component creates. The run is one
    process that ends with the pipeline, so what freezing keeps alive is returned then.
    """
    def listener(node_id: str, event: str) -> None:
        if event == "running":
            gc.freeze()
        if on_node is not None:
            on_node(node_id, event)

    return listener


def run_pipeline(config: PipelineConfig, verbose: bool = False,
                 on_node: Optional[quiet.NodeListener] = None):
    """Runs one pipeline run and returns its report (also when a component failed).

    `on_node(node_id, event)` is called with "running", "cached" and "finished" as the
    runner moves on, for progress displays.
    """
    from pipeline.definition import builder
    from pipeline.runtime import beam_tuning
    from pipeline.records import store, summary

    beam_tuning.apply()
    connection = metadata_connection_config(config)
    pipeline = builder.create_pipeline(
        config, metadata_connection_config=connection)
    run_id = datetime.datetime.now().isoformat()  # the form LocalDagRunner gives run ids
    error: Optional[BaseException] = None
    with quiet.node_events(_freezing_heap(on_node)):
        try:
            _runner_with_run_id(run_id).run(pipeline)
        except Exception as exc:  # the report says which component failed and why
            error = exc
    report = summary.collect(config, connection, run_id=run_id, error=error)
    store.save(config, report)  # for mlops history, lineage and the HTML report
    return report


def _runner_with_run_id(run_id: str):
    """A LocalDagRunner whose run takes `run_id`, so the report reads this run and not,
    when two runs share the metadata store, whichever started last."""
    from tfx import v1 as tfx
    from tfx.dsl.compiler import constants
    from tfx.orchestration.portable import runtime_parameter_utils

    class RunnerWithRunId(tfx.orchestration.LocalDagRunner):
        def run_with_ir(self, pipeline, run_options=None):
            # LocalDagRunner binds its own id only where the parameter is still unbound
            runtime_parameter_utils.substitute_runtime_parameter(
                pipeline, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
            return super().run_with_ir(pipeline, run_options)

    return RunnerWithRunId()


def main_for_tfx_cli() -> int:
    """What `tfx run create --engine local` executes (via local_runner.py)."""
    verbose = os.environ.get("MLOPS_VERBOSE", "") not in ("", "0")
    process.prepare(verbose)
    from pipeline.records import summary

    config = load_config()
    if quiet.is_tfx_cli_compile():
        # `tfx pipeline create` only records the pipeline: build it, do not run it.
        from tfx import v1 as tfx

        from pipeline.definition import builder

        tfx.orchestration.LocalDagRunner().run(builder.create_pipeline(
            config, metadata_connection_config=metadata_connection_config(config)))
        return 0
    report = run_pipeline(config, verbose=verbose)
    summary.render(report)
    return report.exit_code
