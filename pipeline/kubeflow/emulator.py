"""Runs a compiled KFP v2 package on this machine the way open-source KFP's v2 backend does.

Why: a package that compiles can still be refused or fail on a cluster, and KFP's own
`kfp.local` cannot run container components. Users run a package through this module with
`mlops kfp run --local` (`local_run.py`) before uploading it; the tests and `bench/kubeflow`
use it to show that the package runs on open-source Kubeflow Pipelines 2.x *as compiled*.
It executes the package with the behaviour of KFP's v2 backend, written from KFP's Go
sources at tags 2.0.5 and 2.5.0 (kubeflow/pipelines, `backend/src/v2/...`), not from TFX's
own test helpers:

- run creation: the API server's checks (`apiserver/template/v2_template.go`
  `NewV2SpecTemplate`, `validatePipelineJobInputs`), the Argo compiler (`compiler/visitor.go`
  `pipelineDFS.dfs`, `compiler/argocompiler/*.go`) and Argo's own workflow validation of DAG
  task names; what they refuse raises `PipelineRejected` with their wording;
- per task, the container driver (`driver/driver.go` `Container`, `resolveInputs`,
  `provisionOutputs`, `extendPodSpecPatch`/`makeVolumeMountPatch`: PVC mounts, and
  Secrets as environment variables or files, which the kubelet resolves) and the launcher
  (`component/launcher_v2.go` `Execute`, `executeV2`, `getPlaceholders`,
  `collectOutputParameters`, `uploadOutputArtifacts`, `getExecutorOutputFile`);
- a real ML Metadata store (`ml_metadata`, SQLite) written as `metadata/client.go` writes it
  (`GetPipeline`, `CreateExecution`, `RecordArtifact`, `PublishExecution`), and read back as it
  reads it (`GetOutputArtifactsByExecutionId`, whose artifacts carry `Schema: "" // TODO`,
  so downstream tasks receive untyped artifacts named by their MLMD id).

Each task runs as its own OS process (its "pod") in a private mount namespace, where the
pod-local paths the launcher uses (`/tmp/kfp_outputs/output_metadata.json`,
`/tmp/kfp/outputs/<parameter>`), the task's PVC mounts and its Secret volumes are bind
mounts of folders this module reads afterwards (a Secret's stand-in is a folder holding one
file per key, as Kubernetes mounts one, but not read-only here). Tasks run as Argo runs
KFP's DAG: each as soon as its upstream tasks have succeeded, beside the others that are
ready, and nothing new starts after a task fails (Argo's DAG `failFast`, true by default).

The pipeline root is a bucket (gs://, s3://; KFP accepts only those and minio://,
`objectstore.ParseBucketConfig`), reached with this process's credentials and endpoints as
the launcher reaches it with the pod's: the launcher's copies of every input into the pod
before the command and of its outputs after it are emulated key by key
(`artifact_copies.py`), so what breaks a cluster's copies breaks here. Or it is a local
folder, which KFP has no equivalent of: then an artifact's local path is its URI and
nothing is copied (quicker, for packages whose tasks write only local paths).

Deliberate differences from a cluster, each named where it happens: the cache is looked up
in MLMD (KFP asks its API server's task table); features KFP has but TFX specs here do not
use raise `NotEmulated` instead of guessing.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Union

import yaml
from google.protobuf import json_format, struct_pb2
from kfp.pipeline_spec import pipeline_spec_pb2 as pb
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline.kubeflow import artifact_copies, object_store, warm_pods

BACKENDS = ("2.0.5", "2.5.0")
SCHEMA_VERSION = "2.1.0"  # apiserver/template/template.go SCHEMA_VERSION_2_1_0
POD_OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"  # launcher_v2.go OutputMetadataFilepath
POD_PARAMETER_DIR = "/tmp/kfp/outputs"  # driver.go provisionOutputs
LOGS_OUTPUT = "executor-logs"  # driver.go provisionOutputs, with --publish_logs=true
# Argo's workflowFieldNameFmt / workflowFieldNameErrMsg / workflowFieldMaxLength (validate.go).
_ARGO_NAME = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]*$")
_ARGO_NAME_MAX = 128
_ARGO_NAME_ERROR = ("name must consist of alpha-numeric characters or '-', and must start "
                    "with an alpha-numeric character (e.g. My-name1-2, 123-NAME)")
_LOG_TAIL_LINES = 40
_UNSHARE = shutil.which("unshare") or "unshare"  # util-linux: a private mount namespace
_SH = shutil.which("sh") or "/bin/sh"

TaskListener = Callable[[str, str], None]  # (task, "running" | "cached" | "finished" | "failed")
Json = dict[str, Any]


class PipelineRejected(Exception):
    """KFP refuses the package or its parameters when the run is created (nothing runs)."""


class NotEmulated(Exception):
    """KFP would run this, but this emulation does not model it (so it does not guess)."""


class _TaskError(Exception):
    """A driver or launcher failure: the task fails, as its pod would."""


# ---------------------------------------------------------------------------------------
# Results


@dataclass
class TaskRun:
    """One task of the run, as KFP's UI and MLMD would describe it.

    `executor_input` is the ExecutorInput the task received through `{{$}}`; `outputs` are
    its published output artifacts as a downstream task receives them (MLMD id as `name`,
    untyped); `log` is the path of its stdout+stderr; `error` says why it failed and ends
    with the tail of its log.
    """

    name: str
    state: str  # "SUCCEEDED", "FAILED", "CACHED" or "SKIPPED" (not started after a failure)
    seconds: float = 0.0
    executor_input: Json = field(default_factory=dict)
    outputs: dict[str, list[Json]] = field(default_factory=dict)
    output_parameters: Json = field(default_factory=dict)
    execution_id: Optional[int] = None
    log: str = ""
    error: str = ""
    copied_in: int = 0  # bytes the launcher downloaded from the bucket into the pod
    copied_out: int = 0  # bytes it uploaded from the pod's local paths


@dataclass
class EmulatedRun:
    """The run: "SUCCEEDED" when every task succeeded or was cached, else "FAILED"."""

    run_id: str
    state: str
    tasks: list[TaskRun]
    seconds: float
    run_root: str = ""  # <pipeline root>/<pipeline name>/<run id>

    def task(self, name: str) -> TaskRun:
        """The task of that name (its pipeline task key), for checks on one task's outcome.

        Raises:
            KeyError: the run has no such task (the message lists those it has).
        """
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"no task {name!r} in run {self.run_id}; tasks: "
                       f"{', '.join(t.name for t in self.tasks)}")


ResultListener = Callable[[TaskRun], None]


# ---------------------------------------------------------------------------------------
# Loading and run-creation checks


@dataclass(frozen=True)
class Package:
    """A loaded package: the PipelineSpec, and each executor's Kubernetes config (volume
    mounts and the like) from the PlatformSpec."""

    spec: pb.PipelineSpec
    kubernetes: Mapping[str, Json]  # executor label -> KubernetesExecutorConfig (JSON form)


def load_package(path: Union[str, Path]) -> Package:
    """Reads the YAML package as the API server does (`NewV2SpecTemplate`).

    The first document is the bare PipelineSpec (unknown fields are errors, as for Go's
    protojson); an optional document holding `platforms.kubernetes` is the PlatformSpec.

    Raises:
        PipelineRejected: the PipelineSpec or PlatformSpec has a field or value the protos
            do not allow, or no document is a PipelineSpec (the API server's messages).
        OSError: the file cannot be read.
        yaml.YAMLError: the file is not YAML.
    """
    spec: Optional[pb.PipelineSpec] = None
    platform = pb.PlatformSpec()
    for document in yaml.safe_load_all(Path(path).read_text()):
        if not document:
            continue
        if "pipelineInfo" in document and "root" in document:
            try:
                spec = json_format.ParseDict(document, pb.PipelineSpec())
            except json_format.ParseError as error:
                raise PipelineRejected(f"invalid v2 pipeline spec: {error}") from None
        elif "kubernetes" in (document.get("platforms") or {}):
            try:
                platform = json_format.ParseDict(document, pb.PlatformSpec())
            except json_format.ParseError as error:
                raise PipelineRejected(
                    f"cannot unmarshal platform specific configs: {error}") from None
    if spec is None:
        raise PipelineRejected("no pipeline spec is provided")
    executors = platform.platforms["kubernetes"].deployment_spec.executors
    return Package(spec, {label: json_format.MessageToDict(config)
                          for label, config in executors.items()})


def check_run_creation(package: Package, backend: str) -> None:
    """What the API server, KFP's Argo compiler and Argo refuse when a run is created.

    Raises:
        PipelineRejected: the schemaVersion is not 2.1.0, the pipeline name is empty, a
            task's executor is missing or neither a container nor an importer, or a
            generated Argo task name is too long or not a valid name (the server's own
            message, for each).
    """
    spec = package.spec
    if spec.schema_version != SCHEMA_VERSION:
        raise PipelineRejected("KFP only supports schema version 2.1.0, but the pipeline spec "
                               f"has version {spec.schema_version}")
    if not spec.pipeline_info.name:
        raise PipelineRejected("invalid v2 pipeline spec: name is empty")
    _check_executors(spec)
    _check_argo_task_names(spec, backend)


def _check_executors(spec: pb.PipelineSpec) -> None:
    """`visitor.go` `pipelineDFS.dfs` visits every task's component (tasks in sorted order)
    before the DAG itself and accepts only container and importer executors. It fails first,
    so the Argo compiler's own "resolver executors not implemented" (`dag.go` `task`) is not
    the message users get for a TFX Resolver.
    """
    executors = _executors(spec)
    for key in sorted(spec.root.dag.tasks):
        name = spec.root.dag.tasks[key].component_ref.name
        label = spec.components[name].executor_label
        if not label:
            continue
        if label not in executors:
            raise PipelineRejected(f'Failed to compile job: error processing component '
                                   f'name="{name}": executor(label="{label}") not found in '
                                   "deployment config")
        if not set(executors[label]) & {"container", "importer"}:
            raise PipelineRejected(
                f'Failed to compile job: error processing component name="{name}": '
                f'executor(label="{label}"): non-container and non-importer executor not '
                "implemented")


def _check_argo_task_names(spec: pb.PipelineSpec, backend: str) -> None:
    """Argo's `validateDAG` checks the names of the DAG tasks KFP generates: for each KFP task
    `<task>-driver` and `<task>` (`argocompiler/dag.go` `task`); the message is Argo's, with
    the task's index as listed (Argo 3.5, in 2.5.0, lists them in dependency order).
    """
    tasks = spec.root.dag.tasks
    order = _task_order(spec) if backend == "2.5.0" else sorted(tasks)
    names = [argo for key in order for argo in (f"{key}-driver", key)]
    for index, name in enumerate(names):
        problems = []
        if len(name) > _ARGO_NAME_MAX:
            problems.append(f"must be no more than {_ARGO_NAME_MAX} characters")
        if not _ARGO_NAME.match(name):
            problems.append(_ARGO_NAME_ERROR)
        if problems:
            raise PipelineRejected(
                f"Failed to validate workflow: templates.root.tasks[{index}].name: '{name}' "
                f"is invalid: {';'.join(problems)}")
    # then, task by task: every executor task `depends` on its driver, and in such a DAG
    # a name may not begin with a digit (validate.go `validateDAG`)
    for name in names:
        if name[0].isdigit():
            raise PipelineRejected(
                f"Failed to validate workflow: templates.root.tasks.{name} name cannot begin "
                "with a digit when using either 'depends' or 'dependencies'")


def check_not_emulated(package: Package, backend: str) -> None:
    """Features KFP runs that this emulation does not model; refused before anything runs.

    Raises:
        NotEmulated: a task uses a nested DAG, an importer, a condition, an exit handler,
            a loop, a parameter expression selector, (backend 2.0.5) a PVC named by a
            parameter, or a `secretAsEnv`/`secretAsVolume` field other than `secretName`,
            `keyToEnv` and `mountPath` (2.5.0's `secretNameParameter`, `optional`).
    """
    spec = package.spec
    executors = _executors(spec)
    for key, task in spec.root.dag.tasks.items():
        component = spec.components[task.component_ref.name]
        what = _unmodelled_feature(task, component, executors.get(component.executor_label, {}))
        kubernetes = package.kubernetes.get(component.executor_label, {})
        mounts = kubernetes.get("pvcMount", [])
        if backend == "2.0.5" and any("pvcNameParameter" in mount for mount in mounts):
            what = "pvcNameParameter, which backend 2.0.5's kubernetes_platform predates"
        what = what or _unmodelled_secret_field(kubernetes)
        if what:
            raise NotEmulated(f"task {key!r} uses {what}; the emulation does not model it")


def _unmodelled_feature(task: pb.PipelineTaskSpec, component: pb.ComponentSpec,
                        executor: Json) -> Optional[str]:
    if component.HasField("dag"):
        return "a nested DAG"
    if "container" not in executor:
        return "an importer executor"
    if task.trigger_policy.condition:
        return f"triggerPolicy.condition {task.trigger_policy.condition!r} (CEL)"
    if task.trigger_policy.strategy:
        return "an exit handler (triggerPolicy.strategy)"
    if task.HasField("parameter_iterator") or task.HasField("artifact_iterator"):
        return "a loop (iterator)"
    if any(p.parameter_expression_selector for p in task.inputs.parameters.values()):
        return "a parameterExpressionSelector (CEL)"
    return None


# The Secret fields modelled (`_mount_pairs`, `_with_secret_env`): a Secret named by
# `secretName`, as in backend 2.0.5's kubernetes_platform.
_SECRET_FIELDS = {"secretAsEnv": {"secretName", "keyToEnv"},
                  "secretAsVolume": {"secretName", "mountPath"}}


def _unmodelled_secret_field(kubernetes: Json) -> Optional[str]:
    for kind, modelled in _SECRET_FIELDS.items():
        for item in kubernetes.get(kind, []):
            extra = sorted(set(item) - modelled)
            if extra:
                return f"{kind}.{extra[0]}"
    return None


def runtime_parameters(spec: pb.PipelineSpec,
                       given: Mapping[str, Any]) -> dict[str, struct_pb2.Value]:
    """The run's parameters as the root DAG receives them.

    `v2_template.go` `validatePipelineJobInputs` refuses missing, mistyped and unknown
    parameters; `argocompiler/argo.go` `Compile` then fills defaults (null when optional).

    Raises:
        PipelineRejected: a required parameter has no value, a value is not of its
            parameter's type, or a value names no parameter (the server's messages).
    """
    definitions = spec.root.input_definitions.parameters
    values = {name: json_format.ParseDict(value, struct_pb2.Value())
              for name, value in given.items()}
    for name, definition in definitions.items():
        if name in values:
            _check_parameter_type(name, definition.parameter_type, values[name])
        elif not definition.is_optional and not definition.HasField("default_value"):
            raise PipelineRejected(f"invalid pipeline job inputs: parameter {name} is not "
                                   "optional, yet has neither default value nor user provided "
                                   "value")
    extra = sorted(set(values) - set(definitions))
    if extra:
        raise PipelineRejected("invalid pipeline job inputs: parameter(s) provided are not "
                               f"required by pipeline: {', '.join(extra)}")
    for name, definition in definitions.items():
        if name not in values:
            values[name] = (definition.default_value if definition.HasField("default_value")
                            else struct_pb2.Value(null_value=struct_pb2.NULL_VALUE))
    return values


_PARAMETER_KINDS = {pb.ParameterType.NUMBER_DOUBLE: "number_value",
                    pb.ParameterType.NUMBER_INTEGER: "number_value",
                    pb.ParameterType.STRING: "string_value",
                    pb.ParameterType.BOOLEAN: "bool_value",
                    pb.ParameterType.LIST: "list_value",
                    pb.ParameterType.STRUCT: "struct_value"}
_PARAMETER_WORDS = {pb.ParameterType.NUMBER_DOUBLE: ("double or integer", "number"),
                    pb.ParameterType.NUMBER_INTEGER: ("double or integer", "number"),
                    pb.ParameterType.STRING: ("string", "string"),
                    pb.ParameterType.BOOLEAN: ("bool", "bool"),
                    pb.ParameterType.LIST: ("list", "list"),
                    pb.ParameterType.STRUCT: ("struct", "struct")}


def _check_parameter_type(name: str, kind: int, value: struct_pb2.Value) -> None:
    if _PARAMETER_KINDS.get(kind) != value.WhichOneof("kind"):
        wanted, got = _PARAMETER_WORDS.get(kind, ("unknown", "unknown"))
        raise PipelineRejected(f"invalid pipeline job inputs: input parameter {name} requires "
                               f"type {wanted}, but the parameter value is not of {got} value "
                               "type")


# ---------------------------------------------------------------------------------------
# ML Metadata, as backend/src/v2/metadata/client.go writes and reads it


class _OneCallAtATime:
    """An ML Metadata store that the tasks running side by side call one at a time: one
    SQLite connection, which this process's threads must not use at once (on a cluster
    each pod's driver and launcher are clients of the metadata gRPC server instead)."""

    def __init__(self, store: metadata_store.MetadataStore):
        self._store = store
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not callable(method):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)
        return call


