"""`mlops kfp compile`: the one pipeline, compiled to a package open-source KFP 2.x can run.

TFX's `KubeflowV2DagRunner` compiles `builder.create_pipeline(config)` (no second copy of
the wiring), loaded with the config's `kubeflow` profile. The package is then made fit
for open-source Kubeflow Pipelines rather than Vertex AI:

- a bare `PipelineSpec` in YAML, schema 2.1.0 (`use_pipeline_spec_2_1`): the only form
  `kfp.Client.upload_pipeline` and the API server accept, and the only one whose
  container arguments carry the inputs spec TFX's entrypoint needs for exec properties;
  `defaultPipelineRoot` from the profile, as the bare spec has no runtime config;
- every container runs `pipeline.kubeflow.entrypoint` (TFX's entrypoint, repaired for
  what KFP's launcher hands it);
- what KFP cannot run is refused here, with the reason, instead of at run creation: any
  executor that is not a container or importer (a TFX `Resolver`), and task names Argo
  refuses (`^[a-zA-Z0-9][-a-zA-Z0-9]*$`);
- caching per task from `pipeline.enable_cache`, except for the tasks that read state
  KFP's cache key cannot see (new span files, the serving directory): never cached;
- `kubeflow.volumes` become PersistentVolumeClaim mounts in the Kubernetes platform spec,
  the second YAML document, as `kfp-kubernetes` writes them (`pvcMount`);
- `kubeflow.env` goes into every executor's container spec (`container.env`, name and
  value), which the driver copies into the pod (2.0.5 and 2.5.0 `driver.go`
  `makePodSpecPatch`); `kubeflow.secrets` become `secretAsEnv` (keys as environment
  variables) and `secretAsVolume` (the Secret as files at a mount path) beside the
  `pvcMount`s, which the driver adds to the pod (`extendPodSpecPatch`). Every field written
  is one backend 2.0.5's driver knows (`package.check_platform_spec` checks the file).
"""
from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import yaml
from google.protobuf import json_format
from kfp.compiler import pipeline_spec_builder
from kfp.kubernetes import kubernetes_executor_config_pb2
from kfp.pipeline_spec import pipeline_spec_pb2

from components import serving_baseline
from pipeline.definition import builder
from pipeline.definition.config import KUBEFLOW, PipelineConfig, SecretMount, VolumeMount
from pipeline.errors import UsageError
from pipeline.kubeflow import package as package_lib

SCHEMA_VERSION = "2.1.0"
ENTRYPOINT = ("python", "-m", "pipeline.kubeflow.entrypoint")
# Argo's DAG task name rule (KFP uses the component id as the task name), with its first
# character a letter: Argo refuses a name that begins with a digit in a DAG that uses
# `depends` (workflow/validate/validate.go `validateDAG`), and KFP's compiled DAG always does.
TASK_NAME = re.compile(r"^[a-zA-Z][-a-zA-Z0-9]*$")
# Read what no KFP cache key sees: files added under `data.input_base`, the served version.
NEVER_CACHED = (builder.EXAMPLE_GEN_ID, serving_baseline.COMPONENT_ID)
RUNNABLE_EXECUTORS = ("container", "importer")


class CompileError(UsageError):
    """The pipeline, as configured, would not run on Kubeflow; the message says why."""


@dataclasses.dataclass(frozen=True)
class Package:
    """What `compile_package` wrote, for `mlops kfp compile` to report: its tasks, those
    never cached, which tasks mount each volume claim and which get each Secret."""

    path: Path
    tasks: tuple[str, ...]
    uncached: tuple[str, ...]
    mounts: dict[str, tuple[str, ...]]  # claim -> tasks that mount it
    secrets: dict[str, tuple[str, ...]] = dataclasses.field(
        default_factory=dict)  # Secret -> tasks that get it (as env or files)


def compile_package(config: PipelineConfig, output: Optional[str] = None) -> Package:
    """Compiles the pipeline and writes the package to `output` (default: the config's).

    Raises:
        CompileError: the config was not loaded with the kubeflow profile, a component id
            is not a valid task name, a volume or Secret names an unknown component, or
            TFX compiled an executor KFP cannot run.
        PackageError: the written platform spec uses a field KFP backend 2.0.5 does not
            know (`package.check_platform_spec`; not from the config's keys).
    """
    if config.profile != KUBEFLOW:
        raise CompileError("load the config with the kubeflow profile "
                           "(load_config(..., profile='kubeflow'))")
    pipeline = builder.create_pipeline(config)
    task_names = [component.id for component in pipeline.components]
    _check_task_names(task_names)
    spec = _compile(pipeline, config.kubeflow.image)
    spec.default_pipeline_root = config.pipeline.root
    _check_executors(spec)
    uncached = _set_caching(spec, config.pipeline.enable_cache)
    _set_env(spec, config.kubeflow.env)
    platform, mounts, secrets = _platform_spec(spec, config.kubeflow.volumes,
                                               config.kubeflow.secrets, task_names)
    path = Path(output or config.kubeflow.output_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline_spec_builder.write_pipeline_spec_to_file(
        spec, f"{config.pipeline.name}: validated data in, blessed models out "
              f"(compiled by mlops kfp compile)", platform, str(path))
    package_lib.check_platform_spec(path)  # as the API server will read it
    return Package(path=path, tasks=tuple(task_names), uncached=uncached, mounts=mounts,
                   secrets=secrets)


def _compile(pipeline, image: str) -> pipeline_spec_pb2.PipelineSpec:
    from tfx import v1 as tfx

    with tempfile.TemporaryDirectory() as folder:
        runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
                default_image=image, default_commands=list(ENTRYPOINT),
                use_pipeline_spec_2_1=True),
            output_dir=folder, output_filename="pipeline.yaml")
        runner.run(pipeline)
        document = yaml.safe_load(Path(folder, "pipeline.yaml").read_text())
    return json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())


