"""The compiled package as the KFP API server takes it, and run parameters typed by it.

The server accepts a YAML bare PipelineSpec with `schemaVersion: 2.1.0` (backend
`apiserver/template/v2_template.go` `NewV2SpecTemplate`, `template.go` `isPipelineSpec`);
`KubeflowV2DagRunner` writes that only to a `.yaml` file and a Vertex `PipelineJob`
(`displayName`, `pipelineSpec`, `runtimeConfig`) to a `.json` one. Checking here turns a
server's 500 (2.0.x) into a line that says what to do, before anything is sent.

`--param name=value` arrives as text; the spec's `root.inputDefinitions.parameters`
says each parameter's type (`parameterType`), so values are sent as the JSON the run
expects (KFP's `runtime_config.parameters` is a map of `google.protobuf.Value`) and a
misspelt name is caught here rather than as a failed run.
"""
from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml

from pipeline.errors import UsageError, UserError

SCHEMA_VERSION = "2.1.0"
_YAML_SUFFIXES = (".yaml", ".yml")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class PackageError(UserError):
    """The package file is missing or is not what the KFP API server accepts."""


class ParameterError(UsageError, ValueError):
    """A `--param` the pipeline does not declare, or a value its type cannot hold."""


def read_spec(path: Path) -> dict[str, Any]:
    """The PipelineSpec in `path` (the first YAML document; a second one, the platform
    spec, is left alone), or PackageError naming the fix.

    Raises:
        PackageError: `path` is not a file, not `.yaml`/`.yml`, not YAML, holds no mapping,
            is a Vertex PipelineJob instead of a bare PipelineSpec, has a schemaVersion
            other than 2.1.0, or lacks `pipelineInfo.name` or `root`.
        OSError: the file exists but cannot be read.
    """
    if not path.is_file():
        raise PackageError(f"no compiled pipeline at {path}: run `mlops kfp compile` first "
                           "(it writes kubeflow.output_file)")
    if path.suffix not in _YAML_SUFFIXES:
        raise PackageError(f"{path}: KFP takes the pipeline as a .yaml file (a bare "
                           "PipelineSpec); compile to a kubeflow.output_file ending in .yaml")
    try:
        spec = next(iter(yaml.safe_load_all(path.read_text())), None)
    except yaml.YAMLError as err:
        raise PackageError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from None
    if not isinstance(spec, dict):
        raise PackageError(f"{path} holds no pipeline spec")
    if "pipelineSpec" in spec:
        raise PackageError(f"{path} is a Vertex PipelineJob (pipelineSpec inside), not the "
                           "bare PipelineSpec KFP accepts: compile it again with "
                           "`mlops kfp compile`")
    version = spec.get("schemaVersion")
    if version != SCHEMA_VERSION:
        raise PackageError(f"{path} has schemaVersion {version!r}; the KFP API server "
                           f"accepts {SCHEMA_VERSION} only")
    if not (spec.get("pipelineInfo") or {}).get("name") or not spec.get("root"):
        raise PackageError(f"{path} is not a pipeline spec (no pipelineInfo.name or root)")
    return spec


def check_platform_spec(path: Path) -> None:
    """Checks the package's second YAML document, the Kubernetes platform spec (volumes,
    Secrets, as `kfp-kubernetes` writes them), the way the API server reads it at upload
    and the driver reads each task's part.

    KFP 2.0.5 keeps that document only if it parses strictly as a `PlatformSpec` with a
    `kubernetes` platform, and otherwise drops it without an error
    (`backend/src/apiserver/template/v2_template.go` 130-200, 179): the runs would start
    and their pods would lack the volumes. Here the same parse fails loudly instead, and
    each executor's config must use only the `KubernetesExecutorConfig` fields backend
    2.0.5's driver knows (`check_kubernetes_fields`) and parse strictly as one.

    Raises:
        PackageError: the document is not a mapping, does not parse strictly as a
            PlatformSpec (an unknown or misspelt field), has no `kubernetes` platform, or
            an executor's config uses a field backend 2.0.5 does not know or does not parse
            as a KubernetesExecutorConfig.
        OSError: the file cannot be read.
    """
    from google.protobuf import json_format
    from kfp.kubernetes import kubernetes_executor_config_pb2
    from kfp.pipeline_spec import pipeline_spec_pb2

    documents = [d for d in yaml.safe_load_all(path.read_text())][1:]
    for index, document in enumerate(documents, start=2):
        if document is None:
            continue
        where = f"{path}: YAML document {index}, the platform spec,"
        if not isinstance(document, dict):
            raise PackageError(f"{where} is not a mapping")
        try:
            platform = json_format.ParseDict(document, pipeline_spec_pb2.PlatformSpec())
        except json_format.ParseError as err:
            raise PackageError(f"{where} is not a PlatformSpec KFP can read "
                               f"({_one_line(err)}); KFP 2.0.5 would drop it without a word "
                               "and the pods would run without its volumes") from None
        if "kubernetes" not in platform.platforms:
            raise PackageError(f"{where} has no 'kubernetes' platform (it has: "
                               f"{', '.join(sorted(platform.platforms)) or 'none'}); KFP "
                               "would drop it")
        executors = platform.platforms["kubernetes"].deployment_spec.executors
        for name, config in sorted(executors.items()):
            problem = check_kubernetes_fields(json_format.MessageToDict(config))
            if problem:
                raise PackageError(f"{where} executor {name}: {problem}")
            try:
                json_format.ParseDict(json_format.MessageToDict(config),
                                      kubernetes_executor_config_pb2.KubernetesExecutorConfig())
            except json_format.ParseError as err:
                raise PackageError(f"{where} executor {name}: not a KubernetesExecutorConfig "
                                   f"the driver can read ({_one_line(err)})") from None


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