class _Metadata:
    """The subset of KFP's MLMD client the driver and launcher use, on a real store."""

    def __init__(self, path: Union[str, Path], backend: str):
        config = mlmd.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        self.store = _OneCallAtATime(metadata_store.MetadataStore(config))
        self.backend = backend
        self.contexts: list[mlmd.Context] = []

    def open_run(self, pipeline: str, run_id: str, run_root: str) -> None:
        """`GetPipeline`: a pipeline context, a run context child of it (with the run's root)."""
        run_properties = {"namespace": "", "resource_name": "run-resource",
                          "pipeline_root": run_root}
        if self.backend == "2.5.0":
            run_properties["store_session_info"] = _SESSION_INFO
        parent = self._context("system.Pipeline", pipeline, {})
        child = self._context("system.PipelineRun", run_id, run_properties)
        if not self.store.get_parent_contexts_by_context(child.id):
            self.store.put_parent_contexts([mlmd.ParentContext(child_id=child.id,
                                                               parent_id=parent.id)])
        self.contexts = [parent, child]

    def _context(self, type_name: str, name: str, properties: Mapping[str, str]) -> mlmd.Context:
        found = self.store.get_context_by_type_and_name(type_name, name)
        if found is not None:
            return found
        type_id = self.store.put_context_type(mlmd.ContextType(name=type_name))
        context = mlmd.Context(type_id=type_id, name=name)
        for key, value in properties.items():
            context.custom_properties[key].string_value = value
        context.id = self.store.put_contexts([context])[0]
        return context

    def create_execution(self, type_name: str, task: str, inputs: Mapping[str, struct_pb2.Value],
                         input_artifacts: Mapping[str, list[int]], extra: Mapping[str, Any],
                         name: str = "") -> mlmd.Execution:
        """`CreateExecution`: RUNNING, task name, inputs, INPUT events keyed by input name."""
        execution = mlmd.Execution(
            type_id=self.store.put_execution_type(mlmd.ExecutionType(name=type_name)),
            last_known_state=mlmd.Execution.RUNNING)
        if name:
            execution.name = name
        properties = execution.custom_properties
        properties["display_name"].string_value = task
        properties["task_name"].string_value = task
        for key, value in extra.items():
            _set_mlmd_scalar(properties[key], value)
        properties["inputs"].struct_value.CopyFrom(struct_pb2.Struct(fields=dict(inputs)))
        events = [(None, mlmd.Event(artifact_id=artifact_id, type=mlmd.Event.INPUT,
                                    path=_event_path(key)))
                  for key, ids in input_artifacts.items() for artifact_id in ids]
        execution.id = self.store.put_execution(execution, events, self.contexts,
                                                reuse_context_if_already_exist=True)[0]
        return execution

    def publish(self, execution: mlmd.Execution, state: int,
                output_parameters: Optional[Mapping[str, struct_pb2.Value]] = None,
                outputs: Iterable[tuple[str, mlmd.Artifact]] = ()) -> None:
        """`PublishExecution`: final state, `outputs` parameters, OUTPUT events."""
        execution.last_known_state = state
        if output_parameters is not None:
            execution.custom_properties["outputs"].struct_value.CopyFrom(
                struct_pb2.Struct(fields=dict(output_parameters)))
        events = []
        for name, artifact in outputs:
            event = mlmd.Event(type=mlmd.Event.OUTPUT, path=_event_path(name))
            if artifact.id:
                event.artifact_id = artifact.id
                events.append((None, event))
            else:
                events.append((artifact, event))
        self.store.put_execution(execution, events, self.contexts,
                                 reuse_context_if_already_exist=True)

    def set_state(self, execution: mlmd.Execution, state: int) -> None:
        execution.last_known_state = state
        self.store.put_executions([execution])

    def record_artifact(self, output: str, runtime: pb.RuntimeArtifact) -> mlmd.Artifact:
        """`RecordArtifact`: type named by the schema title, metadata as custom properties,
        `display_name` (and on 2.5.0 `store_session_info`) when absent; state LIVE."""
        type_name = _schema_title(runtime.type)
        artifact = mlmd.Artifact(
            type_id=self.store.put_artifact_type(mlmd.ArtifactType(name=type_name)),
            uri=runtime.uri, state=mlmd.Artifact.LIVE)
        for key, value in runtime.metadata.fields.items():
            artifact.custom_properties[key].CopyFrom(_to_mlmd_value(key, value))
        properties = artifact.custom_properties
        if "display_name" not in properties:
            properties["display_name"].string_value = output
        if self.backend == "2.5.0" and "store_session_info" not in properties:
            properties["store_session_info"].string_value = _SESSION_INFO
        artifact.id = self.store.put_artifacts([artifact])[0]
        return artifact

    def output_artifacts(self, execution_id: int) -> dict[str, mlmd.Artifact]:
        """`GetOutputArtifactsByExecutionId`: the execution's OUTPUT artifacts by event key."""
        names = {event.artifact_id: event.path.steps[0].key
                 for event in self.store.get_events_by_execution_ids([execution_id])
                 if event.type == mlmd.Event.OUTPUT}
        return {names[a.id]: a for a in self.store.get_artifacts_by_id(list(names))}

    def execution(self, execution_id: int) -> mlmd.Execution:
        return self.store.get_executions_by_id([execution_id])[0]

    def cached_execution(self, fingerprint: str) -> Optional[mlmd.Execution]:
        """Stands in for the API server's cache lookup (`cacheutils` `GetExecutionCache`):
        the newest COMPLETE execution of this pipeline with the same fingerprint."""
        hits = [e for e in self.store.get_executions_by_context(self.contexts[0].id)
                if e.last_known_state == mlmd.Execution.COMPLETE
                and "cache_fingerprint" in e.custom_properties
                and e.custom_properties["cache_fingerprint"].string_value == fingerprint]
        return max(hits, key=lambda e: e.id, default=None)


