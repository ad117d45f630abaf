"""The compiled package runs as open-source Kubeflow Pipelines' v2 backend runs it.

No cluster exists here, so `pipeline/kubeflow/emulator.py` executes the package the way
KFP's v2 backend does, written from its Go source (tags 2.0.5 and 2.5.0): the API server's
and Argo's checks at run creation (`apiserver/template/v2_template.go`,
`compiler/visitor.go`, Argo's DAG task-name rule); for each task, the driver
(`driver/driver.go`: `resolveInputs` hands upstream artifacts over untyped, as
`metadata/client.go` `GetOutputArtifactsByExecutionId` builds them with `Schema: ""`;
`provisionOutputs` adds the `executor-logs` output on 2.5.0; `makeVolumeMountPatch`
mounts PVCs) and the launcher (`component/launcher_v2.go`: `{{$}}` replaced by the
ExecutorInput, output URIs `<root>/<pipeline>/<run>/<task>[/<uuid>]/<output>`, the
ExecutorOutput read back); a real ML Metadata store; `preCacheCheck` (TFX's ExampleGen
driver) never run. Each task is its own process (its pod) in its own mount namespace,
with the container's command run in this environment instead of the image.

A data folder and a serving volume live as a scheduled pipeline's do: the first run finds
no served model and pushes version 1 into the volume; a new span arrives, and the next run
trains on it, compares the candidate with the served version and pushes version 2. Both
runs go the way `mlops kfp run --local` takes them (`pipeline/kubeflow/local_run.py`: the
plan, the checks, the run with a line per task), which its own tests drive through the
command line on small packages (tests/pipeline/kubeflow/test_local_run.py).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from components import versioned_pusher
from pipeline.definition.config import load_config
from pipeline.kubeflow import compiler, emulator, local_run
from pipeline.kubeflow import package as package_lib
from tests.conftest import FAST_TRAINING, LENIENT, ROWS, copy_taxi_span, write_config

pytestmark = pytest.mark.slow

CLAIM = "serving-models"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("kubeflow_site")
    copy_taxi_span(1, folder / "data", rows=ROWS)
    (folder / "volume").mkdir()  # the claim's storage; the pods see it at the mount path
    return folder


@pytest.fixture(scope="module")
def package(site: Path) -> compiler.Package:
    """The repo's config with the kubeflow profile, pointed at this site: the pipeline root
    and the data stand in for buckets; the serving directory is the claim's mount path,
    which exists only inside the pods that mount it."""
    config_file = write_config(site, {
        **FAST_TRAINING, **LENIENT,
        "profiles.kubeflow.pipeline.root": str(site / "bucket" / "root"),
        "profiles.kubeflow.data.input_base": str(site / "data"),
        "profiles.kubeflow.serving.base_directory": str(site / "pod" / "serving"),
        "kubeflow.volumes": [{"claim": CLAIM, "mount_path": str(site / "pod" / "serving"),
                              "components": ["ServingBaseline", "Pusher"]}]})
    config = load_config(config_file, profile="kubeflow")
    return compiler.compile_package(config, str(site / "pipeline.yaml"))


def execute(site: Path, package: compiler.Package, backend: str) -> emulator.EmulatedRun:
    """One run as `mlops kfp run --local --backend B --pipeline-root R --volume CLAIM=DIR`."""
    config = load_config(site / "pipeline_config.yaml", profile="kubeflow")
    spec = package_lib.read_spec(package.path)
    plan = local_run.make_plan(config, package.path, spec, {}, backend,
                               str(site / "bucket" / "root"), [f"{CLAIM}={site / 'volume'}"])
    local_run.check_package(plan)
    local_run.check_machine(plan)
    lines: list[str] = []
    run = local_run.execute(plan, lines.append, lines.append)
    assert [line.split()[:2] for line in lines[:-1]] == [
        [task.name, "SUCCEEDED"] for task in run.tasks]  # a line per task as it ended
    assert lines[-1].startswith(f"Local run {run.run_id} SUCCEEDED in ")
    return run


def metadata(run: emulator.EmulatedRun, task: str, output: str) -> dict:
    return run.task(task).outputs[output][0]["metadata"]


def served_versions(site: Path) -> list[int]:
    return versioned_pusher.existing_versions(str(site / "volume" / "chicago-taxi"))


def test_first_run_on_backend_2_0_5_pushes_version_1_into_the_volume(site: Path, package):
    run = execute(site, package, backend="2.0.5")
    assert [task.state for task in run.tasks] == ["SUCCEEDED"] * len(package.tasks)
    assert metadata(run, "CsvExampleGen", "examples")["custom:span"] == 1
    assert metadata(run, "ServingBaseline", "model")["served_version"] == 0
    blessing = metadata(run, "Evaluator", "blessing")
    assert blessing["blessed"] == 1 and "baseline_model_id" not in blessing
    pushed = metadata(run, "Pusher", "pushed_model")
    assert pushed["pushed_version"] == "1"
    assert served_versions(site) == [1]
    # the push went through the mount: the volume holds it, the mount path outside does not
    assert pushed["pushed_destination"] == str(site / "pod" / "serving" / "chicago-taxi" / "1")
    assert not (site / "pod" / "serving" / "chicago-taxi").exists()


def test_a_new_span_is_trained_on_compared_with_the_served_version_and_pushed(
        site: Path, package):
    """No driver ran `{SPAN}` at compile time: the run reads the span present when it
    starts. Backend 2.5.0 adds `executor-logs` to every task, which TFX never sees."""
    copy_taxi_span(2, site / "data", rows=ROWS)
    run = execute(site, package, backend="2.5.0")
    assert metadata(run, "CsvExampleGen", "examples")["custom:span"] == 2
    assert "executor-logs" in run.task("Trainer").outputs
    baseline = metadata(run, "ServingBaseline", "model")
    assert baseline["served_version"] == 1
    blessing = metadata(run, "Evaluator", "blessing")
    assert blessing["blessed"] == 1
    # the Evaluator compared with the served model: its id and the candidate's are the
    # names KFP gave the artifacts (MLMD ids), as TFX's entrypoint records them
    assert blessing["baseline_model_id"] == run.task("ServingBaseline").outputs["model"][0][
        "name"]
    assert metadata(run, "Pusher", "pushed_model")["pushed_version"] == "2"
    assert served_versions(site) == [1, 2]
    manifest = versioned_pusher.read_manifest(str(site / "volume" / "chicago-taxi" / "2"))
    assert manifest["model_uri"] == run.task("Trainer").outputs["model"][0]["uri"]


def test_the_pushed_version_is_a_servable_saved_model(site: Path):
    import tensorflow as tf

    model = tf.saved_model.load(str(site / "volume" / "chicago-taxi" / "2"))
    assert {"serving_default", "classify"} <= set(model.signatures)
    warmup = site / "volume" / "chicago-taxi" / "2" / "assets.extra" / \
        "tf_serving_warmup_requests"
    assert warmup.is_file()


def test_each_task_ran_in_its_own_process_and_logged_no_error(site: Path, package):
    """Each task is its own pod: its own interpreter, TFX import and log."""
    logs = sorted((site / "bucket" / "root" / "chicago-taxi").glob("*/.emulator/*/log.txt"))
    assert len(logs) == 2 * len(package.tasks)
    for log in logs:
        assert "Traceback" not in log.read_text(), log
