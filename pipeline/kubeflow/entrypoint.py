"""The pipeline image's container entrypoint: TFX's, with what open-source KFP hands it repaired.

Every task of the compiled package runs `python -m pipeline.kubeflow.entrypoint` with
TFX's own arguments (`--executor_class_path`, `--json_serialized_invocation_args {{$}}`,
`--json_serialized_inputs_spec_args`, Beam args). TFX 1.16's entrypoint
(`tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`) was written for
Vertex AI, and fails on what open-source KFP 2.x's driver and launcher give it:

- upstream artifacts arrive untyped, `type: {instanceSchema: ""}`: KFP's metadata client
  builds them without a schema (`backend/src/v2/metadata/client.go`,
  `GetOutputArtifactsByExecutionId`: `Schema: "" // TODO`, unchanged up to 2.17), and
  TFX's `_retrieve_class_path` then fails with `'NoneType' object has no attribute 'get'`
  (tensorflow/tfx#7768). The compiled component declares each input's type in the inputs
  spec it passes as an argument; the type is taken from there.
- backend 2.5's driver, with its default `--publish_logs=true`, adds an output
  `executor-logs` of type `system.Artifact` to every task (`driver.go`,
  `provisionOutputs`); TFX cannot import KFP's `system.*` types. Such outputs are KFP's
  own: the launcher uploads the logs itself, so they are left out of what TFX sees.

On a bucket root it also leaves the store as KFP's launcher can copy it:

- TensorFlow's GCS filesystem writes a zero-byte object named `<folder>/` for every folder
  it creates; KFP's launcher (2.0.5, 2.5.0 and HEAD, `objectstore.DownloadBlob`) copies
  such a key as a *file* where the folder belongs, and the next task that takes the
  artifact as an input fails with "not a directory" (kubeflow/pipelines#13476). Once the
  executor has succeeded, those markers are removed from under every output artifact
  (`object_store.remove_folder_markers`); readers see the same folders without them.
- `s3://` (MinIO, S3) is readable by TensorFlow only through tensorflow-io, loaded here
  when an artifact lives there (it aborts the interpreter's normal exit: every task ends
  its process itself once its work is written, `run`).

Everything else (artifact names, which the Evaluator turns into model ids; URIs;
metadata; exec properties) is handed over unchanged, and TFX's entrypoint does the rest.
"""
from __future__ import annotations

import json
from typing import Any, NoReturn

from absl import logging

from pipeline.kubeflow import object_store
from pipeline.runtime import filesystems, process

KFP_TYPE_PREFIX = "system."


class ExecutorInputError(ValueError):
    """The ExecutorInput cannot be repaired: an input the component does not declare."""


def _declared_type(inputs_spec: dict[str, Any], key: str) -> dict[str, str]:
    """The type the component declares for input `key` (TFX writes it as an
    `instanceSchema` whose title is the TFX type, e.g. `title: tfx.Examples`)."""
    declared = inputs_spec.get("artifacts", {}).get(key, {}).get("artifactType") or {}
    if _is_untyped({"type": declared}):
        raise ExecutorInputError(
            f"input artifact {key!r} is untyped and the component's inputs spec declares "
            f"no type for it (declared: {sorted(inputs_spec.get('artifacts', {}))})")
    return dict(declared)


def _is_untyped(artifact: dict[str, Any]) -> bool:
    kind = artifact.get("type") or {}
    return not kind.get("schemaTitle") and not (kind.get("instanceSchema") or "").strip()


