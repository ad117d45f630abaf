"""The compiled package run as open-source Kubeflow Pipelines runs it, on a bucket root.

Shared by `test_kubeflow_on_gcs.py` and `test_kubeflow_on_s3.py` (one module per store, so
that the runs of each go on their own test worker); each makes its fixtures with
`fixtures(...)`, which names the backend of each run it makes, and runs the tests of
`__all__`, plus the second run's test where it makes one.

No cluster exists here, so `pipeline/kubeflow/emulator.py` executes the package the way
KFP's v2 backend does, written from its Go source (tags 2.0.5 and 2.5.0): the API server's
and Argo's checks at run creation (`apiserver/template/v2_template.go`,
`compiler/visitor.go`, Argo's DAG task-name rule); for each task, the driver
(`driver/driver.go`: `resolveInputs` hands upstream artifacts over untyped, as
`metadata/client.go` `GetOutputArtifactsByExecutionId` builds them with `Schema: ""`;
`provisionOutputs` adds the `executor-logs` output on 2.5.0; `makeVolumeMountPatch`
mounts PVCs) and the launcher (`component/launcher_v2.go`: `{{$}}` replaced by the
ExecutorInput, output URIs `<root>/<pipeline>/<run>/<task>[/<uuid>]/<output>`, every input
artifact downloaded from the bucket into the pod before the command with
`objectstore.DownloadBlob`'s key semantics, outputs uploaded after it, the ExecutorOutput
read back); a real ML Metadata store. Each task is its own process (its pod) in its own
mount namespace, with the container's command run in this environment instead of the
image. The buckets are real servers of the stores' APIs on loopback
(`tests/object_stores.py`), reached by the clients the image runs: TensorFlow's own GCS
filesystem and tensorflow-io's S3 filesystem, Beam's, google-cloud-storage and boto3.

A bucket holds the data and the artifacts as a scheduled pipeline's would: the first run
finds no served model and pushes version 1; a new span arrives, and the next run trains on
it, compares the candidate with the served version and pushes version 2. The runs go the
way `mlops kfp run --local --pipeline-root <bucket>` takes them
(`pipeline/kubeflow/local_run.py`: the plan, the checks, the run with a line per task).
The gs:// module makes both runs, on backend 2.0.5 then 2.5.0, so each backend runs on a
bucket, serving from the bucket; the s3:// module makes both on 2.5.0 (2.0.5's launcher
cannot reach a MinIO endpoint), serving from a claim.
Stock TFX's output fails the third task on such a root (the folder-marker test in
tests/pipeline/kubeflow/test_emulator.py); this package's entrypoint leaves none.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import pytest

from components import versioned_pusher
from pipeline.definition.config import load_config
from pipeline.kubeflow import compiler, emulator, local_run, object_store, warm_pods
from pipeline.kubeflow import package as package_lib
from tests.conftest import FAST_TRAINING, LENIENT, ROWS, copy_taxi_span, write_config
from tests.object_stores import LocalGcs, new_bucket

CLAIM = "serving-models"
# The tests every store's module runs (`from tests.e2e.kubeflow_scenario import *`), in
# the order pytest runs them: the second reads the first's run. A module whose site makes a
# second run then imports that run's test,
# `test_a_new_span_is_trained_on_compared_with_the_served_version_and_pushed`.
__all__ = [  # noqa: RUF022 (the scenario's order, not the alphabet's)
    "test_first_run_pushes_version_1",
    "test_every_input_was_copied_into_its_pod_and_no_output_left_a_folder_marker",
]


@dataclass
class Site:
    """One deployment: a bucket with the data and the pipeline root, a local folder for
    what stays on this machine, and where the Pusher serves from."""

    folder: Path
    bucket: str  # e.g. gs://kfp-1a2b3c
    serving: str  # the serving directory as the pods see it
    claim: Optional[Path]  # the claim's storage when serving is on a volume
    backends: tuple[str, ...]  # each run's backend: the first run's, then the second's
    kubeflow: dict  # `kubeflow.env` and `kubeflow.secrets`: the pods' credentials
    secrets: dict[str, Path]  # each Secret's stand-in folder, one file per key

    @property
    def root(self) -> str:
        return f"{self.bucket}/root"

    def upload_span(self, span: int) -> None:
        local = copy_taxi_span(span, self.folder / "data", rows=ROWS)
        bucket = object_store.open_bucket(self.bucket)
        for path in local.iterdir():
            bucket.write(f"data/span-{span}/{path.name}", path.read_bytes())

    def served_versions(self) -> list[int]:
        base = str(self.claim) if self.claim else self.serving
        return versioned_pusher.existing_versions(f"{base}/chicago-taxi")


def pod_credentials(store, folder: Path) -> tuple[dict, dict[str, Path]]:
    """The store's credentials as a real install hands them to its pods: from a Kubernetes
    Secret (`kubeflow.secrets`), a key file mounted for GCS, keys as variables for S3
    (MinIO's `mlpipeline-minio-artifact` holds `accesskey` and `secretkey`). Where they
    name the same variable, the container's own env wins over what the pod inherits here."""
    secret = folder / "secret"
    if isinstance(store, LocalGcs):
        store.write_key_file(secret / "key.json")
        return ({"env": {"GOOGLE_APPLICATION_CREDENTIALS": "/var/secrets/gcs/key.json"},
                 "secrets": [{"secret": "gcs-key", "mount_path": "/var/secrets/gcs"}]},
                {"gcs-key": secret})
    secret.mkdir(parents=True)
    (secret / "accesskey").write_text(store.ACCESS_KEY)
    (secret / "secretkey").write_text(store.SECRET_KEY)
    return ({"env": {"AWS_ENDPOINT_URL": store.endpoint},
             "secrets": [{"secret": "mlpipeline-minio-artifact",
                          "env": {"AWS_ACCESS_KEY_ID": "accesskey",
                                  "AWS_SECRET_ACCESS_KEY": "secretkey"}}]},
            {"mlpipeline-minio-artifact": secret})


def make_site(folder: Path, store, scheme: str, serving_on_bucket: bool,
              backends: tuple[str, ...]) -> Site:
    bucket = f"{scheme}{new_bucket(store, 'kfp')}"
    claim = None if serving_on_bucket else folder / "volume"
    kubeflow, secrets = pod_credentials(store, folder)
    site = Site(folder=folder, bucket=bucket,
                serving=f"{bucket}/serving" if serving_on_bucket else "/mnt/serving-models",
                claim=claim, backends=backends, kubeflow=kubeflow, secrets=secrets)
    site.upload_span(1)
    return site


def compile_for(site: Site) -> compiler.Package:
    """The repo's config with the kubeflow profile, pointed at the site's bucket."""
    volumes = [] if site.claim is None else [
        {"claim": CLAIM, "mount_path": site.serving, "components": ["ServingBaseline", "Pusher"]}]
    config_file = write_config(site.folder, {
        **FAST_TRAINING, **LENIENT,
        "profiles.kubeflow.pipeline.root": site.root,
        "profiles.kubeflow.data.input_base": f"{site.bucket}/data",
        "profiles.kubeflow.serving.base_directory": site.serving,
        "kubeflow.volumes": volumes,
        "kubeflow.env": site.kubeflow["env"], "kubeflow.secrets": site.kubeflow["secrets"]})
    config = load_config(config_file, profile="kubeflow")
    return compiler.compile_package(config, str(site.folder / "pipeline.yaml"))


def execute(site: Site, package: compiler.Package, backend: str,
            warm: bool | warm_pods.WarmStarter) -> emulator.EmulatedRun:
    """One run as `mlops kfp run --local --warm --backend B --pipeline-root <bucket>/root
    [--volume CLAIM=DIR] --secret NAME=DIR` (warm: each task forked from one process that
    imported TFX, `warm_pods.py`, here the module's, shared by its runs; cold starts are run
    by test_emulator and test_local_run)."""
    config = load_config(site.folder / "pipeline_config.yaml", profile="kubeflow")
    spec = package_lib.read_spec(package.path)
    volumes = [] if site.claim is None else [f"{CLAIM}={site.claim}"]
    secrets = [f"{name}={folder}" for name, folder in site.secrets.items()]
    plan = local_run.make_plan(config, package.path, spec, {}, backend, site.root, volumes,
                               secrets)
    local_run.check_package(plan)
    local_run.check_machine(plan)
    lines: list[str] = []
    run = local_run.execute(plan, lines.append, lines.append, warm=warm)
    assert sorted(line.split()[:2] for line in lines[:-1]) == sorted(
        [task.name, "SUCCEEDED"] for task in run.tasks)  # a line per task as it ended
    assert lines[-1].startswith(f"Local run {run.run_id} SUCCEEDED in ")
    # every task of the package ran as its own pod: its own process and log, no traceback
    assert len(run.tasks) == len(package.tasks) == 10
    for task in run.tasks:
        assert "Traceback" not in Path(task.log).read_text(), task.log
    return run


def metadata(run: emulator.EmulatedRun, task: str, output: str) -> dict:
    return run.task(task).outputs[output][0]["metadata"]


def assert_no_folder_markers(run: emulator.EmulatedRun) -> None:
    for task in run.tasks:
        for name, artifacts in task.outputs.items():
            uri = artifacts[0]["uri"]
            markers = object_store.folder_markers(object_store.open_bucket(uri),
                                                  object_store.parse(uri).key)
            assert markers == [], f"{task.name}.{name}: {[m.key for m in markers]}"


def assert_executor_logs_uploaded(run: emulator.EmulatedRun, backend: str) -> None:
    """Backend 2.5.0 adds `executor-logs` to every task, which TFX never sees and the
    launcher uploads: the Trainer's log, read back from the bucket; 2.0.5 has no such
    output."""
    trainer = run.task("Trainer")
    assert ("executor-logs" in trainer.outputs) == (backend == "2.5.0")
    if backend == "2.5.0":
        logs = trainer.outputs["executor-logs"][0]["uri"]
        uploaded = object_store.open_bucket(logs).read(object_store.parse(logs).key)
        assert uploaded == Path(trainer.log).read_bytes()


# --- the scenario, in this order (the tests of __all__, then the second run's) ----------


def test_first_run_pushes_version_1(site: Site, package, runs: dict, warm):
    run = runs["first"] = execute(site, package, site.backends[0], warm)
    assert [task.state for task in run.tasks] == ["SUCCEEDED"] * len(package.tasks)
    assert metadata(run, "CsvExampleGen", "examples")["custom:span"] == 1
    assert metadata(run, "ServingBaseline", "model")["served_version"] == 0
    blessing = metadata(run, "Evaluator", "blessing")
    assert blessing["blessed"] == 1 and "baseline_model_id" not in blessing
    pushed = metadata(run, "Pusher", "pushed_model")
    assert pushed["pushed_version"] == "1"
    assert pushed["pushed_destination"] == f"{site.serving}/chicago-taxi/1"
    assert site.served_versions() == [1]
    assert_executor_logs_uploaded(run, site.backends[0])


def test_every_input_was_copied_into_its_pod_and_no_output_left_a_folder_marker(
        site: Site, runs: dict):
    """KFP's launcher downloaded each task's inputs (bytes counted per task): the copy
    of StatisticsGen's `examples` and the Evaluator's `model` succeeded, which a marker
    object would have failed (kubeflow/pipelines#13476)."""
    run = runs["first"]
    for task in ("StatisticsGen", "Transform", "Trainer", "Evaluator", "Pusher"):
        assert run.task(task).copied_in > 0, task
    for task in run.tasks:  # every byte under each input's prefix, and nothing else
        assert task.copied_in == sum(map(stored_bytes, input_uris(task))), task.name
    assert run.task("CsvExampleGen").copied_in == 0
    assert_no_folder_markers(run)


def input_uris(task: emulator.TaskRun) -> list[str]:
    return [artifact["uri"] for artifacts in task.executor_input["inputs"].get(
        "artifacts", {}).values() for artifact in artifacts["artifacts"]]


def stored_bytes(uri: str) -> int:
    """The bytes of the objects whose keys begin with the URI's key: what KFP's launcher
    lists and copies for an input artifact (a plain prefix: `artifact_copies.py`)."""
    return sum(item.size for item in object_store.open_bucket(uri).list(
        object_store.parse(uri).key))


def test_a_new_span_is_trained_on_compared_with_the_served_version_and_pushed(
        site: Site, package, runs: dict, warm):
    """No driver ran `{SPAN}` at compile time: the run reads the span present when it
    starts. (Only in the modules whose site makes a second run.)"""
    site.upload_span(2)
    run = runs["second"] = execute(site, package, site.backends[1], warm)
    assert metadata(run, "CsvExampleGen", "examples")["custom:span"] == 2
    baseline = metadata(run, "ServingBaseline", "model")
    assert baseline["served_version"] == 1
    blessing = metadata(run, "Evaluator", "blessing")
    assert blessing["blessed"] == 1
    # the Evaluator compared with the served model: its id and the candidate's are the
    # names KFP gave the artifacts (MLMD ids), as TFX's entrypoint records them
    assert blessing["baseline_model_id"] == run.task("ServingBaseline").outputs["model"][0][
        "name"]
    assert metadata(run, "Pusher", "pushed_model")["pushed_version"] == "2"
    assert site.served_versions() == [1, 2]
    served = site.claim or site.serving
    manifest = versioned_pusher.read_manifest(f"{served}/chicago-taxi/2")
    assert manifest["model_uri"] == run.task("Trainer").outputs["model"][0]["uri"]
    assert_no_folder_markers(run)
    assert_executor_logs_uploaded(run, site.backends[1])


def fixtures(store_fixture: str, scheme: str, serving_on_bucket: bool,
             backends: tuple[str, ...]) -> tuple[Callable, ...]:
    """The module fixtures of one store's test module: its environment, site, package, the
    preloaded process its runs' tasks fork from, and the runs the scenario's tests share;
    `backends` names each run's backend (one run, or two)."""

    @pytest.fixture(scope="module", autouse=True)
    def store_environment(request):
        store = request.getfixturevalue(store_fixture)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in store.environment().items():
                patch.setenv(name, value)
            yield store

    @pytest.fixture(scope="module")
    def site(tmp_path_factory, store_environment) -> Site:
        return make_site(tmp_path_factory.mktemp(f"kubeflow_{scheme[:2]}"), store_environment,
                         scheme, serving_on_bucket, backends)

    @pytest.fixture(scope="module")
    def package(site: Site) -> compiler.Package:
        return compile_for(site)

    @pytest.fixture(scope="module")
    def warm(store_environment):
        with warm_pods.shared_parent(sys.executable, os.environ) as parent:
            yield parent

    @pytest.fixture(scope="module")
    def runs() -> dict:
        return {}

    return store_environment, site, package, warm, runs
