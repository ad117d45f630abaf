"""Hand-written KFP v2 packages, laid out as the KFP SDK lays them out, whose tasks are
`python -c` scripts of a few tens of milliseconds: what the emulated backend's tests
(test_emulator.py) and `mlops kfp run --local`'s (test_local_run.py) run."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

# Every script gets the ExecutorInput as sys.argv[1] (`{{$}}`), then its extra arguments.
PRELUDE = "import json, os, sys\nei = json.loads(sys.argv[1])\n"
WRITE_OUTPUT = ("os.makedirs(os.path.dirname(ei['outputs']['outputFile']), exist_ok=True)\n"
                "json.dump({out}, open(ei['outputs']['outputFile'], 'w'))\n")


@dataclass
class Step:
    """One container task of a hand-written spec."""

    name: str
    script: str = "pass"
    args: tuple[str, ...] = ()
    inputs: dict[str, str] = field(default_factory=dict)  # artifact -> "producer.output"
    parameters: dict[str, tuple[str, dict]] = field(default_factory=dict)  # name -> (type, spec)
    outputs: tuple[str, ...] = ()  # system.Dataset artifacts
    output_parameters: dict[str, str] = field(default_factory=dict)  # name -> type
    cache: bool = False
    env: dict[str, str] = field(default_factory=dict)  # the container's own env


def write_package(folder: Path, steps: list[Step], *, schema: str = "2.1.0",
                  kubernetes: Optional[dict[str, Any]] = None,
                  root_parameters: Optional[dict[str, dict]] = None) -> Path:
    """A KFP v2 package as the KFP SDK lays it out; `kubernetes`: executor label -> config."""
    dataset = {"artifactType": {"schemaTitle": "system.Dataset", "schemaVersion": "0.0.1"}}
    spec: dict[str, Any] = {"pipelineInfo": {"name": "emu-test"}, "schemaVersion": schema,
                            "sdkVersion": "test", "root": {"dag": {"tasks": {}}},
                            "components": {}, "deploymentSpec": {"executors": {}}}
    if root_parameters:
        spec["root"]["inputDefinitions"] = {"parameters": root_parameters}
    for step in steps:
        inputs: dict[str, Any] = {"parameters": {n: s for n, (_, s) in step.parameters.items()},
                                  "artifacts": {}}
        for name, source in step.inputs.items():
            producer, output = source.split(".")
            inputs["artifacts"][name] = {"taskOutputArtifact": {"producerTask": producer,
                                                                "outputArtifactKey": output}}
        task: dict[str, Any] = {"taskInfo": {"name": step.name},
                                "componentRef": {"name": f"comp-{step.name}"}, "inputs": inputs,
                                "dependentTasks": sorted({s.split(".")[0]
                                                          for s in step.inputs.values()})}
        if step.cache:
            task["cachingOptions"] = {"enableCache": True}
        spec["root"]["dag"]["tasks"][step.name] = task
        spec["components"][f"comp-{step.name}"] = {
            "executorLabel": f"exec-{step.name}",
            "inputDefinitions": {
                "artifacts": {name: dataset for name in step.inputs},
                "parameters": {n: {"parameterType": t} for n, (t, _) in step.parameters.items()}},
            "outputDefinitions": {
                "artifacts": {name: dataset for name in step.outputs},
                "parameters": {n: {"parameterType": t}
                               for n, t in step.output_parameters.items()}}}
        spec["deploymentSpec"]["executors"][f"exec-{step.name}"] = {"container": {
            "image": "python:3.10", "command": ["python", "-c", PRELUDE + step.script],
            "args": ["{{$}}", *step.args],
            **({"env": [{"name": n, "value": v} for n, v in step.env.items()]}
               if step.env else {})}}
    documents = [spec]
    if kubernetes:
        documents.append({"platforms": {"kubernetes": {"deploymentSpec": {
            "executors": kubernetes}}}})
    path = folder / "package.yaml"
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


PRODUCER = Step(
    "produce", outputs=("data",), output_parameters={"size": "NUMBER_INTEGER"},
    parameters={"text": ("STRING", {"runtimeValue": {"constant": "hi"}})},
    args=("{{$.outputs.artifacts['data'].uri}}", "{{$.inputs.parameters['text']}}",
          "{{$.outputs.parameters['size'].output_file}}"),
    script=("os.makedirs(sys.argv[2], exist_ok=True)\n"
            "open(os.path.join(sys.argv[2], 'x.txt'), 'w').write(sys.argv[3])\n"
            "open(sys.argv[4], 'w').write('42')\n"
            + WRITE_OUTPUT.format(out="{'artifacts': {'data': {'artifacts': "
                                      "[{'metadata': {'rows': 7, 'ok': True}}]}}}")))
CONSUMER = Step(
    "consume", inputs={"data": "produce.data"},
    parameters={"size": ("NUMBER_INTEGER", {"taskOutputParameter": {
        "producerTask": "produce", "outputParameterKey": "size"}})},
    script=("assert not os.path.exists(ei['outputs']['outputFile']), 'pod file leaked'\n"
            "uri = ei['inputs']['artifacts']['data']['artifacts'][0]['uri']\n"
            "print(open(os.path.join(uri, 'x.txt')).read())\n"
            "open(os.environ['RECEIVED'], 'w').write(sys.argv[1])\n"))


def secret_reader(mount_path: Path) -> tuple[list[Step], dict[str, Any]]:
    """A task `read` and its Kubernetes config: Secret `minio`'s key `accesskey` as KEY_ID
    (`secretAsEnv`), Secret `gcs-key` mounted at `mount_path` (`secretAsVolume`), ENDPOINT
    in the container's own env. It writes what its pod sees to its output parameter `seen`
    and its log (JSON): [ENDPOINT, KEY_ID, the text of key.json at `mount_path`]."""
    step = Step("read", env={"ENDPOINT": "http://minio-service.kubeflow:9000"},
                output_parameters={"seen": "STRING"},
                args=("{{$.outputs.parameters['seen'].output_file}}",),
                script=("seen = [os.environ.get('ENDPOINT'), os.environ.get('KEY_ID')]\n"
                        f"key = os.path.join({str(mount_path)!r}, 'key.json')\n"
                        "seen.append(open(key).read() if os.path.exists(key) else None)\n"
                        "open(sys.argv[2], 'w').write(json.dumps(seen))\n"
                        "print(json.dumps(seen))\n"))
    kubernetes = {"exec-read": {
        "secretAsEnv": [{"secretName": "minio",
                         "keyToEnv": [{"secretKey": "accesskey", "envVar": "KEY_ID"}]}],
        "secretAsVolume": [{"secretName": "gcs-key", "mountPath": str(mount_path)}]}}
    return [step], kubernetes


def secret_folder(folder: Path, **keys: str) -> Path:
    """A Secret's local stand-in: `folder` with one file per key, as Kubernetes mounts it."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in keys.items():
        (folder / key).write_text(value)
    return folder
