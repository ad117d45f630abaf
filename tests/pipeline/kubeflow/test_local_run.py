"""`mlops kfp run --local`: the compiled package run on this machine as KFP 2.x would run it.

Most tests run small hand-written KFP v2 packages (`test_emulator.write_package`, tasks
that are `python -c` scripts of a few tens of milliseconds) through the verb, in process
with typer's CliRunner or through the real `mlops` console script. The project's own
package runs the same way on a bucket in tests/e2e/test_kubeflow_on_gcs.py (twice) and
test_kubeflow_on_s3.py (once).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from pipeline.cli.main import app as mlops_app
from pipeline.kubeflow import emulator, local_run
from tests.conftest import mlops, one_error_line, write_config
from tests.pipeline.kubeflow.handwritten import (PRODUCER, Step, secret_folder,
                                                 secret_reader, write_package)

TASK_LINE = re.compile(r"^  (\S+) +(SUCCEEDED|FAILED|CACHED|SKIPPED)(?: +(\d+\.\d)s)?$")
LOG_TAIL = "print('the reason it broke')\nraise SystemExit(3)"


@pytest.fixture
def config_file(workspace: Path) -> Path:
    """The repo's config, named like the hand-written packages (`emu-test`)."""
    return write_config(workspace, {"pipeline.name": "emu-test"})


def install(config_file: Path, steps: list[Step], **options: Any) -> Path:
    """A package written where kubeflow.output_file says (build/kubeflow/pipeline.yaml)."""
    folder = config_file.parent / "build" / "kubeflow"
    folder.mkdir(parents=True, exist_ok=True)
    return write_package(folder, steps, **options).rename(folder / "pipeline.yaml")


def run_local(config_file: Path, *args: str) -> Result:
    return CliRunner().invoke(mlops_app, ["kfp", "run", "--local", "-c", str(config_file),
                                          *args])


def task_lines(stdout: str) -> list[tuple[str, str]]:
    """(task, state) of each task line, as printed: in the order the tasks ended."""
    return [(m[1], m[2]) for m in map(TASK_LINE.match, stdout.splitlines()) if m]


# --- runs --------------------------------------------------------------------------------


def test_a_run_prints_each_task_as_it_ends_and_exits_0(config_file: Path):
    """Through the real console script: the header, one line per task (name, state,
    seconds), the final line; nothing on stderr. Parameters are typed as for a server's
    run and reach the task."""
    step = Step("echo", parameters={"text": ("STRING", {"componentInputParameter": "text"})},
                args=("{{$.inputs.parameters['text']}}",), script="print(sys.argv[2])")
    package = install(config_file, [PRODUCER, step], root_parameters={
        "text": {"parameterType": "STRING", "defaultValue": "hi"}})

    done = mlops("kfp", "run", "--local", "-c", str(config_file), "--param", "text=hello",
                 "--backend", "2.0.5", cwd=config_file.parent)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    build = config_file.parent / "build" / "kubeflow"
    lines = done.stdout.splitlines()
    assert lines[0] == (f"Running {package} on this machine as KFP 2.0.5's driver and "
                        "launcher would (2 tasks, each task's command in this environment, "
                        "not the image)")
    assert lines[1] == (f"  pipeline root {build / 'local_root'}, metadata "
                        f"{build / 'local_root.mlmd.sqlite'}")
    assert sorted(TASK_LINE.match(line).group(1, 2) for line in lines[2:4]) == [
        ("echo", "SUCCEEDED"), ("produce", "SUCCEEDED")]  # side by side: either ends first
    final = re.fullmatch(r"Local run (\S+) SUCCEEDED in \d+\.\ds \(2 succeeded\); "
                         r"artifacts under (\S+)", lines[4])
    assert final, lines[4]
    run_root = build / "local_root" / "emu-test" / final[1]
    assert final[2] == str(run_root)
    assert (run_root / ".emulator" / "echo" / "log.txt").read_text().strip() == "hello"
    assert (run_root / "produce" / "data" / "x.txt").read_text() == "hi"
    assert (build / "local_root.mlmd.sqlite").is_file()


