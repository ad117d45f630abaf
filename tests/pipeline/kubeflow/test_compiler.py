"""`mlops kfp compile`: the package, as KFP's API server and v2 backend will read it.

What open-source KFP accepts comes from its source (kubeflow/pipelines, backend 2.0.5 to
2.17): `backend/src/v2/compiler/argocompiler/dag.go` refuses resolver executors;
Argo validates task names against `^[a-zA-Z0-9][-a-zA-Z0-9]*$`, and refuses a digit first
in a DAG that uses `depends` (all of KFP's); the API server parses a
bare PipelineSpec of schema 2.1.0 (`backend/src/apiserver/template/v2_template.go`);
`kfp-kubernetes` writes PVC mounts into the platform spec (`pvcMount`: `constant`,
`mountPath`), which the driver turns into pod volumes, and Secrets (`secretAsEnv`,
`secretAsVolume`); backend 2.0.5's driver knows only the fields of kubernetes_platform
bd9f74e and fails a task whose config has any other (`cmd/driver/main.go`, jsonpb). The
container spec's `env` goes into the pod (`driver.go` `makePodSpecPatch`). Checked here on
the written file.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from pipeline.definition.config import load_config
from pipeline.kubeflow import compiler
from pipeline.kubeflow import package as package_lib
from tests.conftest import copy_taxi_span, write_config
from tests.pipeline.kubeflow.handwritten import Step, write_package

TASKS = {"CsvExampleGen", "StatisticsGen", "SchemaGen", "ExampleValidator",
         "DataValidationGate", "Transform", "Trainer", "ServingBaseline", "Evaluator", "Pusher"}


def kubeflow_config(folder: Path, *overrides: str):
    copy_taxi_span(1, folder / "data", rows=50)
    return load_config(write_config(folder), overrides, profile="kubeflow")


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> tuple[compiler.Package, list[dict]]:
    folder = tmp_path_factory.mktemp("compile")
    config = kubeflow_config(folder, "kubeflow.image=registry.example/mlops:1.2.3")
    compiled = compiler.compile_package(config, str(folder / "out" / "pipeline.yaml"))
    return compiled, list(yaml.safe_load_all(compiled.path.read_text()))


def executor_of(spec: dict, task: str) -> dict:
    label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
    return spec["deploymentSpec"]["executors"][label["executorLabel"]]


def test_the_package_is_a_bare_pipeline_spec_of_schema_2_1(package):
    compiled, documents = package
    spec = json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec())
    assert spec.schema_version == "2.1.0"
    assert spec.pipeline_info.name == "chicago-taxi"
    assert "runtimeConfig" not in documents[0] and "pipelineSpec" not in documents[0]
    assert set(spec.root.dag.tasks) == TASKS == set(compiled.tasks)
    # the kfp SDK itself loads it, as `kfp.Client.upload_pipeline` does before sending
    from kfp import components

    assert components.load_component_from_file(str(compiled.path)).name == "chicago-taxi"


def test_only_container_executors_and_valid_task_names(package):
    _, (spec, _) = package
    for executor in spec["deploymentSpec"]["executors"].values():
        assert set(executor) == {"container"}
    for name in spec["root"]["dag"]["tasks"]:
        assert compiler.TASK_NAME.match(name), name


def test_every_task_runs_the_repairing_entrypoint_in_the_configured_image(package):
    _, (spec, _) = package
    for task in TASKS:
        container = executor_of(spec, task)["container"]
        assert container["image"] == "registry.example/mlops:1.2.3"
        assert container["command"] == list(compiler.ENTRYPOINT)
        args = container["args"]
        assert args[args.index("--json_serialized_invocation_args") + 1] == "{{$}}"
        assert "--json_serialized_inputs_spec_args" in args  # exec properties need it
        assert "--setup_file=/pipeline/setup.py" in args  # the image's copy


def test_the_pusher_takes_the_evaluator_s_blessing_and_the_served_model_is_the_baseline(
        package):
    _, (spec, _) = package
    tasks = spec["root"]["dag"]["tasks"]
    blessing = tasks["Pusher"]["inputs"]["artifacts"]["model_blessing"]["taskOutputArtifact"]
    assert blessing == {"producerTask": "Evaluator", "outputArtifactKey": "blessing"}
    baseline = tasks["Evaluator"]["inputs"]["artifacts"]["baseline_model"]
    assert baseline["taskOutputArtifact"]["producerTask"] == "ServingBaseline"
    parameters = tasks["ServingBaseline"]["inputs"]["parameters"]
    assert parameters["serving_model_dir"]["runtimeValue"]["constant"] == \
        "/mnt/serving/chicago-taxi"
    assert parameters["models_config"]["runtimeValue"]["constant"] == \
        "/mnt/serving/models.config"


def test_the_profile_s_paths_and_root_are_the_pods(package):
    _, (spec, _) = package
    assert spec["defaultPipelineRoot"] == "gs://mlops-example/chicago-taxi/pipeline_root"
    tasks = spec["root"]["dag"]["tasks"]
    example_gen = tasks["CsvExampleGen"]["inputs"]["parameters"]
    assert example_gen["input_base"]["runtimeValue"]["constant"] == \
        "gs://mlops-example/chicago-taxi/data"
    push = tasks["Pusher"]["inputs"]["parameters"]["push_destination"]["runtimeValue"]
    assert "/mnt/serving/chicago-taxi" in push["constant"]


def test_caching_off_by_the_kubeflow_profile(package):
    compiled, (spec, _) = package
    for task in spec["root"]["dag"]["tasks"].values():
        assert not task.get("cachingOptions", {}).get("enableCache", False)
    assert set(compiled.uncached) == TASKS


def test_with_caching_on_the_tasks_reading_outside_state_stay_uncached(tmp_path: Path):
    """KFP's cache key sees parameters and input artifacts, not new span files or the
    serving directory: ExampleGen and ServingBaseline must run every time."""
    config = kubeflow_config(tmp_path, "pipeline.enable_cache=true")
    compiled = compiler.compile_package(config, str(tmp_path / "p.yaml"))
    spec = yaml.safe_load_all(compiled.path.read_text()).__next__()
    cached = {name for name, task in spec["root"]["dag"]["tasks"].items()
              if task.get("cachingOptions", {}).get("enableCache")}
    assert cached == TASKS - {"CsvExampleGen", "ServingBaseline"}


def test_the_serving_volume_is_mounted_where_the_pusher_writes(package):
    compiled, (spec, platform) = package
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounted = {task for task in TASKS
               if executor_of(spec, task) and spec["components"][
                   spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]][
                   "executorLabel"] in executors}
    assert mounted == {"ServingBaseline", "Pusher"}
    for task in mounted:
        label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"][
            "name"]]["executorLabel"]
        assert executors[label] == {"pvcMount": [{"constant": "serving-models",
                                                  "mountPath": "/mnt/serving"}]}
    assert compiled.mounts == {"serving-models": ("ServingBaseline", "Pusher")}


def test_a_volume_for_every_task_and_one_for_some_are_both_mounted(tmp_path: Path):
    config = kubeflow_config(tmp_path, "kubeflow.volumes=[{claim: data, mount_path: /mnt/data},"
                             " {claim: serving-models, mount_path: /mnt/serving,"
                             " components: [Pusher]}]")
    compiled = compiler.compile_package(config, str(tmp_path / "p.yaml"))
    spec, platform = yaml.safe_load_all(compiled.path.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert len(executors) == len(TASKS)
    pusher = executor_of(spec, "Pusher")
    label = [k for k, v in spec["deploymentSpec"]["executors"].items() if v is pusher][0]
    assert [m["constant"] for m in executors[label]["pvcMount"]] == ["data", "serving-models"]


def test_a_volume_naming_an_unknown_component_is_refused(tmp_path: Path):
    config = kubeflow_config(tmp_path, "kubeflow.volumes=[{claim: x, mount_path: /x,"
                             " components: [Pushr]}]")
    with pytest.raises(compiler.CompileError, match=r"kubeflow.volumes\[0\].components: "
                                                    r"unknown component\(s\) \['Pushr'\]"):
        compiler.compile_package(config, str(tmp_path / "p.yaml"))


def test_env_goes_into_every_container_and_secrets_into_the_platform_spec(tmp_path: Path):
    config = kubeflow_config(
        tmp_path, "kubeflow.env={AWS_ENDPOINT_URL: 'http://minio-service.kubeflow:9000', "
                  "GOOGLE_APPLICATION_CREDENTIALS: /secrets/gcs/key.json}",
        "kubeflow.secrets=[{secret: mlpipeline-minio-artifact, env: {AWS_ACCESS_KEY_ID: "
        "accesskey, AWS_SECRET_ACCESS_KEY: secretkey}}, {secret: gcs-key, mount_path: "
        "/secrets/gcs, components: [Trainer]}]")
    compiled = compiler.compile_package(config, str(tmp_path / "p.yaml"))
    spec, platform = yaml.safe_load_all(compiled.path.read_text())
    for task in TASKS:
        assert executor_of(spec, task)["container"]["env"] == [
            {"name": "AWS_ENDPOINT_URL", "value": "http://minio-service.kubeflow:9000"},
            {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/secrets/gcs/key.json"}]
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]

    def kubernetes_of(task: str) -> dict:
        return executors[spec["components"][spec["root"]["dag"]["tasks"][task][
            "componentRef"]["name"]]["executorLabel"]]

    minio = {"secretName": "mlpipeline-minio-artifact", "keyToEnv": [
        {"secretKey": "accesskey", "envVar": "AWS_ACCESS_KEY_ID"},
        {"secretKey": "secretkey", "envVar": "AWS_SECRET_ACCESS_KEY"}]}
    assert kubernetes_of("Trainer") == {
        "secretAsEnv": [minio],
        "secretAsVolume": [{"secretName": "gcs-key", "mountPath": "/secrets/gcs"}]}
    assert kubernetes_of("Pusher") == {
        "pvcMount": [{"constant": "serving-models", "mountPath": "/mnt/serving"}],
        "secretAsEnv": [minio]}
    assert compiled.secrets == {"mlpipeline-minio-artifact": compiled.tasks,
                                "gcs-key": ("Trainer",)}
    assert all(package_lib.check_kubernetes_fields(config) is None
               for config in executors.values())


def test_a_secret_naming_an_unknown_component_is_refused(tmp_path: Path):
    config = kubeflow_config(tmp_path, "kubeflow.secrets=[{secret: s, env: {A: k}}, "
                                       "{secret: t, mount_path: /t, components: [Trainr]}]")
    with pytest.raises(compiler.CompileError, match=r"kubeflow.secrets\[1\].components: "
                                                    r"unknown component\(s\) \['Trainr'\]"):
        compiler.compile_package(config, str(tmp_path / "p.yaml"))


@pytest.mark.parametrize("config, problem", [
    ({"secretAsVolume": [{"secretName": "s", "mountPath": "/s", "optional": True}]},
     "secretAsVolume[0].optional (SecretAsVolume.optional) needs KFP backend 2.2.0 or later: "
     "backend 2.0.5's driver parses each task's Kubernetes config strictly and would fail "
     "every task of this executor (failed to unmarshal Kubernetes config, error: unknown "
     'field "optional" in kfp_kubernetes.SecretAsVolume)'),
    ({"pvcMount": [{"constant": "c", "mountPath": "/c"},
                   {"pvcNameParameter": {"runtimeValue": {"constant": "c"}}, "mountPath": "/d"}]},
     "pvcMount[1].pvcNameParameter (PvcMount.pvcNameParameter) needs KFP backend 2.5.0 or "
     "later"),
    ({"secretAsEnv": [{"secretName": "s", "keyToEnv": [{"secretKey": "k", "envVar": "V"}],
                       "optional": True}]},
     "secretAsEnv[0].optional (SecretAsEnv.optional) needs KFP backend 2.15.0 or later"),
    ({"tolerations": [{"key": "gpu"}]},
     "tolerations (KubernetesExecutorConfig.tolerations) needs KFP backend 2.1.0 or later"),
    ({"secretAsEnvs": []}, "secretAsEnvs is not a field of KubernetesExecutorConfig in any "
                           "KFP backend up to 2.17.0 (did you mean 'secretAsEnv'?)"),
])
def test_a_platform_spec_field_backend_2_0_5_does_not_know_is_refused(
        tmp_path: Path, config: dict, problem: str):
    """What `compile`, `upload`, `run` and `run --local` check (package.check_platform_spec):
    a task whose config 2.0.5's driver cannot parse would fail on 2.0.5."""
    package = write_package(tmp_path, [Step("a")], kubernetes={"exec-a": config})
    with pytest.raises(package_lib.PackageError) as caught:
        package_lib.check_platform_spec(package)
    assert str(caught.value).startswith(
        f"{package}: YAML document 2, the platform spec, executor exec-a: {problem}")


