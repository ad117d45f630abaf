"""`mlops kfp run --local`: the compiled package, run on this machine as open-source KFP 2.x's
v2 backend would run it, to catch what a cluster would refuse or fail on before uploading.

`emulator.py` does the work: the run-creation checks of the API server, KFP's Argo
compiler and Argo; per task the driver (inputs, outputs, PVC mounts) and the launcher
(placeholders, ExecutorOutput); a real ML Metadata store; each task its own process in its
own mount namespace. This module picks the local stand-ins for what a cluster provides,
checks this machine can start the tasks, and reports the run as it goes:

- the pipeline root: by default a local folder, `local_root` beside the compiled package's
  default place (`kubeflow.output_file`'s folder, build/kubeflow/); or a bucket
  (`--pipeline-root gs://…` / `s3://…`, reached with this machine's credentials, as the
  pods would with theirs), where the launcher's copies of every artifact into and out of
  each pod are emulated too, folder markers and all (`artifact_copies.py`);
- each PersistentVolumeClaim the package mounts: a local folder (`--volume CLAIM=DIR`,
  default build/kubeflow/volumes/<claim>), bind-mounted at the claim's mountPath for the
  tasks that mount it only;
- each Kubernetes Secret the package uses (`kubeflow.secrets`): a local folder holding one
  file per key, as Kubernetes mounts a Secret (`--secret NAME=DIR`, default
  build/kubeflow/secrets/<name>), which must exist before the run: its keys' files fill
  the tasks' `secretAsEnv` variables, and it is bind-mounted at a `secretAsVolume`'s path;
- ML Metadata: a SQLite file beside a local root (`<root>.mlmd.sqlite`; for a bucket root
  build/kubeflow/<bucket>-<path>.mlmd.sqlite), kept between runs, so that a task whose
  caching the package enables is reused as a cluster would reuse it.

The image is not used: each task's command runs with this environment's Python.
Nothing heavy is imported until `execute` runs (`mlops` imports the CLI at every start).
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Optional

import yaml

from pipeline.definition.config import PipelineConfig
from pipeline.errors import UsageError, UserError

if TYPE_CHECKING:
    from pipeline.kubeflow import warm_pods

# emulator.BACKENDS, oldest first (not imported from there: it loads kfp and ML Metadata);
# tests/pipeline/kubeflow/test_local_run.py keeps the two equal.
BACKENDS = ("2.0.5", "2.5.0")
ROOT_FOLDER = "local_root"
VOLUMES_FOLDER = "volumes"
SECRETS_FOLDER = "secrets"
METADATA_SUFFIX = ".mlmd.sqlite"
_REMOTE = ("gs://", "s3://", "minio://")


class LocalOptionError(UsageError):
    """An option of `mlops kfp run --local` that cannot be used as given."""


class LocalRunError(UserError):
    """The package cannot run here, KFP would refuse it, or the run failed."""


@dataclass(frozen=True)
class Plan:
    """What a local run uses: every path absolute and on this machine."""

    package: Path
    backend: str
    pipeline_root: str  # an absolute local folder or a bucket URI
    metadata_path: Path
    volumes: dict[str, Path]  # claim -> local folder
    mount_paths: dict[str, tuple[str, ...]]  # claim -> where the pods mount it
    secrets: dict[str, Path]  # Secret -> local folder, one file per key
    secret_uses: dict[str, "SecretUse"]  # Secret -> how the pods use it
    parameters: dict[str, Any]
    tasks: tuple[str, ...]
    remote_inputs: tuple[str, ...]  # bucket URIs the package hands its tasks


def make_plan(config: PipelineConfig, package: Path, spec: Mapping[str, Any],
              parameters: Mapping[str, Any], backend: Optional[str] = None,
              pipeline_root: Optional[str] = None, volumes: Iterable[str] = (),
              secrets: Iterable[str] = ()) -> Plan:
    """The local run of `package` (its PipelineSpec `spec`, parameters already typed).

    Raises:
        LocalOptionError: an unknown backend, a bucket or malformed root, a --volume that
            is not CLAIM=DIR or names a claim the package does not mount, a --secret that
            is not NAME=DIR or names a Secret the package does not use, or a Secret the
            package uses without a folder (given, or the default one) standing in for it.
    """
    backend = backend or BACKENDS[-1]
    if backend not in BACKENDS:
        raise LocalOptionError(f"--backend {backend}: the local run emulates KFP "
                               f"{' and '.join(BACKENDS)}")
    base = Path(config.kubeflow.output_file).parent
    root = _pipeline_root(pipeline_root) if pipeline_root else str(base / ROOT_FOLDER)
    mount_paths = package_claims(package)
    chosen: dict[str, Path] = {}
    for assignment in volumes:
        claim, sep, folder = assignment.partition("=")
        claim = claim.strip()
        if not sep or not claim or not folder:
            raise LocalOptionError(f"--volume '{assignment}' is not CLAIM=DIR")
        if claim not in mount_paths:
            mounted = ", ".join(sorted(mount_paths)) or "none"
            raise LocalOptionError(f"--volume {claim}: {package} mounts no such claim (it "
                                   f"mounts: {mounted})")
        chosen[claim] = _local_folder(f"--volume {claim}", folder)
    secret_uses = package_secrets(package)
    secret_folders = _secret_folders(package, secret_uses, base, secrets)
    return Plan(
        package=package, backend=backend, pipeline_root=root,
        metadata_path=_metadata_path(root, base),
        volumes={claim: chosen.get(claim, base / VOLUMES_FOLDER / claim)
                 for claim in sorted(mount_paths)},
        mount_paths=mount_paths, secrets=secret_folders,
        secret_uses=secret_uses, parameters=dict(parameters),
        tasks=tuple((spec.get("root", {}).get("dag", {}).get("tasks") or {})),
        remote_inputs=_remote_constants(spec))


def package_claims(package: Path) -> dict[str, tuple[str, ...]]:
    """Claim -> mount paths, from the package's Kubernetes platform spec (the `pvcMount`s
    `mlops kfp compile` writes from `kubeflow.volumes`; a claim named by a task's input is
    known only when the task runs)."""
    claims: dict[str, list[str]] = {}
    for config in _kubernetes_configs(package):
        for mount in config.get("pvcMount") or []:
            name = mount.get("constant") or ((mount.get("pvcNameParameter") or {})
                                             .get("runtimeValue") or {}).get("constant")
            if isinstance(name, str) and name:
                paths = claims.setdefault(name, [])
                if mount.get("mountPath") and mount["mountPath"] not in paths:
                    paths.append(mount["mountPath"])
    return {claim: tuple(paths) for claim, paths in claims.items()}


@dataclass(frozen=True)
class SecretUse:
    """How a package's tasks use one Kubernetes Secret: the environment variables its keys
    fill (`secretAsEnv`) and where it is mounted (`secretAsVolume`)."""

    env: tuple[str, ...]
    mount_paths: tuple[str, ...]


def package_secrets(package: Path) -> dict[str, SecretUse]:
    """Secret -> its use, from the package's Kubernetes platform spec (the `secretAsEnv` and
    `secretAsVolume` entries `mlops kfp compile` writes from `kubeflow.secrets`)."""
    uses: dict[str, tuple[list[str], list[str]]] = {}  # name -> (variables, mount paths)
    for config in _kubernetes_configs(package):
        for kind, index in (("secretAsEnv", 0), ("secretAsVolume", 1)):
            for item in config.get(kind) or []:
                name = item.get("secretName")
                if not isinstance(name, str) or not name:
                    continue
                found = uses.setdefault(name, ([], []))[index]
                values = ([pair.get("envVar") for pair in item.get("keyToEnv") or []]
                          if kind == "secretAsEnv" else [item.get("mountPath")])
                for value in values:
                    if value and value not in found:
                        found.append(value)
    return {name: SecretUse(tuple(env), tuple(paths))
            for name, (env, paths) in sorted(uses.items())}


def _kubernetes_configs(package: Path) -> Iterator[dict[str, Any]]:
    """Each executor's KubernetesExecutorConfig (JSON form) in the package's platform spec."""
    for document in yaml.safe_load_all(package.read_text()):
        executors = ((((document or {}).get("platforms") or {}).get("kubernetes") or {})
                     .get("deploymentSpec") or {}).get("executors") or {}
        for config in executors.values():
            yield config or {}


def _secret_folders(package: Path, uses: Mapping[str, SecretUse], base: Path,
                    assignments: Iterable[str]) -> dict[str, Path]:
    """Each Secret the package uses -> its local folder: `--secret NAME=DIR`, else
    <base>/secrets/<name>; either must be a folder already (its files are the keys)."""
    chosen: dict[str, Path] = {}
    for assignment in assignments:
        name, sep, folder = assignment.partition("=")
        name = name.strip()
        if not sep or not name or not folder:
            raise LocalOptionError(f"--secret '{assignment}' is not NAME=DIR")
        if name not in uses:
            used = ", ".join(sorted(uses)) or "none"
            raise LocalOptionError(f"--secret {name}: {package} uses no such Secret (it "
                                   f"uses: {used})")
        chosen[name] = _local_folder(f"--secret {name}", folder)
    folders = {name: chosen.get(name, base / SECRETS_FOLDER / name) for name in uses}
    for name, folder in folders.items():
        if not folder.is_dir():
            given = (f"--secret {name}={chosen[name]}: not a folder" if name in chosen else
                     f"{package} uses Secret {name} ({_use_text(uses[name])}) and no folder "
                     f"stands in for it: pass --secret {name}=DIR, or create {folder}")
            raise LocalOptionError(f"{given}; the folder holds one file per key of the Secret, "
                                   "as Kubernetes mounts it")
    return folders


def _use_text(use: SecretUse) -> str:
    parts = ([f"env {', '.join(use.env)}"] if use.env else []) + (
        [f"at {', '.join(use.mount_paths)}"] if use.mount_paths else [])
    return "; ".join(parts) or "unused"


def check_package(plan: Plan) -> None:
    """What KFP's API server, its Argo compiler and Argo would refuse when the run is
    created (and what the emulation does not model), before anything runs.

    Raises:
        LocalRunError: naming the refusal, in the backend's words.
    """
    from pipeline.kubeflow import emulator

    with _refusals(plan):
        loaded = emulator.load_package(plan.package)
        emulator.check_run_creation(loaded, plan.backend)
        emulator.check_not_emulated(loaded, plan.backend)
        emulator.runtime_parameters(loaded.spec, plan.parameters)


def check_machine(plan: Plan) -> None:
    """What would make every task fail here, said once before anything runs.

    Raises:
        LocalRunError: no private mount namespace for the tasks, or a mount path a
            non-root user's task cannot create.
    """
    from pipeline.kubeflow import emulator

    problem = emulator.pod_problem()
    if problem:
        raise LocalRunError(f"the local run cannot start tasks on this machine: {problem}")
    if os.geteuid() == 0:
        return
    mounted = [("volume", claim, paths, "claim's")
               for claim, paths in plan.mount_paths.items()]
    mounted += [("secret", name, use.mount_paths, "Secret's")
                for name, use in plan.secret_uses.items()]
    for kind, name, paths, whose in mounted:
        for path in paths:
            if not os.path.isdir(path) and not os.access(_existing_ancestor(path), os.W_OK):
                raise LocalRunError(
                    f"{kind} {name} is mounted at {path}, which does not exist here and "
                    f"which a task run by a non-root user cannot create: create it once "
                    f"(sudo mkdir -p {path}); it stays empty, each task sees the {whose} "
                    "folder there")


Echo = Callable[[str], None]


def execute(plan: Plan, echo: Echo, echo_error: Echo, verbose: bool = False,
            warm: bool | warm_pods.WarmStarter = False) -> Any:
    """Runs the plan, one line per task as it ends; returns the EmulatedRun when it
    SUCCEEDED. `warm`: each task forked from one process that has imported TFX
    (`warm_pods.py`), instead of a new interpreter per task; True starts that process for
    this run, a `warm_pods.WarmStarter` is one shared between runs (`emulator.run_package`).

    Raises:
        LocalRunError: a task failed (the tail of its log goes to `echo_error` first), or
            the package is refused as `check_package` says.
    """
    from pipeline.kubeflow import emulator

    width = max((len(task) for task in plan.tasks), default=0)

    def report(task: Any) -> None:
        took = f"{task.seconds:7.1f}s" if task.state != "SKIPPED" else ""
        echo(f"  {task.name:<{width}}  {task.state:<9}{took}".rstrip())
        if verbose and task.log:
            echo(f"    log: {task.log}")

    local_folders = [] if plan.pipeline_root.startswith(_REMOTE) else [Path(plan.pipeline_root)]
    for folder in (*local_folders, plan.metadata_path.parent, *plan.volumes.values()):
        folder.mkdir(parents=True, exist_ok=True)
    with _refusals(plan):
        run = emulator.run_package(
            plan.package, str(plan.pipeline_root), backend=plan.backend,
            parameters=plan.parameters,
            volumes={claim: str(folder) for claim, folder in plan.volumes.items()},
            secrets={name: str(folder) for name, folder in plan.secrets.items()},
            metadata_path=plan.metadata_path, on_result=report, warm=warm)
    counts = ", ".join(f"{sum(t.state == state for t in run.tasks)} {state.lower()}"
                       for state in ("SUCCEEDED", "CACHED", "FAILED", "SKIPPED")
                       if any(t.state == state for t in run.tasks))
    if run.state == "SUCCEEDED":
        echo(f"Local run {run.run_id} SUCCEEDED in {run.seconds:.1f}s ({counts}); "
             f"artifacts under {run.run_root}")
        return run
    failed = next(task for task in run.tasks if task.state == "FAILED")
    message, _, tail = failed.error.partition("\n")
    if tail:
        echo_error(tail)
    log = f" (log: {failed.log})" if failed.log else ""
    raise LocalRunError(f"local run {run.run_id} FAILED ({counts}): task {failed.name}: "
                        f"{message}{log}")


@contextlib.contextmanager
def _refusals(plan: Plan) -> Iterator[None]:
    from pipeline.kubeflow import emulator

    try:
        yield
    except emulator.PipelineRejected as error:
        raise LocalRunError(f"KFP {plan.backend} would refuse {plan.package} at run "
                            f"creation: {error}") from None
    except emulator.NotEmulated as error:
        raise LocalRunError(f"the local run cannot run {plan.package}: {error}") from None


def describe(plan: Plan) -> list[str]:
    """The lines printed before the run: what runs, and where its stand-ins are."""
    lines = [f"Running {plan.package} on this machine as KFP {plan.backend}'s driver and "
             f"launcher would ({len(plan.tasks)} task{'s' * (len(plan.tasks) != 1)}, "
             "each task's command in this "
             "environment, not the image)",
             f"  pipeline root {plan.pipeline_root}, metadata {plan.metadata_path}"]
    for claim, folder in plan.volumes.items():
        where = ", ".join(plan.mount_paths[claim]) or "?"
        lines.append(f"  volume {claim} at {where}: {folder}")
    for name, folder in plan.secrets.items():
        lines.append(f"  secret {name} ({_use_text(plan.secret_uses[name])}): {folder}")
    buckets = [*([plan.pipeline_root] if plan.pipeline_root.startswith(_REMOTE) else []),
               *plan.remote_inputs]
    if buckets:
        lines.append("  note: buckets are reached with this machine's credentials and "
                     "endpoints (its environment), standing in for the pods': "
                     + ", ".join(dict.fromkeys(buckets)))
    return lines


def _pipeline_root(value: str) -> str:
    if value.startswith(("gs://", "s3://")):
        return value.rstrip("/")
    if "://" in value:
        raise LocalOptionError(f"--pipeline-root {value}: a local folder, gs:// or s3:// is "
                               "needed (KFP's minio:// is not a TensorFlow filesystem: give "
                               "MinIO's bucket as s3:// with AWS_ENDPOINT_URL set)")
    return str(_local_folder("--pipeline-root", value))


def _metadata_path(root: str, base: Path) -> Path:
    if root.startswith(_REMOTE):
        name = re.sub(r"[^A-Za-z0-9.-]+", "-", root.split("://", 1)[1]).strip("-")
        return base / (name + METADATA_SUFFIX)
    return Path(root).with_name(Path(root).name + METADATA_SUFFIX)


def _local_folder(option: str, value: str) -> Path:
    if "://" in value:
        raise LocalOptionError(f"{option} {value}: a local folder is needed")
    return Path(value).expanduser().resolve()


def _existing_ancestor(path: str) -> str:
    current = os.path.abspath(path)
    while not os.path.exists(current):
        current = os.path.dirname(current)
    return current


def _remote_constants(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Bucket URIs among the constants the root DAG's tasks receive (TFX's exec properties,
    e.g. ExampleGen's `input_base`), as they appear; the pipeline root is not one of them."""
    found: list[str] = []

    def visit(value: Any) -> None:
        if isinstance(value, str):
            for word in value.replace('"', " ").replace(",", " ").split():
                if word.startswith(_REMOTE) and word not in found:
                    found.append(word)
        elif isinstance(value, Mapping):
            for item in value.values():
                visit(item)
        elif isinstance(value, list):
            for item in value:
                visit(item)

    for task in ((spec.get("root") or {}).get("dag") or {}).get("tasks", {}).values():
        for parameter in ((task.get("inputs") or {}).get("parameters") or {}).values():
            visit((parameter.get("runtimeValue") or {}).get("constant"))
    return tuple(found)