def _check_task_names(names: Iterable[str]) -> None:
    bad = [name for name in names if not TASK_NAME.match(name)]
    if bad:
        raise CompileError(f"component ids {bad} are not valid Kubeflow task names (Argo "
                           f"needs {TASK_NAME.pattern}: letters, digits and '-', a letter "
                           "first): rename them with .with_id()")


def _check_executors(spec: pipeline_spec_pb2.PipelineSpec) -> None:
    if spec.schema_version != SCHEMA_VERSION:
        raise CompileError(f"TFX wrote schema {spec.schema_version}; KFP needs {SCHEMA_VERSION}")
    deployment = spec.deployment_spec["executors"]
    for label, executor in deployment.items():
        kinds = set(executor.keys())
        if not kinds & set(RUNNABLE_EXECUTORS):
            raise CompileError(f"executor {label} is a {', '.join(sorted(kinds))}: "
                               "open-source KFP runs only container and importer executors")


def _set_caching(spec: pipeline_spec_pb2.PipelineSpec, enable_cache: bool) -> tuple[str, ...]:
    uncached = []
    for name, task in spec.root.dag.tasks.items():
        task.caching_options.enable_cache = enable_cache and name not in NEVER_CACHED
        if not task.caching_options.enable_cache:
            uncached.append(name)
    return tuple(sorted(uncached))


def _set_env(spec: pipeline_spec_pb2.PipelineSpec, env: dict[str, str]) -> None:
    """`kubeflow.env` into every container executor's `env` ([{name, value}]), after what
    TFX wrote there (nothing, in TFX 1.16) minus the names the config sets."""
    if not env:
        return
    for executor in spec.deployment_spec["executors"].values():
        if "container" not in executor.keys():
            continue
        container = executor["container"]
        kept = [dict(e) for e in (container["env"] if "env" in container.keys() else [])
                if e["name"] not in env]
        container["env"] = kept + [{"name": name, "value": value}
                                   for name, value in env.items()]


def _platform_spec(spec: pipeline_spec_pb2.PipelineSpec, volumes: list[VolumeMount],
                   secrets: list[SecretMount], task_names: list[str]
                   ) -> tuple[pipeline_spec_pb2.PlatformSpec, dict[str, tuple[str, ...]],
                              dict[str, tuple[str, ...]]]:
    """Each executor's KubernetesExecutorConfig: `pvcMount` per volume, `secretAsVolume` and
    `secretAsEnv` per Secret, for the tasks each names (default: every task); the PVC
    mounts, then the Secrets in config order, as the driver adds them to the pod."""
    per_executor: dict[str, kubernetes_executor_config_pb2.KubernetesExecutorConfig] = {}

    def configs(key: str, components: Optional[list[str]]) -> Iterable[
            tuple[str, kubernetes_executor_config_pb2.KubernetesExecutorConfig]]:
        unknown = sorted(set(components or ()) - set(task_names))
        if unknown:
            raise CompileError(f"{key}.components: unknown component(s) {unknown}; the "
                               f"pipeline has {task_names}")
        for task in components or task_names:
            label = spec.root.dag.tasks[task].component_ref.name
            executor = spec.components[label].executor_label
            yield task, per_executor.setdefault(
                executor, kubernetes_executor_config_pb2.KubernetesExecutorConfig())

    mounts: dict[str, tuple[str, ...]] = {}
    for index, volume in enumerate(volumes):
        tasks = []
        for task, config in configs(f"kubeflow.volumes[{index}]", volume.components):
            config.pvc_mount.add(constant=volume.claim, mount_path=volume.mount_path)
            tasks.append(task)
        mounts[volume.claim] = tuple(tasks)
    given: dict[str, list[str]] = {}
    for index, item in enumerate(secrets):
        for task, config in configs(f"kubeflow.secrets[{index}]", item.components):
            if item.mount_path is not None:
                config.secret_as_volume.add(secret_name=item.secret, mount_path=item.mount_path)
            if item.env:
                config.secret_as_env.add(secret_name=item.secret, key_to_env=[
                    kubernetes_executor_config_pb2.SecretAsEnv.SecretKeyToEnvMap(
                        secret_key=key, env_var=name) for name, key in item.env.items()])
            tasks = given.setdefault(item.secret, [])
            if task not in tasks:
                tasks.append(task)
    platform = pipeline_spec_pb2.PlatformSpec()
    for executor, config in sorted(per_executor.items()):
        pipeline_spec_builder.merge_platform_specs(
            platform, pipeline_spec_builder.platform_config_to_platform_spec(
                {"kubernetes": json_format.MessageToDict(config)}, executor))
    return platform, mounts, {secret: tuple(tasks) for secret, tasks in given.items()}