def test_every_field_of_backend_2_0_5_passes_in_either_spelling(tmp_path: Path):
    """jsonpb takes a field's JSON name and its proto name alike."""
    config = {"pvcMount": [{"taskOutputParameter": {"producerTask": "p",
                                                    "outputParameterKey": "claim"},
                            "mountPath": "/p"},
                           {"componentInputParameter": "claim", "mount_path": "/q"}],
              "secret_as_env": [{"secret_name": "s", "key_to_env": [{"secret_key": "k",
                                                                     "env_var": "V"}]}],
              "secretAsVolume": [{"secretName": "s", "mountPath": "/s"}],
              "nodeSelector": {"labels": {"pool": "cpu"}}}
    package_lib.check_platform_spec(write_package(tmp_path, [Step("a")],
                                                  kubernetes={"exec-a": config}))


def test_task_names_argo_refuses_are_refused_before_compiling():
    with pytest.raises(compiler.CompileError, match="latest_blessed_model_resolver"):
        compiler._check_task_names(["Trainer", "latest_blessed_model_resolver"])
    with pytest.raises(compiler.CompileError, match=r"\['2-trainer'\].*a letter first"):
        compiler._check_task_names(["Trainer", "2-trainer"])  # Argo: no digit first with depends


def test_a_local_profile_config_is_refused(tmp_path: Path):
    copy_taxi_span(1, tmp_path / "data", rows=50)
    config = load_config(write_config(tmp_path))
    with pytest.raises(compiler.CompileError, match="kubeflow profile"):
        compiler.compile_package(config)