# The session info the 2.5.0 root driver stores for a gs:// root with no provider config
# (`config/gcs.go` `ProvideSessionInfo`); the local root here stands in for such a bucket.
_SESSION_INFO = '{"Provider":"gs","Params":{"fromEnv":"true"}}'


def _event_path(key: str) -> mlmd.Event.Path:
    return mlmd.Event.Path(steps=[mlmd.Event.Path.Step(key=key)])


def _set_mlmd_scalar(target: mlmd.Value, value: Any) -> None:
    if isinstance(value, int):
        target.int_value = value
    else:
        target.string_value = str(value)


def _schema_title(schema: pb.ArtifactTypeSchema) -> str:
    """`launcher_v2.go` `getArtifactSchema` + `client.go` `SchemaToArtifactType`."""
    if schema.WhichOneof("kind") == "schema_title":
        return schema.schema_title
    if schema.WhichOneof("kind") == "instance_schema":
        title = (yaml.safe_load(schema.instance_schema) or {}).get("title", "")
        if title:
            return title
        raise _TaskError("No title specified")  # glog.Fatal in SchemaToArtifactType
    raise _TaskError(f"unsupported artifact type schema {schema}")


def _to_mlmd_value(key: str, value: struct_pb2.Value) -> mlmd.Value:
    """`converter.go` `StructValueToMLMDValue`: numbers become doubles, bools ints, lists and
    structs are wrapped in a struct under "list" / "struct"."""
    kind = value.WhichOneof("kind")
    result = mlmd.Value()
    if kind == "string_value":
        result.string_value = value.string_value
    elif kind == "number_value":
        result.double_value = value.number_value
    elif kind == "bool_value":
        result.int_value = int(value.bool_value)
    elif kind in ("list_value", "struct_value"):
        wrapper = "list" if kind == "list_value" else "struct"
        result.struct_value.fields[wrapper].CopyFrom(value)
    else:
        raise _TaskError(f"unable to produce MLMD artifact: metadata {key!r}: "
                         f"unknown/unsupported value type {kind}")
    return result