def repair(executor_input: dict[str, Any],
           inputs_spec: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """ExecutorInput (protojson, as a dict) as TFX's entrypoint needs it.

    Returns the repaired copy and the names of the outputs left out (KFP's own).

    Raises:
        ExecutorInputError: an input artifact arrives untyped and the inputs spec declares
            no type for it either (the task fails with that line, not TFX's NoneType error).
    """
    repaired = json.loads(json.dumps(executor_input))
    for key, artifact_list in repaired.get("inputs", {}).get("artifacts", {}).items():
        for artifact in artifact_list.get("artifacts", []):
            if _is_untyped(artifact):
                artifact["type"] = _declared_type(inputs_spec, key)
    outputs = repaired.get("outputs", {}).get("artifacts", {})
    dropped = [key for key, artifact_list in outputs.items()
               if any(a.get("type", {}).get("schemaTitle", "").startswith(KFP_TYPE_PREFIX)
                      for a in artifact_list.get("artifacts", []))]
    for key in dropped:
        del outputs[key]
    return repaired, dropped


def run(parsed: tuple[Any, list[str]]) -> NoReturn:
    """Runs the executor TFX's entrypoint would, on the repaired ExecutorInput, then ends
    the process at once: 0 once the executor succeeded and its outputs are written, 1
    (with the error logged) if anything failed.

    Why it never returns: by then everything the task hands on is written (the artifacts,
    TFX's `executor_output.json`), and the interpreter's teardown of TensorFlow, TFX and
    Beam costs seconds a task (docs/performance.md, "Kubeflow"); with tensorflow-io
    loaded for `s3://` it even aborts, which KFP would record as a failed task.
    """
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as tfx_entry

    # Declares this project's Beam option (--in_process_threads) before any executor parses
    # the Beam arguments, so that a stock executor does not warn it discards an unknown one.
    from components import parallelism  # noqa: F401
    from pipeline.runtime import beam_tuning

    beam_tuning.apply()  # as a local run does: the executors' Beam pipelines run in here
    try:
        args, beam_args = parsed
        inputs_spec = json.loads(args.json_serialized_inputs_spec_args or "{}")
        repaired, dropped = repair(json.loads(args.json_serialized_invocation_args),
                                   inputs_spec)
        if dropped:
            logging.info("Outputs left to Kubeflow (not TFX artifacts): %s", ", ".join(dropped))
        args.json_serialized_invocation_args = json.dumps(repaired)
        filesystems.enable_for(_artifact_uris(repaired, "inputs") +
                               _artifact_uris(repaired, "outputs"))
        tfx_entry._run_executor(args, beam_args)  # pylint: disable=protected-access
        _remove_folder_markers(_artifact_uris(repaired, "outputs"))
    except (ExecutorInputError, json.JSONDecodeError) as error:
        logging.error("The task's arguments cannot be used: %s", error)
        process.exit_now(1)
    except Exception:  # noqa: BLE001 (the executor's own error, whatever it is: logged whole)
        logging.exception("The executor failed")
        process.exit_now(1)
    process.exit_now(0)


def _artifact_uris(executor_input: dict[str, Any], side: str) -> list[str]:
    return [artifact.get("uri", "")
            for artifact_list in executor_input.get(side, {}).get("artifacts", {}).values()
            for artifact in artifact_list.get("artifacts", [])]


def _remove_folder_markers(uris: list[str]) -> None:
    for uri in uris:
        if object_store.is_object_store_uri(uri):
            removed = object_store.remove_folder_markers(uri)
            if removed:
                logging.info("Removed %d folder marker object(s) under %s", len(removed), uri)


def main() -> None:
    """The image's entrypoint: `python -m pipeline.kubeflow.entrypoint` with TFX's flags,
    which every task of the compiled package runs."""
    # Before TFX is imported: Keras 2 for `tf.keras` (the image's environment does not
    # ask for it); TFX's Vertex AI client modules, which no task of this package calls,
    # stay unimported (a second off every task's start-up); gs:// reads without a 64 MB
    # buffer per file (`filesystems.tune_gcs_reads`).
    process.before_tensorflow()
    from absl import app
    from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor as tfx_entry

    # TFX's own argument parser (it also parses absl's flags); the program name is not
    # an argument, so it must not reach the Beam arguments
    app.run(run, flags_parser=lambda argv: tfx_entry._parse_flags(  # pylint: disable=protected-access
        argv[1:]))


if __name__ == "__main__":
    main()