def test_a_second_run_reuses_what_the_package_caches(config_file: Path):
    """The metadata file beside the root is kept: a task whose caching the package enables
    is CACHED the second time, as KFP's cache would have it; the others run again."""
    install(config_file, [Step("cached", outputs=("data",), cache=True),
                          Step("fresh", outputs=("data",))])
    first, second = run_local(config_file), run_local(config_file)
    assert first.exit_code == 0 and second.exit_code == 0, second.stderr
    # side by side (neither waits for the other): either may end first
    assert sorted(task_lines(first.stdout)) == [("cached", "SUCCEEDED"), ("fresh", "SUCCEEDED")]
    assert sorted(task_lines(second.stdout)) == [("cached", "CACHED"), ("fresh", "SUCCEEDED")]
    assert "(1 succeeded, 1 cached)" in second.stdout


def test_a_failing_task_exits_1_with_its_error_and_log_tail(config_file: Path):
    """Argo's failFast: nothing starts after the failed task (SKIPPED); the error line
    names the task and the launcher's reason, its log's tail comes before it."""
    install(config_file, [Step("first", outputs=("data",)),
                          Step("boom", inputs={"data": "first.data"}, outputs=("data",),
                               script=LOG_TAIL),
                          Step("after", inputs={"data": "boom.data"})])
    result = run_local(config_file)

    assert result.exit_code == 1
    assert task_lines(result.stdout) == [("first", "SUCCEEDED"), ("boom", "FAILED"),
                                         ("after", "SKIPPED")]
    assert "Local run" not in result.stdout
    *tail, error = result.stderr.strip().splitlines()
    assert "the reason it broke" in tail
    assert re.fullmatch(r"error: local run \S+ FAILED \(1 succeeded, 1 failed, 1 skipped\): "
                        r"task boom: failed to execute component: exit status 3 \(log: "
                        r"\S+/\.emulator/boom/log\.txt\)", error), error


@pytest.mark.parametrize("backend", local_run.BACKENDS)
def test_a_package_argo_refuses_is_one_line_and_nothing_runs(config_file: Path, backend: str):
    """Argo's DAG task-name rule, checked when KFP creates the run: the one error line is
    the API server's, and no task, root or metadata is made."""
    install(config_file, [Step("my_task")])
    result = run_local(config_file, "--backend", backend)

    assert result.exit_code == 1
    assert result.stdout == ""
    line = one_error_line(result)
    assert line.startswith(f"error: KFP {backend} would refuse ")
    assert line.endswith("at run creation: Failed to validate workflow: "
                         "templates.root.tasks[0].name: 'my_task-driver' is invalid: name "
                         "must consist of alpha-numeric characters or '-', and must start "
                         "with an alpha-numeric character (e.g. My-name1-2, 123-NAME)")
    assert not (config_file.parent / "build" / "kubeflow" / "local_root").exists()


def test_a_feature_the_emulation_does_not_model_is_one_line(config_file: Path):
    package = install(config_file, [Step("a")])
    spec = yaml.safe_load(package.read_text())
    spec["root"]["dag"]["tasks"]["a"]["triggerPolicy"] = {"condition": "1 == 1"}
    package.write_text(yaml.safe_dump(spec))
    result = run_local(config_file)
    assert result.exit_code == 1
    assert one_error_line(result) == (
        f"error: the local run cannot run {package}: task 'a' uses triggerPolicy.condition "
        "'1 == 1' (CEL); the emulation does not model it")


def test_each_claim_gets_a_local_folder_mounted_for_its_tasks(config_file: Path,
                                                             tmp_path: Path):
    """A claim the package mounts: build/kubeflow/volumes/<claim> by default, or the
    --volume folder; only the task's own mount namespace sees it at the mount path."""
    mount_path = tmp_path / "mnt" / "serving"
    install(config_file, [Step("writer", script=f"open('{mount_path}/hello.txt', 'w')"
                                                ".write('from pod')")],
            kubernetes={"exec-writer": {"pvcMount": [{"constant": "shared",
                                                      "mountPath": str(mount_path)}]}})
    default = config_file.parent / "build" / "kubeflow" / "volumes" / "shared"

    first = run_local(config_file)
    assert first.exit_code == 0, first.stderr
    assert f"  volume shared at {mount_path}: {default}" in first.stdout.splitlines()
    assert (default / "hello.txt").read_text() == "from pod"
    assert not (mount_path / "hello.txt").exists()

    chosen = tmp_path / "claim"
    second = run_local(config_file, "--volume", f"shared={chosen}")
    assert second.exit_code == 0, second.stderr
    assert (chosen / "hello.txt").read_text() == "from pod"


def test_the_pipeline_root_option_moves_root_and_metadata(config_file: Path, tmp_path: Path):
    install(config_file, [Step("a", outputs=("data",))])
    result = run_local(config_file, "--pipeline-root", str(tmp_path / "elsewhere"))
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "elsewhere" / "emu-test").is_dir()
    assert (tmp_path / "elsewhere.mlmd.sqlite").is_file()
    assert not (config_file.parent / "build" / "kubeflow" / "local_root").exists()