def _to_runtime_artifact(artifact: mlmd.Artifact) -> pb.RuntimeArtifact:
    """`converter.go` `toRuntimeArtifact` + `OutputArtifact.ToRuntimeArtifact`: name is the
    MLMD id, properties and custom properties become metadata (ints as numbers), and the
    type is `instanceSchema: ""` because `GetOutputArtifactsByExecutionId` leaves Schema
    empty."""
    runtime = pb.RuntimeArtifact(name=str(artifact.id), uri=artifact.uri)
    runtime.metadata.SetInParent()
    for properties in (artifact.properties, artifact.custom_properties):
        for key, value in properties.items():
            runtime.metadata.fields[key].CopyFrom(_from_mlmd_value(value))
    runtime.type.instance_schema = ""
    return runtime


def _from_mlmd_value(value: mlmd.Value) -> struct_pb2.Value:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return struct_pb2.Value(string_value=value.string_value)
    if kind in ("double_value", "int_value"):
        return struct_pb2.Value(number_value=float(getattr(value, kind)))
    if kind == "struct_value":
        return struct_pb2.Value(struct_value=value.struct_value)
    raise _TaskError(f"unknown property type in MLMD artifact: {kind}")


# ---------------------------------------------------------------------------------------
# The container driver (driver/driver.go Container)


@dataclass
class _Task:
    """What the driver and launcher know about one task of the root DAG."""

    key: str
    spec: pb.PipelineTaskSpec
    component: pb.ComponentSpec
    container: Json
    kubernetes: Json


@dataclass
class _Run:
    """The run's fixed facts, shared by every task."""

    pipeline: str
    run_id: str
    run_root: str
    backend: str
    publish_logs: bool
    dag: mlmd.Execution
    dag_inputs: Mapping[str, struct_pb2.Value]
    volumes: Mapping[str, str]
    secrets: Mapping[str, str]  # Secret name -> local folder, one file per key
    python: str
    env: Mapping[str, str]
    pods: Path  # each task's pod-local folders, on this machine
    starter: Optional[warm_pods.WarmStarter] = None  # warm starts (see warm_pods.py)
    executions: dict[str, int] = field(default_factory=dict)  # task -> MLMD execution id


def _resolve_inputs(task: _Task, run: _Run, store: _Metadata) -> pb.ExecutorInput.Inputs:
    """`resolveInputs`: parameters from pipeline inputs, constants and upstream outputs;
    artifacts from the producer's MLMD outputs (untyped); then type checks/conversions."""
    inputs = pb.ExecutorInput.Inputs()
    definitions = task.component.input_definitions.parameters
    for name, spec in task.spec.inputs.parameters.items():
        value = _resolve_parameter(name, spec, task, run, store)
        if value is None:  # 2.5.0: an optional input with a null value is left out
            continue
        inputs.parameter_values[name].CopyFrom(value)
    for name, spec in task.spec.inputs.artifacts.items():
        inputs.artifacts[name].artifacts.append(_resolve_artifact(name, spec, run, store))
    for name, definition in definitions.items():
        _check_input_parameter(name, definition, inputs.parameter_values)
    return inputs


def _resolve_parameter(name: str, spec: pb.TaskInputsSpec.InputParameterSpec, task: _Task,
                       run: _Run, store: _Metadata) -> Optional[struct_pb2.Value]:
    kind = spec.WhichOneof("kind")
    if kind == "component_input_parameter":
        value = run.dag_inputs.get(spec.component_input_parameter)
        if value is None:
            raise _TaskError(f"parent DAG does not have input parameter "
                             f"{spec.component_input_parameter}")
        definitions = task.component.input_definitions.parameters
        optional = name in definitions and definitions[name].is_optional
        if run.backend == "2.5.0" and value.WhichOneof("kind") == "null_value" and optional:
            return None
        return value
    if kind == "task_output_parameter":
        producer = spec.task_output_parameter.producer_task
        key = spec.task_output_parameter.output_parameter_key
        outputs = _published_parameters(producer, run, store)
        if key not in outputs:
            raise _TaskError(f"cannot find output parameter key {key!r} in producer task "
                             f"{producer!r}")
        return outputs[key]
    if kind == "runtime_value":
        return _runtime_constant(spec.runtime_value.constant, task, run)
    raise _TaskError(f"parameter spec of type {kind} not implemented yet")


def _published_parameters(producer: str, run: _Run, store: _Metadata) -> Mapping[str, Any]:
    """The producer execution's `outputs` custom property (`Execution.GetParameters`)."""
    if producer not in run.executions:
        raise _TaskError(f"producer task, {producer}, not in tasks")
    properties = store.execution(run.executions[producer]).custom_properties
    return properties["outputs"].struct_value.fields if "outputs" in properties else {}


def _runtime_constant(value: struct_pb2.Value, task: _Task, run: _Run) -> struct_pb2.Value:
    """2.5.0's `resolveInputParameter` replaces a few whole-string constants (2.0.5 does
    not); the run's display and resource names are both the run id here."""
    if run.backend != "2.5.0" or value.WhichOneof("kind") != "string_value":
        return value
    replacements = {"{{$.pipeline_job_name}}": run.run_id,
                    "{{$.pipeline_job_resource_name}}": run.run_id,
                    "{{$.pipeline_job_uuid}}": run.run_id,
                    "{{$.pipeline_task_name}}": task.key,
                    "{{$.pipeline_task_uuid}}": str(run.dag.id)}
    text = replacements.get(value.string_value)
    return value if text is None else struct_pb2.Value(string_value=text)


def _resolve_artifact(name: str, spec: pb.TaskInputsSpec.InputArtifactSpec, run: _Run,
                      store: _Metadata) -> pb.RuntimeArtifact:
    if spec.WhichOneof("kind") != "task_output_artifact":
        raise _TaskError(f"failed to resolve input artifact {name}: parent DAG does not have "
                         f"input artifact {spec.component_input_artifact}")
    producer = spec.task_output_artifact.producer_task
    key = spec.task_output_artifact.output_artifact_key
    if producer not in run.executions:
        raise _TaskError(f"cannot find producer task {producer!r}")
    outputs = store.output_artifacts(run.executions[producer])
    if key not in outputs:
        raise _TaskError(f"cannot find output artifact key {key!r} in producer task {producer!r}")
    return _to_runtime_artifact(outputs[key])


def _check_input_parameter(name: str, definition: pb.ComponentInputsSpec.ParameterSpec,
                           values: Any) -> None:
    """`handleParamTypeValidationAndConversion` (same in 2.0.5 and 2.5.0)."""
    if name not in values:
        if not definition.is_optional and not definition.HasField("default_value"):
            raise _TaskError(f"neither value nor default value provided for non-optional "
                             f"parameter {name!r}")
        return
    value = values[name]
    if definition.parameter_type == pb.ParameterType.STRING:
        if value.WhichOneof("kind") != "string_value":
            values[name].CopyFrom(struct_pb2.Value(string_value=_value_text(value)))
        return
    if value.WhichOneof("kind") == "null_value":
        raise _TaskError(f"got null for input parameter {name!r}")
    if _PARAMETER_KINDS.get(definition.parameter_type) != value.WhichOneof("kind"):
        raise _TaskError(f"input parameter {name!r} type mismatch: expect "
                         f"{pb.ParameterType.ParameterTypeEnum.Name(definition.parameter_type)}")


def _provision_outputs(task: _Task, run: _Run) -> pb.ExecutorInput.Outputs:
    """`provisionOutputs`: URIs `<run root>/<task>/<output>` on 2.0.5 and
    `<run root>/<task>/<uuid>/<output>` on 2.5.0 (one uuid per task); with publish_logs an
    `executor-logs` output typed `system.Artifact`; parameters and the ExecutorOutput go to
    fixed pod-local paths."""
    outputs = pb.ExecutorInput.Outputs(output_file=POD_OUTPUT_FILE)
    definitions = dict(task.component.output_definitions.artifacts)
    if run.publish_logs:
        definitions[LOGS_OUTPUT] = pb.ComponentOutputsSpec.ArtifactSpec(
            artifact_type=pb.ArtifactTypeSchema(schema_title="system.Artifact"))
    salt = [str(uuid.uuid4())] if run.backend == "2.5.0" else []
    for name, definition in definitions.items():
        artifact = outputs.artifacts[name].artifacts.add(
            uri="/".join([run.run_root, task.key, *salt, name]))
        artifact.type.CopyFrom(definition.artifact_type)
        if definition.HasField("metadata"):
            artifact.metadata.CopyFrom(definition.metadata)
    for name in task.component.output_definitions.parameters:
        outputs.parameters[name].output_file = f"{POD_PARAMETER_DIR}/{name}"
    return outputs


