"""`mlops kfp upload | run | schedule | unschedule | list` against a loopback KFP API.

The verbs run in process through the `mlops` app itself (typer's CliRunner);
`fake_kfp_api.FakeKfpApi` answers as KFP's v2beta1 REST API does and records what the kfp
SDK sent. A few tests run the verbs in a subprocess to see the real stdout and
stderr (no SDK warnings, no urllib3 noise, no traceback).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import kfp
import kfp_server_api
import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from pipeline.cli.main import app as mlops
from pipeline.kubeflow import listing
from tests.conftest import REPO, one_error_line, write_config
from tests.pipeline.kubeflow import trivial_pipeline
from tests.pipeline.kubeflow.fake_kfp_api import FakeKfpApi

ROOT = "gs://mlops-example/chicago-taxi/pipeline_root"  # the kubeflow profile's, in the repo
SCHEDULE = "chicago-taxi-schedule"

@pytest.fixture(scope="session")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid package (bare PipelineSpec, schema 2.1.0), by the kfp SDK's own compiler."""
    return trivial_pipeline.compile_to(tmp_path_factory.mktemp("package") / "pipeline.yaml")


@pytest.fixture(autouse=True)
def _isolated_sdk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No endpoint, token or kfp context from the machine running the tests."""
    for name in ("KF_PIPELINES_ENDPOINT", "KF_PIPELINES_UI_ENDPOINT", "KFP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(kfp.Client, "_LOCAL_KFP_CONTEXT", str(tmp_path / "kfp-context.json"))


@pytest.fixture(scope="session")
def compiled_with_volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with a Kubernetes platform spec (a PVC mount) as a second YAML document,
    as `mlops kfp compile` writes the repo's config with its `kubeflow.volumes`."""
    return trivial_pipeline.compile_to(
        tmp_path_factory.mktemp("package") / "pipeline.yaml", platform_spec=True)


@pytest.fixture
def config_file(workspace: Path, compiled_with_volume: Path) -> Path:
    """The repo's config in a temporary folder, its package compiled where
    kubeflow.output_file says."""
    path = write_config(workspace)
    package = workspace / "build" / "kubeflow" / "pipeline.yaml"
    package.parent.mkdir(parents=True)
    shutil.copy(compiled_with_volume, package)
    return path


@pytest.fixture
def api() -> Iterator[FakeKfpApi]:
    with FakeKfpApi() as server:
        yield server


def kfp_verb(config_file: Path, api: FakeKfpApi, *args: str, host: bool = True) -> Result:
    verb, *rest = args
    return CliRunner().invoke(mlops, ["kfp", verb, "-c", str(config_file), *rest,
                                      *(["--host", api.url] if host else [])])


# --- upload -----------------------------------------------------------------------------

def test_upload_creates_the_pipeline_then_adds_versions(config_file: Path, api: FakeKfpApi):
    first = kfp_verb(config_file, api, "upload")
    assert first.exit_code == 0, first.stderr
    assert "as new pipeline chicago-taxi" in first.stdout
    [upload] = api.sent("POST", "/pipelines/upload")
    assert upload.query["name"] == "chicago-taxi"
    assert upload.body["uploadfile"] == "pipeline.yaml"
    [pipeline] = api.pipelines.values()
    [version] = api.versions.values()
    assert f"{api.url}/#/pipelines/details/{pipeline['pipeline_id']}/version/" \
           f"{version['pipeline_version_id']}" in first.stdout

    second = kfp_verb(config_file, api, "upload")
    assert second.exit_code == 0, second.stderr
    assert "as a new version of pipeline chicago-taxi: version chicago-taxi-" in second.stdout
    assert len(api.sent("POST", "/pipelines/upload")) == 1  # no second pipeline
    [new_version] = api.sent("POST", "/pipelines/upload_version")
    assert new_version.query["pipelineid"] == pipeline["pipeline_id"]
    assert len(api.pipelines) == 1 and len(api.versions) == 2
    assert "" == second.stderr