def test_each_secret_is_a_folder_of_its_keys_for_the_tasks_that_use_it(config_file: Path,
                                                                      tmp_path: Path):
    """A Secret the package uses: the --secret folder, or build/kubeflow/secrets/<name>;
    one file per key. Its keys fill the `secretAsEnv` variables, and it is mounted at the
    `secretAsVolume` path in the task's own mount namespace only. A key missing from the
    folder fails the task as the kubelet would."""
    mount_path = tmp_path / "secrets" / "gcs"
    steps, kubernetes = secret_reader(mount_path)
    install(config_file, steps, kubernetes=kubernetes)
    default = secret_folder(config_file.parent / "build" / "kubeflow" / "secrets" / "minio",
                            accesskey="AKIA-1")
    gcs = secret_folder(tmp_path / "gcs", **{"key.json": "{}"})

    result = run_local(config_file, "--secret", f"gcs-key={gcs}", "--verbose")

    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"  secret gcs-key (at {mount_path}): {gcs}" in lines
    assert f"  secret minio (env KEY_ID): {default}" in lines
    log = next(line.split("log: ")[1] for line in lines if "log: " in line)
    assert Path(log).read_text().strip() == (
        '["http://minio-service.kubeflow:9000", "AKIA-1", "{}"]')
    assert not (mount_path / "key.json").exists()

    (default / "accesskey").unlink()
    failed = run_local(config_file, "--secret", f"gcs-key={gcs}")
    assert failed.exit_code == 1
    assert ("task read: CreateContainerConfigError: couldn't find key accesskey in Secret "
            f"kubeflow/minio (no file 'accesskey' in {default})") in one_error_line(failed)


# --- what is refused before anything runs ------------------------------------------------


@pytest.mark.parametrize("option", [["--host", "http://localhost:8080"], ["--token", "t"],
                                    ["--wait"], ["--poll-interval", "5"]])
def test_server_options_are_refused_with_local(config_file: Path, option: list[str]):
    install(config_file, [Step("a")])
    result = run_local(config_file, *option)
    assert result.exit_code == 2
    assert one_error_line(result) == ("error: --local runs on this machine and waits for "
                                      f"the run: drop {option[0]}")


@pytest.mark.parametrize("option", [["--backend", "2.0.5"], ["--pipeline-root", "/tmp/r"],
                                    ["--volume", "c=/tmp/c"], ["--secret", "s=/tmp/s"]])
def test_local_options_are_refused_without_local(config_file: Path, option: list[str]):
    result = CliRunner().invoke(mlops_app, ["kfp", "run", "-c", str(config_file), *option])
    assert result.exit_code == 2
    assert one_error_line(result).startswith(f"error: {option[0]} goes with --local")


@pytest.mark.parametrize("option, message", [
    (["--backend", "2.1.0"], "--backend 2.1.0: the local run emulates KFP 2.0.5 and 2.5.0"),
    (["--pipeline-root", "minio://bucket/root"], "--pipeline-root minio://bucket/root: a "
     "local folder, gs:// or s3:// is needed (KFP's minio:// is not a TensorFlow filesystem: "
     "give MinIO's bucket as s3:// with AWS_ENDPOINT_URL set)"),
    (["--volume", "shared"], "--volume 'shared' is not CLAIM=DIR"),
    (["--volume", "other=/tmp/x"], "--volume other: {package} mounts no such claim (it "
     "mounts: shared)"),
    (["--param", "nope=1"], "the pipeline has no parameter 'nope' (its parameters: none)"),
])
def test_wrong_local_options_exit_2_before_running(config_file: Path, option: list[str],
                                                   message: str):
    package = install(config_file, [Step("a")], kubernetes={
        "exec-a": {"pvcMount": [{"constant": "shared", "mountPath": "/mnt/shared"}]}})
    result = run_local(config_file, *option)
    assert result.exit_code == 2
    assert one_error_line(result) == "error: " + message.format(package=package)
    assert result.stdout == ""


FOLDER_OF_KEYS = "; the folder holds one file per key of the Secret, as Kubernetes mounts it"