# The KubernetesExecutorConfig KFP backend 2.0.5 knows: its go.mod pins kubernetes_platform
# at bd9f74e (kubernetes_platform/proto/kubernetes_executor_config.proto), and its driver
# reads each task's `--kubernetes_config` with jsonpb.UnmarshalString (cmd/driver/main.go
# 131-137), which refuses any other field: "failed to unmarshal Kubernetes config", and
# every task with it fails. Message -> field (JSON name) -> the message it holds, or None
# for a scalar or a map of strings. What each field does on 2.0.5 (driver.go
# `extendPodSpecPatch`): `pvcMount` mounts a claim; `nodeSelector.labels` becomes the
# pod's nodeSelector; `secretAsVolume` mounts a Secret's keys as files (a volume named
# after the Secret); `secretAsEnv` sets environment variables from a Secret's keys
# (`secretKeyRef`). 2.5.0 applies the same four the same way, and knows more (below).
KFP_2_0_5_FIELDS: dict[str, dict[str, Optional[str]]] = {
    "KubernetesExecutorConfig": {"secretAsVolume": "SecretAsVolume",
                                 "secretAsEnv": "SecretAsEnv", "pvcMount": "PvcMount",
                                 "nodeSelector": "NodeSelector"},
    "SecretAsVolume": {"secretName": None, "mountPath": None},
    "SecretAsEnv": {"secretName": None, "keyToEnv": "SecretAsEnv.SecretKeyToEnvMap"},
    "SecretAsEnv.SecretKeyToEnvMap": {"secretKey": None, "envVar": None},
    "PvcMount": {"taskOutputParameter": "TaskOutputParameterSpec", "constant": None,
                 "componentInputParameter": None, "mountPath": None},
    "TaskOutputParameterSpec": {"producerTask": None, "outputParameterKey": None},
    "NodeSelector": {"labels": None},
}
# Fields of those messages that later backends know, with the first KFP release whose
# driver has them: the kubernetes_platform commit its go.mod pins (2.1.0 19a24e3, 2.2.0
# 8b2a099, 2.3.0 to 2.4.1 d911c8b), or from 2.5.0 on the proto in its own tree.
LATER_FIELDS: dict[str, str] = {
    **dict.fromkeys([f"KubernetesExecutorConfig.{f}" for f in (
        "configMapAsVolume", "configMapAsEnv", "fieldPathAsEnv", "imagePullPolicy",
        "imagePullSecret", "podMetadata", "tolerations", "activeDeadlineSeconds")], "2.1.0"),
    **dict.fromkeys([f"KubernetesExecutorConfig.{f}" for f in (
        "genericEphemeralVolume", "nodeAffinity", "podAffinity")], "2.2.0"),
    "SecretAsVolume.optional": "2.2.0",
    "KubernetesExecutorConfig.emptyDirMounts": "2.3.0",
    "KubernetesExecutorConfig.enabledSharedMemory": "2.3.0",
    "SecretAsVolume.secretNameParameter": "2.5.0",
    "SecretAsEnv.secretNameParameter": "2.5.0",
    "PvcMount.pvcNameParameter": "2.5.0",
    "NodeSelector.nodeSelectorJson": "2.5.0",
    "SecretAsEnv.optional": "2.15.0",
    "KubernetesExecutorConfig.securityContext": "2.16.0",
    "PvcMount.subPath": "2.16.0",
}
_NEWEST_READ = "2.17.0"  # the newest backend whose proto LATER_FIELDS was read from


