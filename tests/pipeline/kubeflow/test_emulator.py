"""The KFP v2 backend emulation: what KFP refuses, what a task receives and what it publishes.

Most tests run small hand-written KFP v2 specs whose tasks are `python -c` scripts (a few
tens of milliseconds each); the last ones run packages compiled by TFX's
`KubeflowV2DagRunner`, through TFX's stock container entrypoint and this package's, their
tasks forked from one process that imported both (`warm_pods.py`: a fraction of a second
per task, against five to ten for a new interpreter), but for one task on an S3 root that
starts as a new interpreter (the suite's cold start of a TFX task).
Each test names the KFP source (kubeflow/pipelines, tags 2.0.5 / 2.5.0) it checks.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from pipeline.kubeflow import compiler, emulator, object_store, warm_pods
from pipeline.kubeflow.emulator import NotEmulated, PipelineRejected, run_package
from tests.conftest import REPO
from tests.object_stores import new_bucket
from tests.pipeline.kubeflow.handwritten import (CONSUMER, PRODUCER, Step, secret_folder,
                                                 secret_reader, write_package)

def run(tmp_path: Path, package: Path, **options: Any) -> emulator.EmulatedRun:
    options.setdefault("metadata_path", tmp_path / "metadata.sqlite")
    return run_package(package, str(tmp_path / "root"), **options)


def store(tmp_path: Path) -> metadata_store.MetadataStore:
    config = mlmd.ConnectionConfig()
    config.sqlite.filename_uri = str(tmp_path / "metadata.sqlite")
    return metadata_store.MetadataStore(config)


# --- run creation ------------------------------------------------------------------------


def test_schema_version_other_than_2_1_0_is_refused(tmp_path):
    """apiserver/template/v2_template.go `NewV2SpecTemplate`: KFP only runs schema 2.1.0."""
    package = write_package(tmp_path, [Step("a")], schema="2.0.0")
    with pytest.raises(PipelineRejected, match="KFP only supports schema version 2.1.0, but "
                                               "the pipeline spec has version 2.0.0"):
        run(tmp_path, package)


def test_parameters_are_checked_at_run_creation(tmp_path):
    """v2_template.go `validatePipelineJobInputs`: unknown, missing and mistyped parameters
    are refused; argocompiler/argo.go `Compile` fills the defaults."""
    step = Step("a", parameters={"n": ("NUMBER_INTEGER", {"componentInputParameter": "n"})})
    package = write_package(tmp_path, [step], root_parameters={
        "n": {"parameterType": "NUMBER_INTEGER", "defaultValue": 5}})
    with pytest.raises(PipelineRejected, match="not required by pipeline: extra"):
        run(tmp_path, package, parameters={"extra": 1})
    with pytest.raises(PipelineRejected, match="input parameter n requires type double or "
                                               "integer"):
        run(tmp_path, package, parameters={"n": "five"})
    assert run(tmp_path, package).task("a").executor_input["inputs"]["parameterValues"] == {"n": 5}


# --- what a task receives ----------------------------------------------------------------


@pytest.mark.parametrize("backend", emulator.BACKENDS)
def test_inputs_are_untyped_artifacts_named_by_their_mlmd_id(tmp_path, backend, monkeypatch):
    """driver.go `resolveUpstreamArtifacts`/`resolveInputs` take the producer's outputs from
    metadata/client.go `GetOutputArtifactsByExecutionId` (`Schema: "" // TODO`), converted by
    metadata/converter.go `toRuntimeArtifact`: name = MLMD id, `type: {instanceSchema: ""}`,
    custom properties as metadata (numbers as doubles, bools as ints, `display_name` added by
    `RecordArtifact`). The task gets exactly that through `{{$}}` (launcher_v2.go
    `getPlaceholders`), compact camelCase JSON."""
    received = tmp_path / "received.json"
    package = write_package(tmp_path, [PRODUCER, CONSUMER])
    result = run(tmp_path, package, backend=backend, env={**os.environ, "RECEIVED": str(received)})

    assert result.state == "SUCCEEDED", result.task("consume").error
    consumer = result.task("consume")
    assert json.loads(received.read_text()) == consumer.executor_input
    assert '": ' not in received.read_text()  # compact, as Go's protojson.Marshal
    [artifact] = consumer.executor_input["inputs"]["artifacts"]["data"]["artifacts"]
    [stored] = store(tmp_path).get_artifacts_by_id([int(artifact["name"])])
    assert artifact["type"] == {"instanceSchema": ""}
    assert artifact["uri"] == stored.uri == result.task("produce").outputs["data"][0]["uri"]
    assert stored.custom_properties["rows"].double_value == 7.0
    assert {k: artifact["metadata"][k] for k in ("rows", "ok", "display_name")} == {
        "rows": 7, "ok": 1, "display_name": "data"}
    assert ("store_session_info" in artifact["metadata"]) == (backend == "2.5.0")
    assert consumer.executor_input["inputs"]["parameterValues"] == {"size": 42}


@pytest.mark.parametrize("backend, publish_logs", [("2.0.5", None), ("2.5.0", None),
                                                   ("2.5.0", False)])
def test_output_uris_and_executor_logs_per_backend(tmp_path, backend, publish_logs):
    """driver.go `provisionOutputs`: 2.0.5 lays outputs out as
    `<root>/<pipeline>/<run>/<task>/<output>`, 2.5.0 puts a uuid folder before `<output>` and,
    with `--publish_logs` true by default (cmd/driver/main.go; PUBLISH_LOGS=true in the API
    server's manifests), adds an `executor-logs` output typed `system.Artifact`, where the
    launcher writes the task's log (launcher_v2.go `getLogWriter`)."""
    result = run(tmp_path, write_package(tmp_path, [PRODUCER]), backend=backend, run_id="r1",
                 publish_logs=publish_logs)

    outputs = result.task("produce").executor_input["outputs"]
    task_root = f"{tmp_path}/root/emu-test/r1/produce"
    uri = outputs["artifacts"]["data"]["artifacts"][0]["uri"]
    assert outputs["outputFile"] == "/tmp/kfp_outputs/output_metadata.json"
    assert outputs["parameters"] == {"size": {"outputFile": "/tmp/kfp/outputs/size"}}
    if backend == "2.0.5":
        assert uri == f"{task_root}/data"
        assert set(outputs["artifacts"]) == {"data"}
    else:
        salt = uri[len(task_root) + 1:-len("/data")]
        assert uri == f"{task_root}/{salt}/data" and len(salt) == 36
        assert ("executor-logs" in outputs["artifacts"]) == (publish_logs is None)
    if "executor-logs" in outputs["artifacts"]:
        logs = outputs["artifacts"]["executor-logs"]["artifacts"][0]
        assert logs["type"] == {"schemaTitle": "system.Artifact"}
        assert logs["uri"] == f"{task_root}/{salt}/executor-logs"
        assert Path(logs["uri"]).read_text() == Path(result.task("produce").log).read_text()


def test_output_missing_from_executor_output_is_still_published(tmp_path):
    """launcher_v2.go `uploadOutputArtifacts`: every provisioned output is recorded in MLMD
    (state LIVE, `display_name` only) even when the task writes no ExecutorOutput
    (`getExecutorOutputFile`: a missing file is an empty ExecutorOutput)."""
    step = Step("quiet", outputs=("data",))
    result = run(tmp_path, write_package(tmp_path, [step]), backend="2.0.5")

    [artifact] = result.task("quiet").outputs["data"]
    assert artifact["metadata"] == {"display_name": "data"}
    assert artifact["uri"].endswith("/quiet/data")
    [stored] = store(tmp_path).get_artifacts_by_id([int(artifact["name"])])
    assert stored.state == mlmd.Artifact.LIVE


def test_cache_reuses_outputs_only_when_enabled(tmp_path):
    """driver.go `getFingerPrintsAndID`/`reuseCachedOutputs`: a task with
    `cachingOptions.enableCache` and the same cache key is not run again and publishes the
    earlier artifacts as CACHED; without it the task always runs."""
    package = write_package(tmp_path, [Step("cached", outputs=("data",), cache=True),
                                       Step("fresh", outputs=("data",))])
    first, second = run(tmp_path, package), run(tmp_path, package)

    assert [t.state for t in second.tasks] == ["CACHED", "SUCCEEDED"]
    assert second.task("cached").outputs == first.task("cached").outputs
    assert second.task("fresh").outputs["data"] != first.task("fresh").outputs["data"]
    [execution] = store(tmp_path).get_executions_by_id([second.task("cached").execution_id])
    assert execution.last_known_state == mlmd.Execution.CACHED


# --- volumes -----------------------------------------------------------------------------


def test_pvc_is_bind_mounted_for_its_task_only(tmp_path):
    """driver.go `extendPodSpecPatch`/`makeVolumeMountPatch` and kubernetes_executor_config.proto
    `PvcMount` (claim by `constant`, `mountPath`): the claim is mounted in that task's pod
    only; here its local folder is bind-mounted in the task's private mount namespace."""
    volume, mount_path = tmp_path / "volume", tmp_path / "mnt"
    writer = Step("writer", script=f"open('{mount_path}/hello.txt', 'w').write('from pod')")
    package = write_package(tmp_path, [writer], kubernetes={
        "exec-writer": {"pvcMount": [{"constant": "shared", "mountPath": str(mount_path)}]}})

    result = run(tmp_path, package, volumes={"shared": str(volume)})

    assert result.state == "SUCCEEDED", result.task("writer").error
    assert (volume / "hello.txt").read_text() == "from pod"
    assert not (mount_path / "hello.txt").exists()


def test_claim_without_a_local_folder_fails_the_task_naming_it(tmp_path):
    """makeVolumeMountPatch resolves the claim name; a claim with no local stand-in cannot
    be mounted, and the task fails saying which."""
    package = write_package(tmp_path, [Step("a")], kubernetes={
        "exec-a": {"pvcMount": [{"constant": "data-claim", "mountPath": "/data"}]}})
    result = run(tmp_path, package)
    assert result.state == "FAILED"
    assert "'data-claim'" in result.task("a").error


# --- secrets -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", emulator.BACKENDS)
def test_secrets_reach_the_task_as_variables_and_as_files(tmp_path, backend):
    """driver.go `extendPodSpecPatch` (2.0.5 and 2.5.0 alike, for a Secret named by
    `secretName`): each `secretAsEnv` key becomes an environment variable (`secretKeyRef`)
    after the container's own `env`; each `secretAsVolume` mounts the Secret's keys as
    files at `mountPath`, in that task's pod only. A Secret's local stand-in is a folder
    with one file per key."""
    mount_path = tmp_path / "secrets" / "gcs"
    steps, kubernetes = secret_reader(mount_path)
    package = write_package(tmp_path, steps, kubernetes=kubernetes)
    secrets = {"minio": str(secret_folder(tmp_path / "minio", accesskey="AKIA-1")),
               "gcs-key": str(secret_folder(tmp_path / "gcs", **{"key.json": '{"k": 1}'}))}

    result = run(tmp_path, package, backend=backend, secrets=secrets)

    assert result.state == "SUCCEEDED", result.task("read").error
    assert json.loads(result.task("read").output_parameters["seen"]) == [
        "http://minio-service.kubeflow:9000", "AKIA-1", '{"k": 1}']
    assert not (mount_path / "key.json").exists()


@pytest.mark.parametrize("secrets, error", [
    ({"gcs-key": "gcs"}, 'CreateContainerConfigError: secret "minio" not found (no local '
                         "folder stands in for it: pass secrets={'minio': <folder with a "
                         "file per key>})"),
    ({"gcs-key": "gcs", "minio": "empty"}, "CreateContainerConfigError: couldn't find key "
                                           "accesskey in Secret kubeflow/minio (no file "
                                           "'accesskey' in {tmp_path}/empty)"),
    ({"minio": "minio"}, 'MountVolume.SetUp failed for volume "gcs-key" : secret "gcs-key" '
                         "not found (no local folder stands in for it"),
])
def test_a_missing_secret_or_key_fails_the_task_as_the_kubelet_would(tmp_path, secrets, error):
    """The kubelet resolves `secretKeyRef`s when it creates the container and mounts Secret
    volumes before: a missing Secret or key keeps the user's command from ever starting
    (CreateContainerConfigError, or a MountVolume.SetUp failure), in the kubelet's words."""
    secret_folder(tmp_path / "minio", accesskey="AKIA-1")
    secret_folder(tmp_path / "gcs", **{"key.json": "{}"})
    secret_folder(tmp_path / "empty")
    steps, kubernetes = secret_reader(tmp_path / "mnt")
    result = run(tmp_path, write_package(tmp_path, steps, kubernetes=kubernetes),
                 secrets={name: str(tmp_path / folder) for name, folder in secrets.items()})

    read = result.task("read")
    assert result.state == "FAILED"
    assert read.error.startswith(error.replace("{tmp_path}", str(tmp_path))), read.error
    assert read.log == ""  # the command never ran


def test_secret_fields_the_emulation_does_not_model_are_refused(tmp_path):
    """2.5.0's `optional` and `secretNameParameter` are not modelled: refused, not guessed."""
    package = write_package(tmp_path, [Step("a")], kubernetes={"exec-a": {"secretAsVolume": [
        {"secretName": "s", "mountPath": "/s", "optional": True}]}})
    with pytest.raises(NotEmulated, match=r"^task 'a' uses secretAsVolume\.optional; the "
                                          "emulation does not model it$"):
        run(tmp_path, package)


# --- failures ----------------------------------------------------------------------------


def test_failing_task_stops_the_run_with_its_log_tail(tmp_path):
    """launcher_v2.go `Execute` publishes the execution FAILED (no outputs) when the command
    exits non-zero; Argo's DAG (`failFast` true by default) starts nothing after it."""
    steps = [Step("first", outputs=("data",)),
             Step("boom", inputs={"data": "first.data"}, outputs=("data",),
                  script="print('the reason it broke')\nraise SystemExit(3)"),
             Step("after", inputs={"data": "boom.data"})]
    events: list[tuple[str, str]] = []
    result = run(tmp_path, write_package(tmp_path, steps),
                 on_task=lambda task, event: events.append((task, event)))

    assert result.state == "FAILED"
    assert events == [("first", "running"), ("first", "finished"),
                      ("boom", "running"), ("boom", "failed")]
    assert [t.state for t in result.tasks] == ["SUCCEEDED", "FAILED", "SKIPPED"]
    boom = result.task("boom")
    assert "exit status 3" in boom.error and "the reason it broke" in boom.error
    [execution] = store(tmp_path).get_executions_by_id([boom.execution_id])
    assert execution.last_known_state == mlmd.Execution.FAILED
    assert boom.outputs == {}


# --- scheduling: Argo's DAG ----------------------------------------------------------------

MEET = ("open(os.path.join(os.environ['MEET'], '{me}'), 'w').close()\n"
        "import time\n"
        "deadline = time.monotonic() + 30\n"
        "while not os.path.exists(os.path.join(os.environ['MEET'], '{other}')):\n"
        "    assert time.monotonic() < deadline, '{other} never started beside {me}'\n"
        "    time.sleep(0.02)\n")


def test_tasks_that_wait_for_nothing_in_common_run_side_by_side(tmp_path):
    """KFP's Argo compiler gives each task `depends: <upstream>.Succeeded && ...`
    (`argocompiler/dag.go` `depends`, upstream as `addImplicitDependencies` finds them) and
    the workflow no `parallelism`: Argo starts every task whose upstream tasks succeeded at
    once. Each of `left` and `right` waits until the other has started, so run one after
    the other the first would fail; `join` starts only once both have succeeded."""
    meet = tmp_path / "meet"
    meet.mkdir()
    steps = [Step("left", outputs=("data",), env={"MEET": str(meet)},
                  script=MEET.format(me="left", other="right")),
             Step("right", outputs=("data",), env={"MEET": str(meet)},
                  script=MEET.format(me="right", other="left")),
             Step("join", inputs={"a": "left.data", "b": "right.data"})]
    events: list[tuple[str, str]] = []
    result = run(tmp_path, write_package(tmp_path, steps),
                 on_task=lambda task, event: events.append((task, event)))

    assert result.state == "SUCCEEDED", [t.error for t in result.tasks]
    assert [t.name for t in result.tasks] == ["left", "right", "join"]
    assert set(events[:2]) == {("left", "running"), ("right", "running")}
    assert events.index(("join", "running")) > max(events.index(("left", "finished")),
                                                   events.index(("right", "finished")))


def test_after_a_failure_the_running_tasks_finish_and_nothing_new_starts(tmp_path):
    """Argo's DAG `failFast` (true by default; KFP's compiler leaves it unset): once a node
    fails no new task is scheduled, the running ones finish, then the DAG fails. `slow`
    runs beside `boom` and finishes after it failed; `after-slow`, ready only then, never
    starts."""
    meet = tmp_path / "meet"
    meet.mkdir()
    never = tmp_path / "after-slow-ran"
    steps = [Step("boom", env={"MEET": str(meet)},
                  script="open(os.path.join(os.environ['MEET'], 'boom'), 'w').close()\n"
                         "raise SystemExit(2)"),
             Step("slow", outputs=("data",), env={"MEET": str(meet)},
                  script=MEET.format(me="slow", other="boom") + "time.sleep(2)\n"),
             Step("after-slow", inputs={"data": "slow.data"},
                  script=f"open({str(never)!r}, 'w').close()")]
    result = run(tmp_path, write_package(tmp_path, steps))

    assert result.state == "FAILED"
    assert {t.name: t.state for t in result.tasks} == {
        "boom": "FAILED", "slow": "SUCCEEDED", "after-slow": "SKIPPED"}
    assert not never.exists()


# --- TFX-compiled packages ---------------------------------------------------------------


def tfx_task_env() -> dict[str, str]:
    """The TFX tasks' environment: their components are imported by class path from the
    repository root (tests/pipeline/kubeflow/tfx_tiny.py)."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def stock_tfx_parent():
    """One process that has imported TFX's entrypoint and this package's, which the TFX
    tasks fork from (`run_package(warm=...)`): those tests are about what an entrypoint
    does with what KFP hands it, not about its start-up, which the S3 exit test's task
    keeps cold (a new interpreter, as in a pod)."""
    with warm_pods.shared_parent(sys.executable, tfx_task_env()) as parent:
        yield parent


@pytest.fixture(scope="module")
def tfx_packages(tmp_path_factory) -> dict[str, Path]:
    """Tiny TFX pipelines compiled by KubeflowV2DagRunner (imports TFX once, ~10 s)."""
    from tests.pipeline.kubeflow import tfx_tiny

    folder = tmp_path_factory.mktemp("tfx")
    return {"plain": tfx_tiny.compile_package(folder),
            "resolver": tfx_tiny.compile_package(folder, with_resolver=True),
            "underscore": tfx_tiny.compile_package(folder, producer_id="my_producer"),
            "ours": tfx_tiny.compile_package(folder, entrypoint=compiler.ENTRYPOINT),
            "ours_alone": tfx_tiny.compile_package(folder, entrypoint=compiler.ENTRYPOINT,
                                                   with_consumer=False)}


@pytest.mark.parametrize("backend", emulator.BACKENDS)
def test_tfx_resolver_is_refused_by_the_compiler(tmp_path, tfx_packages, backend):
    """compiler/visitor.go `pipelineDFS.dfs` accepts only container and importer executors and
    runs before argocompiler/dag.go's "resolver executors not implemented"; the API server
    wraps it as "Failed to compile job" (v2_template.go `RunWorkflow`)."""
    with pytest.raises(PipelineRejected, match='Failed to compile job: error processing '
                       'component name="latest-examples": .*non-container and non-importer '
                       'executor not implemented'):
        run(tmp_path, tfx_packages["resolver"], backend=backend)


@pytest.mark.parametrize("backend", emulator.BACKENDS)
def test_a_task_name_that_begins_with_a_digit_is_refused_by_argo(tmp_path, backend):
    """Argo's `validateDAG` (workflow/validate/validate.go) refuses a DAG task whose name
    begins with a digit when the DAG uses `depends`, as every DAG KFP compiles does (each
    executor task depends on its driver); the name passes the character rule before it."""
    package = write_package(tmp_path, [Step("first"), Step("2nd-step")])
    with pytest.raises(PipelineRejected, match=r"^Failed to validate workflow: templates\.root"
                                               r"\.tasks\.2nd-step-driver name cannot begin "
                                               "with a digit when using either 'depends' or "
                                               "'dependencies'$"):
        run(tmp_path, package, backend=backend)


def test_tfx_task_name_with_underscore_is_refused_by_argo(tmp_path, tfx_packages):
    """argocompiler/dag.go names the Argo DAG tasks `<task>-driver` and `<task>` after the KFP
    task (TFX: the component id); Argo's `validateDAG` requires `^[a-zA-Z0-9][-a-zA-Z0-9]*$`
    when the API server validates the workflow (resource_manager.go `CreateRun`)."""
    with pytest.raises(PipelineRejected, match="'my_producer-driver' is invalid: name must "
                                               "consist of alpha-numeric characters or '-'"):
        run(tmp_path, tfx_packages["underscore"])


@pytest.mark.slow  # TFX's own entrypoint, in a process per task
def test_tfx_stock_entrypoint_fails_on_untyped_inputs_on_2_0_5(tmp_path, tfx_packages,
                                                                stock_tfx_parent):
    """With the driver's untyped inputs (`instanceSchema: ""`, metadata/client.go), TFX 1.16's
    `kubeflow_v2_entrypoint_utils._retrieve_class_path` fails in the consumer with
    "'NoneType' object has no attribute 'get'", as tensorflow/tfx#7768 reports."""
    result = run(tmp_path, tfx_packages["plain"], backend="2.0.5", env=tfx_task_env(),
                 warm=stock_tfx_parent)

    producer, consumer = result.task("Producer"), result.task("Consumer")
    assert producer.state == "SUCCEEDED", producer.error
    assert producer.outputs["examples"][0]["metadata"]["tfx_version"]
    assert consumer.state == "FAILED"
    assert "'NoneType' object has no attribute 'get'" in consumer.error


@pytest.mark.slow  # TFX's own entrypoint, in a process per task
def test_tfx_stock_entrypoint_fails_on_executor_logs_on_2_5_0(tmp_path, tfx_packages,
                                                              stock_tfx_parent):
    """On 2.5.0 every task also gets the `executor-logs` output typed `system.Artifact`
    (driver.go `provisionOutputs`); TFX maps only `tfx.*` titles to classes and fails to
    import it, so the first task fails."""
    result = run(tmp_path, tfx_packages["plain"], env=tfx_task_env(), warm=stock_tfx_parent)
    assert result.task("Producer").state == "FAILED"
    assert "Could not import system.Artifact" in result.task("Producer").error
    assert result.task("Consumer").state == "SKIPPED"


@pytest.mark.slow  # four TFX tasks (forked from the module's preloaded parent)
def test_folder_markers_break_kfp_s_download_and_our_entrypoint_removes_them(
        tmp_path, tfx_packages, local_gcs, monkeypatch, stock_tfx_parent):
    """On a `gs://` root, TensorFlow's GCS filesystem (TFX's `fileio.makedirs`) leaves a
    zero-byte `…/examples/` object; KFP's launcher (2.0.5 `launcher_v2.go`
    `downloadArtifacts` -> `objectstore.DownloadBlob`: `filepath.Rel` turns it into `.`,
    `downloadFile` creates it as a file) then fails the consumer before its command starts
    (kubeflow/pipelines#13476). The same package run through our entrypoint leaves no
    marker under any output, and the consumer reads the producer's file."""
    for name, value in local_gcs.environment().items():
        monkeypatch.setenv(name, value)
    env = tfx_task_env()

    stock_root = f"gs://{new_bucket(local_gcs, 'stock')}/root"
    stock = run_package(tfx_packages["plain"], stock_root, backend="2.0.5", env=env,
                        metadata_path=tmp_path / "stock.sqlite", warm=stock_tfx_parent)
    producer, consumer = stock.task("Producer"), stock.task("Consumer")
    assert producer.state == "SUCCEEDED", producer.error
    examples_uri = producer.outputs["examples"][0]["uri"]
    bucket = object_store.open_bucket(examples_uri)
    key = object_store.parse(examples_uri).key
    assert {m.key for m in object_store.folder_markers(bucket, key)} >= {
        f"{key}/", f"{key}/Split-train/"}
    assert consumer.state == "FAILED"
    local = "/gcs/" + examples_uri[len("gs://"):]  # launcher_v2.go localPathForURI
    assert consumer.error.startswith(  # the marker `examples/` became a file at `local`
        f"failed to download input artifact 'examples' from remote storage URI "
        f"'{examples_uri}': downloadFile(): unable to complete copying "
        f"'{key}/Split-train/' to local storage '{local}/Split-train': failed to create "
        f"local directory '{local}': mkdir {local}: not a directory"), consumer.error

    ours_root = f"gs://{new_bucket(local_gcs, 'ours')}/root"
    ours = run_package(tfx_packages["ours"], ours_root, backend="2.0.5", env=env,
                       metadata_path=tmp_path / "ours.sqlite", warm=stock_tfx_parent)
    assert ours.state == "SUCCEEDED", [t.error for t in ours.tasks]
    examples_uri = ours.task("Producer").outputs["examples"][0]["uri"]
    assert object_store.folder_markers(object_store.open_bucket(examples_uri),
                                       object_store.parse(examples_uri).key) == []
    assert ours.task("Consumer").copied_in == len("hi")
    assert "hi" in Path(ours.task("Consumer").log).read_text()


def test_constructs_kfp_does_not_share_with_tfx_here_are_not_guessed(tmp_path):
    """Importers, CEL conditions, loops and nested DAGs exist in KFP (argocompiler/dag.go,
    driver.go) but are not modelled: the emulation refuses them instead of guessing."""
    package = write_package(tmp_path, [Step("a")])
    spec = yaml.safe_load(package.read_text())
    spec["root"]["dag"]["tasks"]["a"]["triggerPolicy"] = {"condition": "1 == 1"}
    package.write_text(yaml.safe_dump(spec))
    with pytest.raises(NotEmulated, match="triggerPolicy.condition"):
        run(tmp_path, package)


# Beside the locked TensorFlow, tensorflow-io's S3 filesystem leaves the interpreter to abort
# at exit: what any process that used it does when it returns normally.
S3_USER = """
import tensorflow as tf
from pipeline.runtime import filesystems
filesystems.enable_for(["s3://{bucket}/probe.txt"])
with tf.io.gfile.GFile("s3://{bucket}/probe.txt", "w") as out:
    out.write("written")
print(tf.io.gfile.GFile("s3://{bucket}/probe.txt").read())
"""


@pytest.mark.slow  # a new interpreter that aborts, and a task started cold
def test_on_an_s3_root_a_task_that_succeeded_ends_with_status_0_not_an_abort(
        tmp_path, tfx_packages, local_s3, monkeypatch):
    """tensorflow-io 0.37.1's S3 filesystem, loaded beside TensorFlow 2.16, makes the
    interpreter abort at exit ("pure virtual method called", SIGABRT; a container's status
    134), and KFP's launcher marks a task failed on any non-zero status of its command
    (launcher_v2.go `execute`): a task that did its work would fail. The entrypoint ends
    its process itself once the executor is done (`process.exit_now`; an executor
    that raised exits 1, as it would have failed anyway). The task starts cold, a new
    interpreter, as in a pod: the warm tasks of the end-to-end tests always end hard."""
    import signal
    import subprocess

    for name, value in local_s3.environment().items():
        monkeypatch.setenv(name, value)
    bucket = new_bucket(local_s3, "exit")
    plain = subprocess.run([sys.executable, "-c", S3_USER.format(bucket=bucket)],
                           env=tfx_task_env(), capture_output=True, text=True, timeout=120)
    assert plain.stdout.strip() == "written", plain.stderr  # it worked, then:
    assert plain.returncode == -signal.SIGABRT, (plain.returncode, plain.stderr[-500:])
    assert "pure virtual method called" in plain.stderr

    result = run_package(tfx_packages["ours_alone"], f"s3://{bucket}/root",
                         env=tfx_task_env(), metadata_path=tmp_path / "metadata.sqlite")
    producer = result.task("Producer")
    assert producer.state == "SUCCEEDED", producer.error
    examples = producer.outputs["examples"][0]["uri"]
    assert object_store.open_bucket(examples).read(
        f"{object_store.parse(examples).key}/Split-train/data.txt") == b"hi"


@pytest.mark.slow  # TFX tasks (forked from the module's preloaded parent)
def test_on_backend_2_0_5_an_s3_root_on_another_endpoint_fails_the_first_download(
        tmp_path, tfx_packages, local_s3, monkeypatch, stock_tfx_parent):
    """2.0.5's launcher (aws-sdk-go v1, no `providers`) reads no S3 endpoint, so on MinIO
    its first download asks AWS and fails (README, "Deploying it"): the producer, which
    downloads nothing, succeeds; the consumer fails before its command starts, saying why.
    The same package on 2.5.0 runs (test above, and tests/e2e/test_kubeflow_on_s3.py)."""
    for name, value in local_s3.environment().items():
        monkeypatch.setenv(name, value)
    root = f"s3://{new_bucket(local_s3, 'old')}/root"
    result = run_package(tfx_packages["ours"], root, backend="2.0.5", env=tfx_task_env(),
                         metadata_path=tmp_path / "metadata.sqlite", warm=stock_tfx_parent)
    producer, consumer = result.task("Producer"), result.task("Consumer")
    assert producer.state == "SUCCEEDED", producer.error
    assert consumer.state == "FAILED" and not Path(consumer.log).exists()
    examples = producer.outputs["examples"][0]["uri"]
    assert consumer.error.startswith(
        f"failed to download input artifact 'examples' from remote storage URI '{examples}': "
        "backend 2.0.5's launcher reads no S3 endpoint"), consumer.error
    assert local_s3.environment()["AWS_ENDPOINT_URL"] in consumer.error
