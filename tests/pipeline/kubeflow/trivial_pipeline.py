"""A valid KFP package for the client tests, made by the kfp SDK's own compiler: a bare
PipelineSpec, schema 2.1.0, named like the repo's pipeline, with two typed parameters.

No `from __future__ import annotations` here: kfp reads the annotations as types.
"""
from pathlib import Path

from kfp import compiler, dsl


@dsl.component(base_image="python:3.10-slim")
def say(message: str, times: int) -> str:
    return message * times


@dsl.pipeline(name="chicago-taxi")
def trivial_pipeline(message: str = "hello", times: int = 1):
    say(message=message, times=times)


# A second YAML document as `mlops kfp compile` writes for `kubeflow.volumes` (and
# kfp-kubernetes for a PVC mount): the Kubernetes platform spec.
PLATFORM_SPEC = """\
---
platforms:
  kubernetes:
    deploymentSpec:
      executors:
        exec-say:
          pvcMount:
          - constant: serving-models
            mountPath: /mnt/serving
"""


def compile_to(path: Path, platform_spec: bool = False) -> Path:
    """The package at `path`; with `platform_spec`, a volume mount document after it."""
    compiler.Compiler().compile(trivial_pipeline, str(path))
    if platform_spec:
        path.write_text(path.read_text() + PLATFORM_SPEC)
    return path
