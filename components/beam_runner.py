"""Whether a Beam component's work would leave this process: the rule for in-process paths.

With Beam's direct runner and one worker (this project's default, locally and in a Kubeflow
step), a Beam pipeline runs every stage inside the executor's own process; on the data of a
local run its fixed costs (pipeline construction, per-stage set-up, pickling) outweigh the
work. Executors here then do the same work directly, and keep TFX's Beam path for any
runner that spreads work out (Dataflow, Flink, Spark, or several direct workers).
"""
from __future__ import annotations

from apache_beam.options import pipeline_options

_DIRECT_RUNNERS = {None, "DirectRunner", "direct", "SwitchingDirectRunner",
                   "BundleBasedDirectRunner"}


def beam_would_distribute(beam_pipeline_args: list[str]) -> bool:
    """True when the Beam options name a runner that spreads work beyond this process."""
    options = pipeline_options.PipelineOptions(beam_pipeline_args)
    runner = options.view_as(pipeline_options.StandardOptions).runner
    workers = options.view_as(pipeline_options.DirectOptions).direct_num_workers
    return runner not in _DIRECT_RUNNERS or workers != 1