def _fingerprint(task: _Task, executor_input: pb.ExecutorInput) -> str:
    """`cacheutils.GenerateCacheKey` + `GenerateFingerPrint`: input artifact names (MLMD ids),
    input parameters, output specs without URIs, output parameter types, image and raw
    command; sha256 of the sorted, compact JSON."""
    inputs, outputs = executor_input.inputs, executor_input.outputs
    types = {name: pb.ParameterType.ParameterTypeEnum.Name(spec.parameter_type)
             for name, spec in task.component.output_definitions.parameters.items()}
    key = {
        "inputArtifactNames": {name: {"artifactNames": [a.name for a in artifacts.artifacts]}
                               for name, artifacts in inputs.artifacts.items()},
        "inputParameterValues": {name: json_format.MessageToDict(value)
                                 for name, value in inputs.parameter_values.items()},
        "outputArtifactsSpec": {name: _artifact_without_uri(artifacts.artifacts[0])
                                for name, artifacts in outputs.artifacts.items()},
        "outputParametersSpec": {name: types[name] for name in outputs.parameters},
        "containerSpec": {"image": task.container.get("image", ""),
                          "cmdArgs": [*task.container.get("command", []),
                                      *task.container.get("args", [])]},
    }
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _artifact_without_uri(artifact: pb.RuntimeArtifact) -> Json:
    copy = pb.RuntimeArtifact()
    copy.CopyFrom(artifact)
    copy.ClearField("uri")
    return json_format.MessageToDict(copy)


def _mount_pairs(task: _Task, run: _Run, store: _Metadata) -> list[tuple[str, str]]:
    """`extendPodSpecPatch` / `makeVolumeMountPatch`: each `pvcMount` names a claim (by
    `pvcNameParameter` on 2.5.0, else `constant`, `componentInputParameter` or
    `taskOutputParameter`) and a `mountPath`; the claim's local stand-in is `volumes[claim]`.
    Then each `secretAsVolume` (`secretName`, `mountPath`; the same on 2.0.5 and 2.5.0)
    mounts `secrets[secretName]`; a Secret that does not exist keeps the pod from starting
    (the kubelet's MountVolume.SetUp error), which fails the task here."""
    pairs = []
    for mount in task.kubernetes.get("pvcMount", []):
        claim = _claim_name(mount, task, run, store)
        path = mount.get("mountPath", "")
        if not claim or not path:
            raise _TaskError("failed to mount volume, missing mountpath or pvc name")
        if claim not in run.volumes:
            raise _TaskError(f"PVC {claim!r} (mounted at {path}) has no local folder: pass "
                             f"volumes={{{claim!r}: <folder>}}")
        Path(run.volumes[claim]).mkdir(parents=True, exist_ok=True)  # the claim's volume
        pairs.append((str(run.volumes[claim]), path))
    for secret in task.kubernetes.get("secretAsVolume", []):
        name, path = secret.get("secretName", ""), secret.get("mountPath", "")
        if not name or not path:
            raise _TaskError("failed to mount Secret, missing secretName or mountPath")
        missing = f'MountVolume.SetUp failed for volume "{name}" : secret "{name}" not found'
        pairs.append((_secret_folder(name, run, missing), path))
    return pairs


# The namespace named in the kubelet's messages: a standalone KFP's (multi-user KFP runs
# pods in the user's profile namespace).
_NAMESPACE = "kubeflow"


def _secret_folder(name: str, run: _Run, missing: str) -> str:
    """The local stand-in of Secret `name`, or the task fails with `missing` (the kubelet's
    words) and why here."""
    folder = run.secrets.get(name)
    if folder is None:
        raise _TaskError(f"{missing} (no local folder stands in for it: pass "
                         f"secrets={{{name!r}: <folder with a file per key>}})")
    if not os.path.isdir(folder):
        raise _TaskError(f"{missing} (its local stand-in {folder} is not a folder)")
    return str(folder)


def _with_secret_env(task: _Task, run: _Run) -> _Task:
    """`extendPodSpecPatch`: each `secretAsEnv` key becomes an environment variable of the
    user container (a `secretKeyRef`), after `container.env` (same on 2.0.5 and 2.5.0).
    The kubelet reads the Secret when it creates the container and, when the Secret or
    the key is missing, leaves it in CreateContainerConfigError: the task fails here with
    its message. A key's value is the file of that name in the Secret's folder."""
    added = []
    for secret in task.kubernetes.get("secretAsEnv", []):
        name = secret.get("secretName", "")
        for pair in secret.get("keyToEnv", []):
            key, variable = pair.get("secretKey", ""), pair.get("envVar", "")
            folder = _secret_folder(
                name, run, f'CreateContainerConfigError: secret "{name}" not found')
            path = Path(folder, key)
            if not _SECRET_KEY.match(key) or not path.is_file():
                raise _TaskError(f"CreateContainerConfigError: couldn't find key {key} in "
                                 f"Secret {_NAMESPACE}/{name} (no file {key!r} in {folder})")
            value = path.read_bytes()
            if b"\0" in value:
                raise _TaskError(f"key {key} of Secret {name} holds a NUL byte, which the "
                                 f"environment variable {variable} cannot hold")
            added.append({"name": variable, "value": os.fsdecode(value)})
    if not added:
        return task
    container = {**task.container, "env": [*task.container.get("env", []), *added]}
    return dataclasses.replace(task, container=container)


_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # a Secret's keys (IsConfigMapKey)


def _claim_name(mount: Json, task: _Task, run: _Run, store: _Metadata) -> str:
    """2.5.0 turns the deprecated fields into a parameter spec (`inputParamConstant`, ...)
    and resolves it like a task input; 2.0.5 reads the same three sources directly."""
    if "pvcNameParameter" in mount:
        source = mount["pvcNameParameter"]
    elif "constant" in mount:
        source = {"runtimeValue": {"constant": mount["constant"]}}
    elif "componentInputParameter" in mount or "taskOutputParameter" in mount:
        source = {k: mount[k] for k in ("componentInputParameter", "taskOutputParameter")
                  if k in mount}
    else:
        raise _TaskError("failed to make podSpecPatch: volume mount: volume name not provided")
    spec = json_format.ParseDict(source, pb.TaskInputsSpec.InputParameterSpec())
    value = _resolve_parameter("", spec, task, run, store)
    return value.string_value if value is not None else ""


# ---------------------------------------------------------------------------------------
# The launcher (component/launcher_v2.go)


def _placeholders(executor_input: pb.ExecutorInput, component: pb.ComponentSpec) -> dict[str, str]:
    """`getPlaceholders` on the input with component defaults added (`addDefaultParams`):
    `{{$}}` is the whole ExecutorInput as Go's protojson writes it."""
    with_defaults = pb.ExecutorInput()
    with_defaults.CopyFrom(executor_input)
    for name, spec in component.input_definitions.parameters.items():
        if spec.HasField("default_value") and name not in with_defaults.inputs.parameter_values:
            with_defaults.inputs.parameter_values[name].CopyFrom(spec.default_value)
    result = {"{{$}}": protojson(with_defaults)}
    for name, artifacts in with_defaults.inputs.artifacts.items():
        uri = artifacts.artifacts[0].uri
        result[f"{{{{$.inputs.artifacts['{name}'].uri}}}}"] = uri
        result[f"{{{{$.inputs.artifacts['{name}'].path}}}}"] = artifact_copies.pod_path(uri)
    for name, artifacts in with_defaults.outputs.artifacts.items():
        uri = artifacts.artifacts[0].uri
        result[f"{{{{$.outputs.artifacts['{name}'].uri}}}}"] = uri
        result[f"{{{{$.outputs.artifacts['{name}'].path}}}}"] = artifact_copies.pod_path(uri)
    for name, value in with_defaults.inputs.parameter_values.items():
        result[f"{{{{$.inputs.parameters['{name}']}}}}"] = _value_text(value)
    for name, parameter in with_defaults.outputs.parameters.items():
        result[f"{{{{$.outputs.parameters['{name}'].output_file}}}}"] = parameter.output_file
    return result


def _substitute(words: Iterable[str], placeholders: Mapping[str, str]) -> list[str]:
    pattern = re.compile("|".join(re.escape(key) for key in placeholders))
    return [pattern.sub(lambda match: placeholders[match.group(0)], word) for word in words]