@pytest.mark.parametrize("option, message", [
    ([], "{package} uses Secret gcs-key (at /secrets/gcs) and no folder stands in for it: "
         "pass --secret gcs-key=DIR, or create {build}/secrets/gcs-key" + FOLDER_OF_KEYS),
    (["--secret", "minio"], "--secret 'minio' is not NAME=DIR"),
    (["--secret", "other=/tmp/x"], "--secret other: {package} uses no such Secret (it uses: "
                                   "gcs-key, minio)"),
    (["--secret", "gcs-key={build}/absent"],
     "--secret gcs-key={build}/absent: not a folder" + FOLDER_OF_KEYS),
])
def test_a_secret_without_its_folder_exits_2_before_running(config_file: Path,
                                                            option: list[str], message: str):
    build = config_file.parent / "build" / "kubeflow"
    steps, kubernetes = secret_reader(Path("/secrets/gcs"))
    package = install(config_file, steps, kubernetes=kubernetes)
    secret_folder(build / "secrets" / "minio", accesskey="AKIA-1")
    result = run_local(config_file, *[o.format(build=build) for o in option])
    assert result.exit_code == 2
    assert one_error_line(result) == "error: " + message.format(package=package, build=build)
    assert result.stdout == ""


def test_a_platform_spec_field_backend_2_0_5_does_not_know_is_one_line(config_file: Path):
    package = install(config_file, [Step("a")], kubernetes={"exec-a": {"secretAsVolume": [
        {"secretName": "s", "mountPath": "/s", "optional": True}]}})
    result = run_local(config_file, "--backend", "2.5.0")
    assert result.exit_code == 1
    assert one_error_line(result) == (
        f"error: {package}: YAML document 2, the platform spec, executor exec-a: "
        "secretAsVolume[0].optional (SecretAsVolume.optional) needs KFP backend 2.2.0 or "
        "later: backend 2.0.5's driver parses each task's Kubernetes config strictly and "
        "would fail every task of this executor (failed to unmarshal Kubernetes config, "
        'error: unknown field "optional" in kfp_kubernetes.SecretAsVolume)')
    assert result.stdout == ""


def test_a_missing_package_says_to_compile(config_file: Path):
    result = run_local(config_file)
    assert result.exit_code == 1
    assert "run `mlops kfp compile` first" in one_error_line(result)


def test_a_package_of_another_pipeline_is_refused(config_file: Path):
    install(config_file, [Step("a")])
    result = run_local(config_file, "--set", "pipeline.name=chicago-taxi")
    assert result.exit_code == 1
    assert "compiled for pipeline 'emu-test', the config names 'chicago-taxi'" in \
        one_error_line(result)


def test_a_mount_path_a_non_root_task_cannot_create_is_said_once(
        config_file: Path, monkeypatch: pytest.MonkeyPatch):
    """As a non-root user a task's namespace (`unshare -rm`) cannot create /mnt/<x>: say so
    before running rather than fail the task."""
    install(config_file, [Step("a")], kubernetes={
        "exec-a": {"pvcMount": [{"constant": "shared", "mountPath": "/mnt/absent/shared"}]}})
    monkeypatch.setattr(local_run.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(local_run.os, "access", lambda path, mode: path != "/mnt")
    monkeypatch.setattr(emulator, "pod_problem", lambda: None)
    result = run_local(config_file)
    assert result.exit_code == 1
    assert one_error_line(result) == (
        "error: volume shared is mounted at /mnt/absent/shared, which does not exist here "
        "and which a task run by a non-root user cannot create: create it once (sudo mkdir "
        "-p /mnt/absent/shared); it stays empty, each task sees the claim's folder there")


def test_a_machine_without_mount_namespaces_is_said_once(config_file: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    install(config_file, [Step("a")])
    monkeypatch.setattr(emulator, "pod_problem", lambda: "no unshare here")
    result = run_local(config_file)
    assert result.exit_code == 1
    assert one_error_line(result) == ("error: the local run cannot start tasks on this "
                                      "machine: no unshare here")


def test_this_machine_can_start_pods():
    assert emulator.pod_problem() is None


def test_the_cli_offers_the_backends_the_emulator_models():
    assert local_run.BACKENDS == emulator.BACKENDS


def test_bucket_paths_handed_to_tasks_are_pointed_out(config_file: Path):
    step = Step("a", parameters={"input_base": (
        "STRING", {"runtimeValue": {"constant": "gs://bucket/data"}})})
    install(config_file, [step])
    result = run_local(config_file)
    assert result.exit_code == 0, result.stderr
    assert ("  note: buckets are reached with this machine's credentials and endpoints (its "
            "environment), standing in for the pods': gs://bucket/data") in result.stdout