def test_upload_takes_a_version_name(config_file: Path, api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    result = kfp_verb(config_file, api, "upload", "--version-name", "release-7")
    assert result.exit_code == 0, result.stderr
    assert api.sent("POST", "/pipelines/upload_version")[0].query["name"] == "release-7"


def test_upload_without_a_compiled_package_says_to_compile(config_file: Path,
                                                           api: FakeKfpApi):
    (config_file.parent / "build" / "kubeflow" / "pipeline.yaml").unlink()
    result = kfp_verb(config_file, api, "upload")
    assert result.exit_code == 1
    assert "run `mlops kfp compile` first" in one_error_line(result)
    assert api.requests == []


def test_upload_refuses_a_pipeline_job_before_sending_it(config_file: Path, api: FakeKfpApi,
                                                         compiled: Path):
    job = config_file.parent / "build" / "kubeflow" / "pipeline.yaml"
    job.write_text("displayName: chicago-taxi\npipelineSpec:\n"
                   + "".join(f"  {line}\n" for line in compiled.read_text().splitlines()
                             if not line.startswith("#")))
    result = kfp_verb(config_file, api, "upload")
    assert result.exit_code == 1
    assert "is a Vertex PipelineJob" in one_error_line(result)
    assert api.requests == []


@pytest.mark.parametrize("platform, named", [
    ("platforms:\n  kubernetes:\n    deploymentSpec:\n      executors:\n        exec-say:\n"
     "          pvcMounts: []\n", "pvcMounts"),  # a misspelt field of the executor config
    ("platforms:\n  kubernetes:\n    deploymentSpec:\n      executors:\n        exec-say:\n"
     "          secretAsVolume: [{secretName: s, mountPath: /s, optional: true}]\n",
     "secretAsVolume[0].optional (SecretAsVolume.optional) needs KFP backend 2.2.0 or later"),
    ("platforms:\n  kubernetes:\n    deploymentSpecs: {}\n", "deploymentSpecs"),
    ("platforms:\n  k8s:\n    deploymentSpec: {}\n", "no 'kubernetes' platform"),
    ("- not a mapping\n", "is not a mapping")])
def test_upload_refuses_a_platform_spec_kfp_would_drop_silently(
        config_file: Path, api: FakeKfpApi, compiled: Path, platform: str, named: str):
    """KFP 2.0.5 keeps the platform document only if it parses strictly
    (template/v2_template.go 130-200) and otherwise drops it without an error (179), so the
    pods would run without their volumes; a field its driver does not know fails every
    task (cmd/driver/main.go, jsonpb). The upload says so and sends nothing."""
    package = config_file.parent / "build" / "kubeflow" / "pipeline.yaml"
    package.write_text(compiled.read_text() + "---\n" + platform)
    result = kfp_verb(config_file, api, "upload")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "YAML document 2, the platform spec," in line and named in line
    assert api.requests == []


def test_upload_of_a_package_compiled_for_another_pipeline_is_refused(
        config_file: Path, api: FakeKfpApi):
    result = kfp_verb(config_file, api, "upload", "--set", "pipeline.name=other-pipeline")
    assert result.exit_code == 1
    assert "was compiled for pipeline 'chicago-taxi', the config names 'other-pipeline'" in \
        one_error_line(result)


def test_upload_hints_that_the_schedule_runs_an_older_version(config_file: Path,
                                                             api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    kfp_verb(config_file, api, "schedule")
    result = kfp_verb(config_file, api, "upload")
    assert f"The recurring run {SCHEDULE} still runs an older version: `mlops kfp " \
           "schedule` moves it to this one." in result.stdout


# --- run --------------------------------------------------------------------------------

def test_run_sends_parameters_and_the_pipeline_root(config_file: Path, api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    [version] = api.versions.values()
    result = kfp_verb(config_file, api, "run", "--param", "times=3", "-p", "message=hi")
    assert result.exit_code == 0, result.stderr
    [sent] = api.sent("POST", "/runs")
    [experiment] = api.experiments.values()
    assert sent.body["runtime_config"] == {"parameters": {"times": 3, "message": "hi"},
                                           "pipeline_root": ROOT}
    assert sent.body["pipeline_version_reference"] == {
        "pipeline_id": version["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"]}
    assert "pipeline_spec" not in sent.body
    assert sent.body["experiment_id"] == experiment["experiment_id"]
    assert experiment["display_name"] == "chicago-taxi"  # kubeflow.experiment unset
    [run] = api.runs.values()
    assert f"(id {run['run_id']})" in result.stdout
    assert f"{api.url}/#/runs/details/{run['run_id']}" in result.stdout

    again = kfp_verb(config_file, api, "run")
    assert again.exit_code == 0, again.stderr
    assert len(api.sent("POST", "/experiments")) == 1  # created once, then found
    assert len(api.runs) == 2


@pytest.mark.parametrize("with_volume", [False, True])
def test_run_of_a_package_sends_its_spec(config_file: Path, api: FakeKfpApi, compiled: Path,
                                         compiled_with_volume: Path, with_volume: bool):
    package = compiled_with_volume if with_volume else compiled
    result = kfp_verb(config_file, api, "run", "--package", str(package),
                      "--set", "kubeflow.experiment=nightly")
    assert result.exit_code == 0, result.stderr
    [sent] = api.sent("POST", "/runs")
    spec = sent.body["pipeline_spec"]
    if with_volume:  # kfp sends {pipeline_spec, platform_spec} (client.py _PipelineDoc)
        assert spec["platform_spec"]["platforms"]["kubernetes"]["deploymentSpec"][
            "executors"]["exec-say"]["pvcMount"][0]["mountPath"] == "/mnt/serving"
        spec = spec["pipeline_spec"]
    assert spec["pipelineInfo"]["name"] == "chicago-taxi"
    assert spec["schemaVersion"] == "2.1.0"
    assert "pipeline_version_reference" not in sent.body
    assert sent.body["runtime_config"] == {"parameters": {}, "pipeline_root": ROOT}
    assert [e["display_name"] for e in api.experiments.values()] == ["nightly"]


def test_run_refuses_an_undeclared_or_mistyped_parameter(config_file: Path,
                                                         api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    unknown = kfp_verb(config_file, api, "run", "-p", "tims=3")
    assert unknown.exit_code == 2
    assert "the pipeline has no parameter 'tims' (its parameters: message, times)" in \
        one_error_line(unknown)
    mistyped = kfp_verb(config_file, api, "run", "-p", "times=many")
    assert mistyped.exit_code == 2
    assert "parameter 'times' takes an integer, not 'many'" in one_error_line(mistyped)
    assert api.sent("POST", "/runs") == []


def test_run_before_upload_says_to_upload(config_file: Path, api: FakeKfpApi):
    result = kfp_verb(config_file, api, "run")
    assert result.exit_code == 1
    assert "no pipeline named 'chicago-taxi'" in one_error_line(result)
    assert "run `mlops kfp upload` first" in result.stderr
    assert api.changes() == []


@pytest.mark.parametrize("states, code", [(["RUNNING", "SUCCEEDED"], 0),
                                          (["RUNNING", "RUNNING", "FAILED"], 1)])
def test_run_wait_follows_the_run_to_its_final_state(config_file: Path, api: FakeKfpApi,
                                                     states: list[str], code: int):
    kfp_verb(config_file, api, "upload")
    api.run_states = states
    result = kfp_verb(config_file, api, "run", "--wait", "--poll-interval", "0")
    assert result.exit_code == code, result.stderr
    assert "  RUNNING\n" in result.stdout
    [run] = api.runs.values()
    if code:
        assert f"Run {run['run_id']} FAILED: task 'say' failed" in one_error_line(result)
    else:
        assert f"Run {run['run_id']} SUCCEEDED" in result.stdout


# --- schedule and unschedule ------------------------------------------------------------

def test_schedule_creates_the_recurring_run_as_the_api_expects(config_file: Path,
                                                              api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    [version] = api.versions.values()
    result = kfp_verb(config_file, api, "schedule")
    assert result.exit_code == 0, result.stderr
    [sent] = api.sent("POST", "/recurringruns")
    [experiment] = api.experiments.values()
    body = sent.body
    assert body["display_name"] == SCHEDULE
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 2 * * *"}}
    assert body["max_concurrency"] == 1
    assert body["no_catchup"] is True
    assert body["mode"] == "ENABLE"
    assert body["pipeline_version_reference"] == {
        "pipeline_id": version["pipeline_id"],
        "pipeline_version_id": version["pipeline_version_id"]}
    assert body["runtime_config"] == {"parameters": {}, "pipeline_root": ROOT}
    assert body["experiment_id"] == experiment["experiment_id"]
    assert "pipeline_spec" not in body
    assert f"Created recurring run {SCHEDULE}: cron '0 0 2 * * *', at most 1 at once, " \
           "no catch-up" in result.stdout


def test_schedule_again_changes_nothing(config_file: Path, api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    kfp_verb(config_file, api, "schedule")
    before = len(api.changes())
    result = kfp_verb(config_file, api, "schedule")
    assert result.exit_code == 0, result.stderr
    assert f"Recurring run {SCHEDULE} unchanged" in result.stdout
    assert api.changes()[before:] == []  # nothing deleted, nothing created
    assert len(api.recurring_runs) == 1


def test_schedule_with_a_changed_cron_replaces_the_recurring_run(config_file: Path,
                                                                  api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    kfp_verb(config_file, api, "schedule")
    [old_id] = api.recurring_runs
    result = kfp_verb(config_file, api, "schedule", "--cron", "0 30 3 * * MON-FRI")
    assert result.exit_code == 0, result.stderr
    assert [r.path for r in api.sent("DELETE", f"/recurringruns/{old_id}")]
    assert len(api.sent("POST", "/recurringruns")) == 2
    [current] = api.recurring_runs.values()  # never two
    assert current["trigger"]["cron_schedule"]["cron"] == "0 30 3 * * MON-FRI"
    assert "(changed: cron '0 0 2 * * *' -> '0 30 3 * * MON-FRI')" in result.stdout


def test_schedule_follows_config_changes_and_new_versions(config_file: Path,
                                                          api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    kfp_verb(config_file, api, "schedule")
    catchup = kfp_verb(config_file, api, "schedule", "--set", "schedule.catchup=true",
                       "--set", "schedule.max_concurrency=2")
    assert "max concurrency 1 -> 2; no catchup true -> false" in catchup.stdout
    [current] = api.recurring_runs.values()
    assert current["max_concurrency"] == "2" and "no_catchup" not in current
    kfp_verb(config_file, api, "upload")
    moved = kfp_verb(config_file, api, "schedule", "--set", "schedule.catchup=true",
                     "--set", "schedule.max_concurrency=2")
    assert "pipeline version id" in moved.stdout
    [current] = api.recurring_runs.values()
    newest = max(api.versions.values(), key=lambda v: v["created_at"])
    assert current["pipeline_version_reference"]["pipeline_version_id"] == \
        newest["pipeline_version_id"]


def test_schedule_sends_typed_parameters_and_compares_them(config_file: Path,
                                                           api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    kfp_verb(config_file, api, "schedule", "-p", "times=2")
    assert api.sent("POST", "/recurringruns")[0].body["runtime_config"]["parameters"] == \
        {"times": 2}
    same = kfp_verb(config_file, api, "schedule", "-p", "times=2")
    assert "unchanged" in same.stdout
    other = kfp_verb(config_file, api, "schedule", "-p", "times=5")
    assert 'parameters \'{"times":2}\' -> \'{"times":5}\'' in other.stdout
    assert len(api.recurring_runs) == 1


def test_schedule_removes_duplicates_and_re_enables(config_file: Path, api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    kfp_verb(config_file, api, "schedule")
    [original] = api.recurring_runs.values()
    api.recurring_runs["copy"] = {**original, "recurring_run_id": "copy",
                                  "created_at": "2030-01-01T00:00:00Z"}
    original.update(mode="DISABLE", status="DISABLED")
    result = kfp_verb(config_file, api, "schedule")
    assert result.exit_code == 0, result.stderr
    assert "(removed 1 duplicate)" in result.stdout
    assert "Re-enabled recurring run" in result.stdout
    assert [r.path for r in api.sent("DELETE", "/recurringruns/copy")]
    assert len(api.sent("POST", f"/recurringruns/{original['recurring_run_id']}:enable")) == 1
    assert list(api.recurring_runs) == [original["recurring_run_id"]]
    assert api.sent("POST", "/recurringruns")[1:] == []


def test_schedule_refuses_a_crontab_line_unless_converted(config_file: Path,
                                                          api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    sent_before = len(api.requests)
    refused = kfp_verb(config_file, api, "schedule", "--cron", "0 2 * * *")
    assert refused.exit_code == 2
    line = one_error_line(refused)
    assert "six fields, seconds first: second minute hour day-of-month month day-of-week" in line
    assert "pass --from-crontab to convert it to '0 0 2 * * *'" in line
    assert len(api.requests) == sent_before  # checked before connecting

    converted = kfp_verb(config_file, api, "schedule", "--cron", "0 2 * * *",
                         "--from-crontab")
    assert converted.exit_code == 0, converted.stderr
    assert "Converted the crontab line '0 2 * * *' to Kubeflow's cron '0 0 2 * * *'" in \
        converted.stdout
    assert api.sent("POST", "/recurringruns")[0].body["trigger"]["cron_schedule"]["cron"] \
        == "0 0 2 * * *"


@pytest.mark.parametrize("args, problem", [
    (["--cron", "0 0 25 * * *"], "--cron: invalid cron '0 0 25 * * *': hour field '25': "
                                 "25 is above the maximum 23"),
    (["--from-crontab"], "--from-crontab converts the line given with --cron"),
])
def test_schedule_refuses_a_bad_cron_before_sending(config_file: Path, api: FakeKfpApi,
                                                    args: list[str], problem: str):
    result = kfp_verb(config_file, api, "schedule", *args)
    assert result.exit_code == 2
    assert problem in one_error_line(result)
    assert api.requests == []


def test_a_bad_cron_in_the_config_is_a_config_error(config_file: Path, api: FakeKfpApi):
    """The config loader checks `schedule.cron` with the same grammar: the usual
    configuration message, one line for the key, and nothing sent."""
    result = kfp_verb(config_file, api, "schedule", "--set", "schedule.cron=0 0 0 31 2 *")
    assert result.exit_code == 2
    assert "  - schedule.cron: invalid cron '0 0 0 31 2 *'" in result.stderr
    assert "Traceback" not in result.stderr
    assert api.requests == []


def test_schedule_before_upload_says_to_upload(config_file: Path, api: FakeKfpApi):
    result = kfp_verb(config_file, api, "schedule")
    assert result.exit_code == 1
    assert "run `mlops kfp upload` first" in one_error_line(result)
    assert api.changes() == []


def test_unschedule_deletes_the_recurring_run_and_is_quiet_when_absent(
        config_file: Path, api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    kfp_verb(config_file, api, "schedule")
    [recurring_run_id] = api.recurring_runs
    deleted = kfp_verb(config_file, api, "unschedule")
    assert deleted.exit_code == 0, deleted.stderr
    assert f"Deleted recurring run {SCHEDULE} (id {recurring_run_id})." in deleted.stdout
    assert api.recurring_runs == {}
    absent = kfp_verb(config_file, api, "unschedule")
    assert absent.exit_code == 0
    assert f"No recurring run named {SCHEDULE}" in absent.stdout
    assert len(api.sent("DELETE", f"/recurringruns/{recurring_run_id}")) == 1


# --- list -------------------------------------------------------------------------------

def test_list_shows_runs_newest_first_and_the_recurring_run(config_file: Path,
                                                            api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    kfp_verb(config_file, api, "run")
    kfp_verb(config_file, api, "run")
    kfp_verb(config_file, api, "schedule")
    older, newer = sorted(api.runs.values(), key=lambda r: r["created_at"])
    api.set_run_state(older["run_id"], "SUCCEEDED")
    api.set_run_state(newer["run_id"], "FAILED")
    changes_before = len(api.changes())
    result = kfp_verb(config_file, api, "list", "--limit", "5")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Runs in experiment chicago-taxi, newest first (UTC):"
    assert lines[1].startswith("  FAILED     created 2024-01-01 ")
    assert f"(id {newer['run_id']})" in lines[1]
    assert lines[2].startswith("  SUCCEEDED  created 2024-01-01 ")
    assert "finished 2024-01-01 " in lines[2]
    assert lines[3] == "Recurring runs of pipeline chicago-taxi:"
    assert lines[4].startswith(f"  {SCHEDULE}  enabled  cron '0 0 2 * * *'  at most 1 at "
                               "once  no catch-up  (id ")
    [listed] = api.sent("GET", "/runs")
    assert listed.query["sort_by"] == "created_at desc" and listed.query["page_size"] == "5"
    assert len(api.changes()) == changes_before  # list changes nothing


def test_list_before_anything_exists(config_file: Path, api: FakeKfpApi):
    result = kfp_verb(config_file, api, "list")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "No runs in experiment chicago-taxi yet.",
        "No recurring run of pipeline chicago-taxi (`mlops kfp schedule`)."]
    assert api.changes() == []  # list creates no experiment


def test_list_on_a_terminal_is_a_table(config_file: Path, api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    kfp_verb(config_file, api, "run")
    kfp_verb(config_file, api, "schedule")
    client_runs = [_model("V2beta1Run", run) for run in api.runs.values()]
    recurring = [_model("V2beta1RecurringRun", r) for r in api.recurring_runs.values()]
    out = io.StringIO()
    listing.show("chicago-taxi", client_runs, "chicago-taxi", recurring,
                 Console(file=out, force_terminal=True, width=160, color_system=None))
    text = out.getvalue()
    assert "Runs in experiment chicago-taxi (newest first, UTC)" in text
    assert "PENDING" in text and "0 0 2 * * *" in text and "enabled" in text


def _model(kind: str, data: dict):
    """A server JSON object as the kfp SDK deserializes it."""
    response = type("Response", (), {"data": json.dumps(data)})()
    return kfp_server_api.ApiClient().deserialize(response, kind)


# --- connection and authentication ------------------------------------------------------

def test_an_unreachable_host_is_one_line(config_file: Path, api: FakeKfpApi):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = kfp_verb(config_file, api, "list", "--host", f"http://127.0.0.1:{port}",
                      host=False)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"cannot reach the KFP API at http://127.0.0.1:{port}: Failed to establish a " \
           "new connection: [Errno 111] Connection refused" in line
    assert "HTTPConnection object" not in line


def test_no_endpoint_is_a_usage_error(config_file: Path, api: FakeKfpApi):
    result = kfp_verb(config_file, api, "list", host=False)
    assert result.exit_code == 2
    assert "no KFP endpoint: set kubeflow.host in the config, pass --host, or set " \
           "$KF_PIPELINES_ENDPOINT" in one_error_line(result)


def test_the_endpoint_comes_from_config_then_environment(config_file: Path, api: FakeKfpApi,
                                                         monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", api.url)
    assert kfp_verb(config_file, api, "list", host=False).exit_code == 0
    monkeypatch.setenv("KF_PIPELINES_ENDPOINT", "http://127.0.0.1:9")
    from_config = kfp_verb(config_file, api, "list", "--set", f"kubeflow.host={api.url}",
                           host=False)
    assert from_config.exit_code == 0, from_config.stderr
    assert len(api.sent("GET", "/healthz")) == 2


def test_a_missing_token_is_one_line_and_asked_once(config_file: Path):
    with FakeKfpApi(token="s3cret") as api:
        result = kfp_verb(config_file, api, "upload")
    assert result.exit_code == 1
    assert "answered 401 to `connect`: no bearer token was sent; put one in $KFP_TOKEN " \
           "(kubeflow.token_env) or pass --token" in one_error_line(result)
    assert len(api.requests) == 1  # kfp 2.5 alone would retry healthz 5 times, 5 s apart


def test_a_wrong_token_is_one_line(config_file: Path):
    with FakeKfpApi(token="s3cret") as api:
        result = kfp_verb(config_file, api, "list", "--token", "stale")
    assert result.exit_code == 1
    assert "refused to let this token connect (403): RBAC: access denied; check $KFP_TOKEN " \
           "and kubeflow.namespace (not set)" in one_error_line(result)


def test_the_token_comes_from_the_configured_variable(config_file: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TEAM_KFP_TOKEN", "s3cret")
    with FakeKfpApi(token="s3cret") as api:
        result = kfp_verb(config_file, api, "upload",
                          "--set", "kubeflow.token_env=TEAM_KFP_TOKEN")
    assert result.exit_code == 0, result.stderr
    assert {r.headers["authorization"] for r in api.requests} == {"Bearer s3cret"}


def test_the_namespace_is_sent_in_multi_user_mode(config_file: Path):
    with FakeKfpApi(multi_user=True) as api:
        for verb in ("upload", "run", "schedule", "list"):
            result = kfp_verb(config_file, api, verb, "--set", "kubeflow.namespace=team-a")
            assert result.exit_code == 0, result.stderr
    assert api.sent("POST", "/pipelines/upload")[0].query["namespace"] == "team-a"
    assert [e["namespace"] for e in api.experiments.values()] == ["team-a"]
    assert [r["namespace"] for r in api.recurring_runs.values()] == ["team-a"]
    assert {r.query.get("namespace") for r in api.sent("GET", "/recurringruns")} == {"team-a"}


# --- refusals ---------------------------------------------------------------------------

@pytest.mark.parametrize("status", [409, 500])  # backends >= 2.1, and 2.0.x
def test_a_duplicate_name_is_one_line_on_either_backend(config_file: Path, status: int):
    with FakeKfpApi(duplicate_status=status) as api:
        kfp_verb(config_file, api, "upload")
        kfp_verb(config_file, api, "upload", "--version-name", "release-1")
        result = kfp_verb(config_file, api, "upload", "--version-name", "release-1")
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "as version 'release-1' of pipeline 'chicago-taxi': the name is already taken on " \
           f"{api.url} ({status}: Failed to create a pipeline version" in line
    assert len(api.versions) == 2


def test_a_refused_spec_is_one_line_with_the_servers_message(config_file: Path,
                                                             api: FakeKfpApi):
    api.refuse_specs = "Invalid input error: unknown template format: pipeline spec is invalid"
    result = kfp_verb(config_file, api, "upload")
    assert result.exit_code == 1
    assert f"as pipeline 'chicago-taxi': {api.url} answered 500: Failed to create a pipeline " \
           "and a pipeline version: Invalid input error: unknown template format" in \
        one_error_line(result)


def test_a_refused_run_is_one_line(config_file: Path, api: FakeKfpApi):
    kfp_verb(config_file, api, "upload")
    api.refuse_specs = "resolver executors not implemented"
    result = kfp_verb(config_file, api, "run")
    assert result.exit_code == 1
    assert "cannot create run 'chicago-taxi " in one_error_line(result)
    assert "answered 500: Failed to create a run: resolver executors not implemented" in \
        result.stderr


def test_a_config_mistake_exits_2(config_file: Path, api: FakeKfpApi):
    result = kfp_verb(config_file, api, "list", "--set", "schedule.max_concurrency=0")
    assert result.exit_code == 2
    assert "schedule.max_concurrency" in result.stderr
    assert api.requests == []


# --- the fake server parses packages as the API server does -----------------------------

def test_the_fake_server_refuses_what_the_api_server_refuses(tmp_path: Path, compiled: Path,
                                                             api: FakeKfpApi):
    client = kfp.Client(host=api.url)
    job = tmp_path / "job.yaml"
    job.write_text("displayName: x\npipelineSpec: {}\nruntimeConfig: {}\n")
    old = tmp_path / "old.yaml"
    old.write_text(compiled.read_text().replace("schemaVersion: 2.1.0",
                                                "schemaVersion: 2.0.0"))
    for package, complaint in ((job, "unknown template format"),
                               (old, "KFP only supports schema version 2.1.0")):
        with pytest.raises(kfp_server_api.ApiException) as refused:
            client.upload_pipeline(str(package), pipeline_name=package.stem)
        assert refused.value.status == 500
        assert complaint in str(refused.value.body)
    assert client.upload_pipeline(str(compiled), pipeline_name="ok").display_name == "ok"


# --- the real process: stdout and stderr as a person sees them --------------------------

def _commands(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KF_PIPELINES_ENDPOINT", "KFP_TOKEN", "PYTHONWARNINGS")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "pipeline.cli.kfp", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


def test_the_console_output_carries_no_sdk_noise(config_file: Path, api: FakeKfpApi,
                                                 tmp_path: Path):
    home = {"HOME": str(tmp_path)}  # no kfp context file of the machine's user
    done = _commands("upload", "-c", str(config_file), "--host", api.url, env_extra=home)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.startswith("Uploaded ") and "Pipeline details" not in done.stdout
    failed = _commands("list", "-c", str(config_file), "--host", "http://127.0.0.1:9",
                       env_extra=home)
    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.count("\n") == 1 and failed.stderr.startswith("error: cannot reach")
    verbose = _commands("upload", "-c", str(config_file), "--host", api.url, "--verbose",
                        env_extra=home)
    assert "Pipeline details:" in verbose.stderr  # the SDK's own output, on stderr
    assert "FutureWarning" in verbose.stderr
    assert "Pipeline details" not in verbose.stdout


def test_the_client_imports_no_tensorflow_and_commands_no_kfp():
    probe = ("import sys; import pipeline.cli.kfp; assert 'kfp' not in sys.modules; "
             "import pipeline.kubeflow.client; "
             "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tfx')]")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