@dataclass(frozen=True)
class _Pod:
    """The task's private pod-local folders, on the host under the run's `.emulator/`."""

    root: Path

    @property
    def outputs(self) -> Path:  # mounted at /tmp/kfp_outputs
        return self.root / "kfp_outputs"

    @property
    def parameters(self) -> Path:  # mounted at /tmp/kfp/outputs
        return self.root / "kfp_parameters"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def files(self) -> artifact_copies.PodFiles:  # the launcher's /gcs, /s3, /minio
        return artifact_copies.PodFiles(self.root / "local")

    def mounts(self, run_root: str) -> list[tuple[str, str]]:
        """The launcher's output files, and (bucket roots, as root only: the folder is made
        at the top of this machine's file system) the bucket's pod-local folder, where
        `.path` placeholders point; TFX itself reads and writes the URIs."""
        pairs = [(str(self.outputs), os.path.dirname(POD_OUTPUT_FILE)),
                 (str(self.parameters), POD_PARAMETER_DIR)]
        local = artifact_copies.pod_path(run_root)
        if object_store.is_object_store_uri(run_root) and os.geteuid() == 0:
            top = "/" + local.strip("/").split("/")[0]
            pairs.append((str(self.files.host(top)), top))
        return pairs


def _pod_argv(argv: list[str], mounts: list[tuple[str, str]]) -> list[str]:
    """The command in its own mount namespace, with bind mounts only it sees (root: plain
    `unshare -m`; otherwise a user namespace, `unshare -rm`)."""
    steps = [f"mkdir -p {shlex.quote(target)} && mount --bind {shlex.quote(source)} "
             f"{shlex.quote(target)}" for source, target in mounts]
    script = " && ".join([*steps, 'exec "$@"'])
    namespace = [_UNSHARE, "-m"] if os.geteuid() == 0 else [_UNSHARE, "-rm"]
    return [*namespace, "--propagation", "private", _SH, "-c", script, "sh", *argv]


def pod_problem() -> Optional[str]:
    """Why this machine cannot start the tasks' "pods" (a private mount namespace each, see
    `_pod_argv`), or None; a few milliseconds, to say so once instead of failing every task."""
    if shutil.which(_UNSHARE) is None:
        return ("`unshare` (util-linux) is not on PATH: each task runs in its own Linux mount "
                "namespace")
    try:
        done = subprocess.run(_pod_argv(["true"], []), capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"cannot start `unshare`: {error}"
    if done.returncode == 0:
        return None
    reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    how = ("`unshare -m`" if os.geteuid() == 0 else
           "`unshare -rm`, which needs unprivileged user namespaces as a non-root user")
    return f"cannot give a task its own mount namespace ({how}): {reason}"


def _user_argv(task: _Task, placeholders: Mapping[str, str], python: str) -> list[str]:
    """Container command + args, placeholders filled; `python` is this environment's."""
    command = list(task.container.get("command", []))
    if command and command[0] in ("python", "python3"):
        command[0] = python
    return _substitute([*command, *task.container.get("args", [])], placeholders)


def _run_pod(argv: list[str], mounts: list[tuple[str, str]], env: Mapping[str, str],
             log: Path) -> int:
    with log.open("wb") as out:
        return subprocess.run(_pod_argv(argv, mounts), env=dict(env), stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              check=False).returncode


def _start_task(argv: list[str], mounts: list[tuple[str, str]], env: Mapping[str, str],
                log: Path, run: _Run) -> int:
    """The task's process: forked warm from the run's preloaded parent when the run has one
    and the command is `python -m <module>`, else a new interpreter."""
    module = warm_pods.module_of(argv, run.python) if run.starter else None
    if run.starter and module:
        return run.starter.run(module, argv[3:], mounts, env, log)
    return _run_pod(argv, mounts, env, log)


def _executor_output(pod: _Pod) -> pb.ExecutorOutput:
    """`getExecutorOutputFile`: a missing file is an empty ExecutorOutput."""
    path = pod.outputs / os.path.basename(POD_OUTPUT_FILE)
    output = pb.ExecutorOutput()
    if path.exists():
        try:
            json_format.Parse(path.read_text(), output)
        except json_format.ParseError as error:
            raise _TaskError(f"failed to unmarshall ExecutorOutput in file "
                             f"{POD_OUTPUT_FILE!r}: {error}") from None
    return output


def _output_parameters(executor_input: pb.ExecutorInput, output: pb.ExecutorOutput,
                       component: pb.ComponentSpec, pod: _Pod) -> dict[str, struct_pb2.Value]:
    """`collectOutputParameters`: ExecutorOutput values first, else the parameter's file."""
    values = dict(output.parameter_values)
    for name in executor_input.outputs.parameters:
        if name in values:
            continue
        kind = component.output_definitions.parameters[name].parameter_type
        path = pod.parameters / name
        if not path.exists():
            raise _TaskError(f"failed to read output parameter name={name!r} "
                             f"path={POD_PARAMETER_DIR}/{name}: no such file or directory")
        values[name] = _text_to_value(path.read_text(), kind)
    return values


_GO_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
             **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}


def _text_to_value(text: str, kind: int) -> struct_pb2.Value:
    """`converter.go` `TextToPbValue` (Go's ParseInt, ParseFloat, ParseBool, JSON)."""
    try:
        if kind == pb.ParameterType.STRING:
            return struct_pb2.Value(string_value=text)
        if kind == pb.ParameterType.NUMBER_INTEGER:
            return struct_pb2.Value(number_value=float(int(text.strip(), 10)))
        if kind == pb.ParameterType.NUMBER_DOUBLE:
            return struct_pb2.Value(number_value=float(text.strip()))
        if kind == pb.ParameterType.BOOLEAN:
            return struct_pb2.Value(bool_value=_GO_BOOLS[text.strip()])
        value = json_format.Parse(text, struct_pb2.Value())
    except (ValueError, KeyError, json_format.ParseError) as error:
        raise _TaskError(f"TextToPbValue(text={text!r}) failed: {error}") from None
    if _PARAMETER_KINDS.get(kind) != value.WhichOneof("kind"):
        raise _TaskError(f"TextToPbValue(text={text!r}) failed: unexpected type")
    return value


def _publish_outputs(executor_input: pb.ExecutorInput, output: pb.ExecutorOutput, pod: _Pod,
                     store: _Metadata) -> list[tuple[str, mlmd.Artifact]]:
    """`uploadOutputArtifacts`: every provisioned output is recorded, merged with the
    ExecutorOutput's first artifact of that name (URI and metadata) when there is one; an
    output missing from the ExecutorOutput is recorded as provisioned."""
    published = []
    for name, artifacts in executor_input.outputs.artifacts.items():
        artifact = pb.RuntimeArtifact()
        artifact.CopyFrom(artifacts.artifacts[0])
        produced = output.artifacts[name].artifacts if name in output.artifacts else []
        if produced:
            if produced[0].uri:
                artifact.uri = produced[0].uri
            for key, value in produced[0].metadata.fields.items():
                artifact.metadata.fields[key].CopyFrom(value)
        if name == LOGS_OUTPUT and not object_store.is_object_store_uri(artifact.uri):
            Path(artifact.uri).parent.mkdir(parents=True, exist_ok=True)  # a local root
            shutil.copyfile(pod.log, artifact.uri)
        published.append((name, store.record_artifact(name, artifact)))
    return published


# ---------------------------------------------------------------------------------------
# Running the package