def check_kubernetes_fields(config: Any) -> Optional[str]:
    """Why backend 2.0.5's driver would refuse an executor's KubernetesExecutorConfig (its
    JSON form), naming the first field it does not know and the backends that know it;
    None when every field is one of `KFP_2_0_5_FIELDS` (both a field's JSON name and its
    proto name are accepted, as jsonpb does)."""
    return _unknown_field("KubernetesExecutorConfig", config, "")


def _unknown_field(message: str, value: Any, where: str) -> Optional[str]:
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _unknown_field(message, item, f"{where}[{index}]")
            if problem:
                return problem
        return None
    if not isinstance(value, Mapping):
        return None  # a wrong type: the strict parse that follows names it
    fields = KFP_2_0_5_FIELDS[message]
    for key, item in value.items():
        name = _json_name(str(key))
        path = f"{where}.{key}" if where else str(key)
        if name not in fields:
            since = LATER_FIELDS.get(f"{message}.{name}")
            if since is None:
                close = difflib.get_close_matches(name, list(fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                return (f"{path} is not a field of {message} in any KFP backend up to "
                        f"{_NEWEST_READ}{hint}")
            return (f"{path} ({message}.{name}) needs KFP backend {since} or later: "
                    "backend 2.0.5's driver parses each task's Kubernetes config strictly "
                    "and would fail every task of this executor (failed to unmarshal "
                    f"Kubernetes config, error: unknown field \"{key}\" in "
                    f"kfp_kubernetes.{message})")
        if fields[name] is not None:
            problem = _unknown_field(fields[name], item, path)
            if problem:
                return problem
    return None


def _json_name(name: str) -> str:
    """A proto field's JSON name (`secret_name` -> `secretName`), which jsonpb also takes."""
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def bare_spec(stored: Mapping[str, Any]) -> Mapping[str, Any]:
    """The PipelineSpec of a pipeline version as the server returns it: the spec itself,
    or `{pipeline_spec, platform_spec}` when the package had a platform document."""
    inner = stored.get("pipeline_spec")
    return inner if isinstance(inner, Mapping) and "root" not in stored else stored


def declared_parameters(spec: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The pipeline's own inputs: name -> {parameterType, defaultValue, isOptional}."""
    root = spec.get("root") or {}
    return dict(((root.get("inputDefinitions") or {}).get("parameters") or {}))


def typed_parameters(spec: Mapping[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """`["times=3", "message=hi"]` -> `{"times": 3, "message": "hi"}` as the spec types
    them; ParameterError for an unknown name, a value of the wrong type, or a required
    parameter left out.

    Raises:
        ParameterError: an assignment is not NAME=VALUE, names no declared parameter, has
            a value its type cannot hold (integer, number, boolean, JSON list or object),
            or a parameter without a default is not given. It is a UsageError (exit 2).
    """
    declared = declared_parameters(spec)
    values: dict[str, Any] = {}
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(f"--param '{assignment}' is not NAME=VALUE")
        if name not in declared:
            known = ", ".join(sorted(declared)) or "none"
            raise ParameterError(f"the pipeline has no parameter '{name}' (its parameters: "
                                 f"{known})")
        values[name] = _typed(name, text, declared[name].get("parameterType"))
    missing = [name for name, decl in sorted(declared.items())
               if name not in values and not decl.get("isOptional")
               and "defaultValue" not in decl]
    if missing:
        raise ParameterError("the pipeline needs a value for " + ", ".join(missing)
                             + ": pass --param NAME=VALUE")
    return values


def _typed(name: str, text: str, kind: Any) -> Any:
    try:
        if kind == "NUMBER_INTEGER":
            return int(text)
        if kind == "NUMBER_DOUBLE":
            return float(text)
        if kind == "BOOLEAN":
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError(text)
        if kind in ("LIST", "STRUCT"):
            value = json.loads(text)
            if not isinstance(value, list if kind == "LIST" else dict):
                raise ValueError(text)
            return value
    except ValueError:
        expected = {"NUMBER_INTEGER": "an integer", "NUMBER_DOUBLE": "a number",
                    "BOOLEAN": "true or false", "LIST": "a JSON list",
                    "STRUCT": "a JSON object"}[kind]
        raise ParameterError(f"parameter '{name}' takes {expected}, not {text!r}") from None
    return text  # STRING, or a type this module does not know: sent as given
