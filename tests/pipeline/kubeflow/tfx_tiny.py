"""Two tiny TFX Python-function components and the KFP v2 packages TFX compiles from them.

The emulator tests run these packages exactly as `KubeflowV2DagRunner` writes them; the task
processes import this module by its executor class path, so it must stay importable from
the repository root (the tests put the root on the tasks' PYTHONPATH).
"""
from pathlib import Path  # no `from __future__ import annotations`: TFX reads real hints
from typing import Optional, Sequence

from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.dsl.io import fileio
from tfx.types.standard_artifacts import Examples


@component
def Producer(examples: OutputArtifact[Examples], text: Parameter[str] = "hello"):  # noqa: N802
    """Writes `text` into its output artifact, in a subfolder, through TFX's file I/O (a
    bucket's folders included, as TFX's own components write)."""
    fileio.makedirs(f"{examples.uri}/Split-train")
    with fileio.open(f"{examples.uri}/Split-train/data.txt", "w") as out:
        out.write(text)


@component
def Consumer(examples: InputArtifact[Examples]):  # noqa: N802
    """Reads the producer's file back."""
    with fileio.open(f"{examples.uri}/Split-train/data.txt") as source:
        print(source.read())


def compile_package(folder: Path, *, producer_id: str = "Producer",
                    with_resolver: bool = False,
                    entrypoint: Optional[Sequence[str]] = None,
                    with_consumer: bool = True) -> Path:
    """Producer -> Consumer (optionally plus a latest-artifact Resolver, or the producer
    alone), compiled as the bare PipelineSpec YAML that `kfp.Client().upload_pipeline`
    takes; each task runs TFX's stock entrypoint, or the command `entrypoint`."""
    producer = Producer(text="hi").with_id(producer_id)
    nodes = [producer] + ([Consumer(examples=producer.outputs["examples"])]
                          if with_consumer else [])
    if with_resolver:
        nodes.append(tfx.dsl.Resolver(
            strategy_class=tfx.dsl.experimental.LatestArtifactStrategy,
            examples=tfx.dsl.Channel(type=Examples)).with_id("latest-examples"))
    pipeline = tfx.dsl.Pipeline(pipeline_name="tiny", pipeline_root=str(folder / "unused"),
                                components=nodes)
    name = (f"{producer_id}{'-resolver' if with_resolver else ''}"
            f"{'-ours' if entrypoint else ''}{'' if with_consumer else '-alone'}.yaml")
    config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
        default_image="tiny:1", use_pipeline_spec_2_1=True,
        default_commands=list(entrypoint) if entrypoint else None)
    tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=config, output_dir=str(folder), output_filename=name).run(pipeline)
    return folder / name