def run_package(package: Union[str, Path], pipeline_root: Union[str, Path], *,
                run_id: Optional[str] = None,
                parameters: Optional[Mapping[str, Any]] = None, backend: str = "2.5.0",
                volumes: Mapping[str, str] = {},  # noqa: B006 (read only)
                secrets: Mapping[str, str] = {},  # noqa: B006 (read only)
                python: str = sys.executable, env: Optional[Mapping[str, str]] = None,
                metadata_path: Union[str, Path],
                on_task: Optional[TaskListener] = None,
                publish_logs: Optional[bool] = None,
                on_result: Optional[ResultListener] = None,
                warm: bool | warm_pods.WarmStarter = False) -> EmulatedRun:
    """Runs `package` as KFP's v2 backend `backend` would, artifacts under `pipeline_root`
    (a gs:// or s3:// bucket URI, or a local folder) and metadata in the MLMD SQLite store
    at `metadata_path`; with a bucket root the pods' local folders live beside that store.

    `volumes` maps PVC claim names to local folders bind-mounted at the claim's mountPath
    for the tasks that mount it. `secrets` maps Kubernetes Secret names to local folders
    holding one file per key (as Kubernetes mounts a Secret): a `secretAsEnv` key's file is
    read into its environment variable, a `secretAsVolume` folder is bind-mounted at its
    mountPath; a missing Secret or key fails the task with the kubelet's message
    (`CreateContainerConfigError: ...`). `env` is the tasks' environment (default: this
    process's), to which each container's own env is added. `publish_logs` is the API server's
    PUBLISH_LOGS (2.5.0 only; its manifests and the driver default to true). Give the
    emulation its own `metadata_path`: KFP registers artifact types by name only, which a
    store shared with TFX's local runner (typed properties) would refuse.
    `on_task(task, event)` reports progress; `on_result(task_run)` receives each task's
    final TaskRun as soon as it is known, in the order they end (SKIPPED ones last); both
    are called from the calling thread, while tasks run on threads of their own; the emulation
    itself prints nothing. Raises PipelineRejected or NotEmulated before anything runs.
    `warm` forks each `python -m` task from one process that imported the entrypoint
    (`warm_pods.py`; as root only, else ignored): the same run without a new interpreter's
    start-up per task. True starts that process for this run; a `WarmStarter` (started
    with the same `python` and environment, and closed by its owner) lets several runs
    share one start-up.

    Returns:
        The run: a failed task is a FAILED run (with each task's error and log), not an
        exception.

    Raises:
        ValueError: `backend` is not one this module emulates, `publish_logs` is asked of
            backend 2.0.5, or `pipeline_root` is neither a bucket URI nor an absolute
            path.
        PipelineRejected: as `load_package`, `check_run_creation` and
            `runtime_parameters`: KFP would refuse to create the run.
        NotEmulated: as `check_not_emulated`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if publish_logs and backend == "2.0.5":
        raise ValueError("backend 2.0.5 has no publish_logs")
    loaded = load_package(package)
    check_run_creation(loaded, backend)
    check_not_emulated(loaded, backend)
    inputs = runtime_parameters(loaded.spec, parameters or {})
    pipeline_root = str(pipeline_root)
    bucket = object_store.is_object_store_uri(pipeline_root)
    if not bucket and not os.path.isabs(pipeline_root):
        raise ValueError(f"pipeline_root must be a bucket URI ({', '.join(object_store.SCHEMES)}) "
                         f"or an absolute local folder, not {pipeline_root!r}")
    started = time.monotonic()
    run_id = run_id or str(uuid.uuid4())
    pipeline = loaded.spec.pipeline_info.name
    run_root = f"{pipeline_root.rstrip('/')}/{pipeline}/{run_id}"
    store = _Metadata(metadata_path, backend)
    store.open_run(pipeline, run_id, run_root)
    dag = store.create_execution("system.DAGExecution", "", inputs, {}, {}, name=f"run/{run_id}")
    run = _Run(pipeline=pipeline, run_id=run_id, run_root=run_root, backend=backend,
               publish_logs=backend == "2.5.0" and publish_logs is not False, dag=dag,
               dag_inputs=inputs, volumes=volumes, secrets=secrets, python=python,
               env=dict(os.environ if env is None else env),
               pods=(Path(metadata_path).parent / ".emulator" / run_id if bucket
                     else Path(run_root) / ".emulator"))
    owns_starter = warm is True and warm_pods.available()
    if owns_starter:
        run.starter = warm_pods.WarmStarter(python, run.env)
    elif isinstance(warm, warm_pods.WarmStarter) and warm_pods.available():
        run.starter = warm
    try:
        tasks = _run_tasks(_tasks(loaded), run, store, on_task or (lambda task, event: None),
                           on_result or (lambda task_run: None))
    finally:
        if owns_starter and run.starter:
            run.starter.close()
    failed = any(task.state == "FAILED" for task in tasks)
    if failed and backend == "2.5.0":  # client.go UpdateDAGExecutionsState
        store.set_state(dag, mlmd.Execution.FAILED)
    return EmulatedRun(run_id=run_id, state="FAILED" if failed else "SUCCEEDED", tasks=tasks,
                       seconds=time.monotonic() - started, run_root=run_root)


def _tasks(package: Package) -> list[_Task]:
    spec = package.spec
    executors = _executors(spec)
    result = []
    for key in _task_order(spec):
        task = spec.root.dag.tasks[key]
        component = spec.components[task.component_ref.name]
        result.append(_Task(key=key, spec=task, component=component,
                            container=executors[component.executor_label]["container"],
                            kubernetes=package.kubernetes.get(component.executor_label, {})))
    return result


def _executors(spec: pb.PipelineSpec) -> dict[str, Json]:
    return json_format.MessageToDict(spec.deployment_spec).get("executors", {})


def _upstream(task: pb.PipelineTaskSpec) -> set[str]:
    """The tasks `task` waits for: its dependentTasks and the producers of its inputs, as
    the Argo compiler adds them (`argocompiler/dag.go` `addImplicitDependencies`)."""
    return (set(task.dependent_tasks)
            | {p.task_output_parameter.producer_task for p in task.inputs.parameters.values()
               if p.HasField("task_output_parameter")}
            | {a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()
               if a.HasField("task_output_artifact")})


def _task_order(spec: pb.PipelineSpec) -> list[str]:
    """Dependency order (dependentTasks and producers of inputs); ties by name."""
    tasks = spec.root.dag.tasks
    needs = {key: _upstream(task) for key, task in tasks.items()}
    order: list[str] = []
    while len(order) < len(needs):
        ready = sorted(k for k, deps in needs.items() if k not in order and deps <= set(order))
        if not ready:
            raise PipelineRejected(f"dependency cycle among {sorted(set(needs) - set(order))}")
        order.append(ready[0])
    return order


def _run_tasks(tasks: list[_Task], run: _Run, store: _Metadata, on_task: TaskListener,
               on_result: ResultListener) -> list[TaskRun]:
    """Runs the DAG as Argo runs KFP's: a task starts as soon as every task it waits for
    has succeeded (or was cached), beside any other that is ready: each DAG task's
    `depends` is `<upstream>.Succeeded && ...` (`argocompiler/dag.go` `depends`) and the
    workflow sets no `parallelism`. Once a task fails nothing new starts and the running
    ones finish (Argo's DAG `failFast`, true by default); the rest are SKIPPED. Returns
    the tasks' runs in dependency order, whatever order they finished in."""
    needs = {task.key: _upstream(task.spec) for task in tasks}
    results: dict[str, TaskRun] = {}
    waiting = list(tasks)
    with concurrent.futures.ThreadPoolExecutor(max(len(tasks), 1),
                                               thread_name_prefix="pod") as pool:
        running: dict[concurrent.futures.Future, _Task] = {}
        while waiting or running:
            passed = {key for key, result in results.items()
                      if result.state in ("SUCCEEDED", "CACHED")}
            failed = any(result.state == "FAILED" for result in results.values())
            for task in [t for t in waiting if not failed and needs[t.key] <= passed]:
                waiting.remove(task)
                on_task(task.key, "running")
                running[pool.submit(_timed_task, task, run, store)] = task
            if not running:
                break
            finished, _ = concurrent.futures.wait(
                running, return_when=concurrent.futures.FIRST_COMPLETED)
            for future in finished:
                result = future.result()
                results[running.pop(future).key] = result
                on_task(result.name, {"SUCCEEDED": "finished", "CACHED": "cached"}.get(
                    result.state, "failed"))
                on_result(result)
    for task in waiting:
        results[task.key] = TaskRun(name=task.key, state="SKIPPED")
        on_result(results[task.key])
    return [results[task.key] for task in tasks]


def _timed_task(task: _Task, run: _Run, store: _Metadata) -> TaskRun:
    started = time.monotonic()
    result = _run_task(task, run, store)
    result.seconds = time.monotonic() - started
    return result


def _run_task(task: _Task, run: _Run, store: _Metadata) -> TaskRun:
    """Driver, then (unless cached) the launcher around the user's process."""
    result = TaskRun(name=task.key, state="FAILED")
    try:
        executor_input = pb.ExecutorInput(inputs=_resolve_inputs(task, run, store))
        executor_input.outputs.CopyFrom(_provision_outputs(task, run))
        fingerprint = (_fingerprint(task, executor_input)
                       if task.spec.caching_options.enable_cache else "")
        cached = store.cached_execution(fingerprint) if fingerprint else None
        result.executor_input = json.loads(protojson(executor_input))
        execution = _create_task_execution(task, executor_input, fingerprint, cached, run, store)
        run.executions[task.key] = execution.id
        result.execution_id = execution.id
        if cached is not None:
            _reuse(cached, execution, executor_input, store)
            result.state = "CACHED"
        else:  # a driver failure from here on leaves the execution RUNNING, as in KFP
            mounts = _mount_pairs(task, run, store)
            _launch(_with_secret_env(task, run), executor_input, execution, mounts, run,
                    store, result)
            result.state = "SUCCEEDED"
        _describe_outputs(result, execution.id, store)
    except _TaskError as error:
        result.error = _with_log_tail(str(error), result.log)
    return result


def _create_task_execution(task: _Task, executor_input: pb.ExecutorInput, fingerprint: str,
                           cached: Optional[mlmd.Execution], run: _Run,
                           store: _Metadata) -> mlmd.Execution:
    """The driver's `CreateExecution` for a container (pod fields empty until pre-publish;
    the driver never sets `image`)."""
    extra: dict[str, Any] = {"parent_dag_id": run.dag.id, "pod_name": "", "pod_uid": "",
                             "namespace": "", "image": ""}
    if cached is not None:
        extra["cached_execution_id"] = str(cached.id)
    if fingerprint:
        extra["cache_fingerprint"] = fingerprint
    input_ids = {name: [int(a.name) for a in artifacts.artifacts]
                 for name, artifacts in executor_input.inputs.artifacts.items()}
    return store.create_execution("system.ContainerExecution", task.key,
                                  executor_input.inputs.parameter_values, input_ids, extra)


def _reuse(cached: mlmd.Execution, execution: mlmd.Execution, executor_input: pb.ExecutorInput,
           store: _Metadata) -> None:
    """`reuseCachedOutputs`: the cached execution's parameters and artifacts, state CACHED."""
    artifacts = store.output_artifacts(cached.id)
    missing = sorted(set(executor_input.outputs.artifacts) - set(artifacts))
    if missing:
        raise _TaskError(f"unable to find artifact with name {missing[0]} in mlmd output artifacts")
    parameters = dict(cached.custom_properties["outputs"].struct_value.fields)
    store.publish(execution, mlmd.Execution.CACHED, parameters,
                  [(name, artifacts[name]) for name in executor_input.outputs.artifacts])


def _launch(task: _Task, executor_input: pb.ExecutorInput, execution: mlmd.Execution,
            mounts: list[tuple[str, str]], run: _Run, store: _Metadata, result: TaskRun) -> None:
    """`LauncherV2.Execute`: run the command, then publish COMPLETE with the outputs, or
    FAILED with none when anything fails (its pre-publish only sets the pod's name, uid and
    namespace, empty here, and RUNNING, which the execution already is)."""
    pod = _Pod(run.pods / task.key)
    for folder in (pod.outputs, pod.parameters):
        folder.mkdir(parents=True, exist_ok=True)
    result.log = str(pod.log)
    placeholders = _placeholders(executor_input, task.component)
    result.executor_input = json.loads(placeholders["{{$}}"])
    env = {**run.env, **{e["name"]: e.get("value", "") for e in task.container.get("env", [])}}
    try:
        if run.backend == "2.0.5":
            _check_s3_endpoint_reachable(executor_input, env)
        result.copied_in = _download_inputs(executor_input, pod)
        _prepare_output_folders(executor_input, pod)
        code = _start_task(_user_argv(task, placeholders, run.python),
                           [*pod.mounts(run.run_root), *mounts], env, pod.log, run)
        if code != 0:
            raise _TaskError(f"failed to execute component: exit status {code}")
        output = _executor_output(pod)
        parameters = _output_parameters(executor_input, output, task.component, pod)
        result.copied_out = _upload_outputs(executor_input, pod)
        artifacts = _publish_outputs(executor_input, output, pod, store)
    except _TaskError:
        store.publish(execution, mlmd.Execution.FAILED)
        raise
    store.publish(execution, mlmd.Execution.COMPLETE, parameters, artifacts)


def _check_s3_endpoint_reachable(executor_input: pb.ExecutorInput,
                                  env: Mapping[str, str]) -> None:
    """Backend 2.0.5's launcher opens `s3://` buckets with aws-sdk-go v1, which reads no
    endpoint from the environment, and 2.0.5 has no `providers` setting for one (2.0.5
    `objectstore/object_store.go` `OpenBucket`; an endpoint in the root's query string
    breaks the URIs it hands out, kubeflow/pipelines#10318, fixed in 2.1). Against MinIO
    or any store other than AWS, its first download then fails; here, as there.

    Raises:
        _TaskError: an input on `s3://` while the task's environment names an endpoint.
    """
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return
    for name, artifacts in executor_input.inputs.artifacts.items():
        uri = artifacts.artifacts[0].uri
        if uri.startswith("s3://"):
            raise _TaskError(
                f"failed to download input artifact '{name}' from remote storage URI "
                f"'{uri}': backend 2.0.5's launcher reads no S3 endpoint (aws-sdk-go v1, no "
                f"`providers` setting; kubeflow/pipelines#10318), so it asks AWS for the "
                f"bucket, not {endpoint}: an s3:// root on MinIO needs backend 2.1 or later")


def _download_inputs(executor_input: pb.ExecutorInput, pod: _Pod) -> int:
    """`downloadArtifacts`: a bucket root's inputs copied into the pod before the command
    (`artifact_copies`); a local root's artifacts are already where the pod reads them."""
    copied = 0
    for name, artifacts in executor_input.inputs.artifacts.items():
        uri = artifacts.artifacts[0].uri
        if object_store.is_object_store_uri(uri):
            try:
                copied += artifact_copies.download(name, uri, pod.files)
            except artifact_copies.CopyError as error:
                raise _TaskError(str(error)) from None
    return copied


def _prepare_output_folders(executor_input: pb.ExecutorInput, pod: _Pod) -> None:
    """`prepareOutputFolders`: the parent folder of each output artifact's local path."""
    for artifacts in executor_input.outputs.artifacts.values():
        for artifact in artifacts.artifacts:
            local = artifact_copies.pod_path(artifact.uri)
            host = pod.files.host(local) if local != artifact.uri else Path(local)
            host.parent.mkdir(parents=True, exist_ok=True)


def _upload_outputs(executor_input: pb.ExecutorInput, pod: _Pod) -> int:
    """`uploadOutputArtifacts`' copies: what the command left at a bucket artifact's local
    path; on 2.5.0 the launcher has written the task's log to `executor-logs`' local path."""
    copied = 0
    for name, artifacts in executor_input.outputs.artifacts.items():
        uri = artifacts.artifacts[0].uri
        if not object_store.is_object_store_uri(uri):
            continue
        if name == LOGS_OUTPUT:
            shutil.copyfile(pod.log, pod.files.host(artifact_copies.pod_path(uri)))
        try:
            copied += artifact_copies.upload(name, uri, pod.files)
        except artifact_copies.CopyError as error:
            raise _TaskError(str(error)) from None
    return copied


def _describe_outputs(result: TaskRun, execution_id: int, store: _Metadata) -> None:
    """What downstream tasks will receive, and the published output parameters."""
    result.outputs = {name: [json.loads(protojson(_to_runtime_artifact(artifact)))]
                      for name, artifact in store.output_artifacts(execution_id).items()}
    parameters = store.execution(execution_id).custom_properties["outputs"].struct_value
    result.output_parameters = json.loads(protojson(parameters))


def _with_log_tail(message: str, log: str) -> str:
    if not log or not os.path.exists(log):
        return message
    lines = Path(log).read_text(errors="replace").splitlines()[-_LOG_TAIL_LINES:]
    return "\n".join([message, f"--- last lines of {log} ---", *lines])


# ---------------------------------------------------------------------------------------
# JSON as Go writes it


def protojson(message: Any) -> str:
    """A message as Go's protojson.Marshal writes it: compact, camelCase, doubles with no
    fraction written as integers (`3`, not `3.0`), non-ASCII kept as UTF-8."""
    data = _go_numbers(json_format.MessageToDict(message))
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _go_numbers(data: Any) -> Any:
    if isinstance(data, float) and math.isfinite(data) and data.is_integer() and abs(data) < 1e21:
        return int(data)
    if isinstance(data, dict):
        return {key: _go_numbers(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_go_numbers(value) for value in data]
    return data


def _value_text(value: struct_pb2.Value) -> str:
    """`converter.go` `PbValueToText` / the launcher's parameter placeholders."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":  # strconv.FormatFloat(v, 'f', -1, 64): never an exponent
        return format(Decimal(repr(value.number_value)).normalize(), "f")
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "null_value":
        return ""
    return protojson(value)
