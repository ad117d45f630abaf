"""Evaluator executor: a real baseline only, and the evaluation in this process where Beam
would run it here anyway.

The baseline comes from `ServingBaseline`, the version being served. It is dropped, so that
only the absolute thresholds decide (as TFX does without a baseline), when

- nothing is served yet: the baseline artifact holds no SavedModel (a first run);
- the baseline *is* the candidate: an unchanged re-run whose model was already pushed
  would otherwise be "compared" with its own copy.

Where Beam would not distribute the work (`beam_runner`) and TFMA's configuration is one
`batched_evaluation` covers, the metrics are computed in this process on large batches
(far faster than TFMA's per-example Beam path: measured by `bench/evaluator`, see
docs/performance.md) and written as TFMA's writers write them; the blessing follows from
the validation result as in TFX's executor. Anything else (another runner, a module file,
a schema input, a metric or setting outside that path) runs TFX's executor unchanged, with
one log line saying why.
"""
from __future__ import annotations

import os
from typing import Any, Optional

import tensorflow_model_analysis as tfma
from absl import logging
from tensorflow_model_analysis.api import model_eval_lib
from tensorflow_model_analysis.utils import config_util
from tensorflow_model_analysis.utils import model_util
from tfx import types
from tfx.components.evaluator import constants
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import json_utils
from tfx.utils import path_utils
from tfx.utils import proto_utils

from components import batched_evaluation
from components import batched_metrics
from components import evaluation_output
from components import example_batches
from components import parallelism
from components import serving_baseline, versioned_pusher
from components.beam_runner import beam_would_distribute

BASELINE_KEY = standard_component_specs.BASELINE_MODEL_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY
EXAMPLES_KEY = standard_component_specs.EXAMPLES_KEY


def _is_candidate(baseline: types.Artifact, candidate: types.Artifact) -> bool:
    """Whether the baseline is the candidate, directly or as its pushed copy (whose push
    manifest, copied along, names the model it came from)."""
    if baseline.uri == candidate.uri:
        return True
    manifest = versioned_pusher.read_manifest(path_utils.serving_model_dir(baseline.uri))
    return (manifest or {}).get("model_uri") == candidate.uri


def without_absent_baseline(input_dict: dict[str, list[types.Artifact]]
                            ) -> dict[str, list[types.Artifact]]:
    """`input_dict` without the baseline when it is empty or is the candidate."""
    baseline = input_dict.get(BASELINE_KEY) or []
    candidate = input_dict.get(MODEL_KEY) or []
    if baseline and (not serving_baseline.has_model(baseline[0])
                     or (candidate and _is_candidate(baseline[0], candidate[0]))):
        return {k: v for k, v in input_dict.items() if k != BASELINE_KEY}
    return input_dict


def unsupported_input(input_dict: dict[str, list[types.Artifact]],
                      exec_properties: dict[str, Any]) -> Optional[str]:
    """Names the first input or property only TFX's Beam executor handles, or None."""
    if not exec_properties.get(standard_component_specs.EVAL_CONFIG_KEY):
        return "no eval_config (feature_slicing_spec)"
    if (exec_properties.get(standard_component_specs.MODULE_FILE_KEY)
            or exec_properties.get(standard_component_specs.MODULE_PATH_KEY)):
        return "a module file (custom model loading or extractors)"
    if input_dict.get(standard_component_specs.SCHEMA_KEY):
        return "a schema input"
    if not input_dict.get(MODEL_KEY):
        return "no candidate model"
    if split_patterns(input_dict, exec_properties) is None:
        return "examples that are not gzipped tf.Examples"
    return None


def tfx_eval_config(exec_properties: dict[str, Any], has_baseline: bool) -> tfma.EvalConfig:
    """The EvalConfig as TFX's executor completes it (change thresholds are ignored
    without a baseline: "rubber stamp")."""
    eval_config = tfma.EvalConfig()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.EVAL_CONFIG_KEY],
                              eval_config)
    eval_config = config_util.update_eval_config_with_defaults(
        eval_config, has_baseline=has_baseline, rubber_stamp=True)
    config_util.verify_eval_config(eval_config)
    return eval_config


def eval_shared_models(input_dict: dict[str, list[types.Artifact]],
                       eval_config: tfma.EvalConfig) -> list[tfma.types.EvalSharedModel]:
    """TFMA's handle of each model of the config, made as TFX's executor makes them."""
    models = []
    for spec in eval_config.model_specs:
        artifact = artifact_utils.get_single_instance(
            input_dict[BASELINE_KEY if spec.is_baseline else MODEL_KEY])
        path = path_utils.serving_model_path(
            artifact.uri, path_utils.is_old_model_artifact(artifact))
        logging.info("Using %s as %s model.", path, spec.name)
        models.append(tfma.default_eval_shared_model(
            eval_saved_model_path=path, model_name=spec.name, eval_config=eval_config,
            add_metrics_callbacks=None))
    return models


def split_patterns(input_dict: dict[str, list[types.Artifact]],
                   exec_properties: dict[str, Any]) -> Optional[list[str]]:
    """The file patterns of the evaluated splits (`example_splits`, default "eval"), or
    None when they are not gzipped tf.Examples (what `example_batches` reads)."""
    splits = json_utils.loads(
        exec_properties.get(standard_component_specs.EXAMPLE_SPLITS_KEY, "null")) or ["eval"]
    patterns: list[str] = []
    for split in splits:
        found = example_batches.split_patterns(input_dict[EXAMPLES_KEY], split)
        if found is None:
            return None
        patterns += found
    return patterns


def write_blessing(input_dict: dict[str, list[types.Artifact]],
                   output_dict: dict[str, list[types.Artifact]],
                   exec_properties: dict[str, Any], validation_ok: bool) -> None:
    """The blessing artifact as TFX's executor writes it: properties naming the models,
    and a BLESSED or NOT_BLESSED file."""
    blessing = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.BLESSING_KEY])
    blessing.set_string_custom_property(
        constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
        artifact_utils.get_single_uri(input_dict[MODEL_KEY]))
    blessing.set_int_custom_property(
        constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, input_dict[MODEL_KEY][0].id)
    if input_dict.get(BASELINE_KEY):
        baseline_model = input_dict[BASELINE_KEY][0]
        blessing.set_string_custom_property(
            constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline_model.uri)
        blessing.set_int_custom_property(
            constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline_model.id)
    if "current_component_id" in exec_properties:
        blessing.set_string_custom_property(
            "component_id", exec_properties["current_component_id"])
    file_name, value = ((constants.BLESSED_FILE_NAME, constants.BLESSED_VALUE)
                        if validation_ok else
                        (constants.NOT_BLESSED_FILE_NAME, constants.NOT_BLESSED_VALUE))
    io_utils.write_string_file(os.path.join(blessing.uri, file_name), "")
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY, value)
    logging.info("Blessing result %s written to %s.", validation_ok, blessing.uri)


class Executor(evaluator_executor.Executor):
    """TFX's Evaluator executor, without Beam where Beam would not distribute."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        input_dict = without_absent_baseline(input_dict)
        reason = unsupported_input(input_dict, exec_properties)
        if reason is None and beam_would_distribute(self._beam_pipeline_args):
            reason = "a distributing Beam runner"
        if reason is None:
            reason = self._evaluate_in_process(input_dict, output_dict, exec_properties)
        if reason:
            logging.info("Evaluator through Beam: %s", reason)
            super().Do(input_dict, output_dict, exec_properties)

    def _evaluate_in_process(self, input_dict: dict[str, list[types.Artifact]],
                             output_dict: dict[str, list[types.Artifact]],
                             exec_properties: dict[str, Any]) -> Optional[str]:
        """Evaluates and writes the outputs; or, having written nothing, says why not."""
        eval_config = tfx_eval_config(exec_properties, bool(input_dict.get(BASELINE_KEY)))
        if len(eval_config.model_specs) > 2:
            return "more than two models"
        run_validation = bool(tfma.metrics.metric_thresholds_from_metrics_specs(
            eval_config.metrics_specs, eval_config=eval_config))
        models = eval_shared_models(input_dict, eval_config)
        # What TFMA's ExtractEvaluateAndWriteResults then makes of the config.
        tfma_config = model_eval_lib._update_eval_config_with_defaults(
            eval_config, models[0] if len(models) == 1 else models)
        config_util.verify_eval_config(tfma_config)
        reason = batched_evaluation.unsupported_config(tfma_config)
        computations = batched_metrics.computations_for(tfma_config)
        reason = reason or batched_metrics.unsupported_computation(computations)
        if reason:
            return reason
        loaded = {model.model_name: model.model_loader.load() for model in models}
        signatures, reason = batched_evaluation.model_signatures(tfma_config, loaded)
        if reason:
            return reason

        self._log_startup(input_dict, output_dict, exec_properties)
        patterns = split_patterns(input_dict, exec_properties)
        threads = parallelism.threads_for(self._beam_pipeline_args,
                                          parallelism.stored_bytes(patterns))
        logging.info("Evaluating in this process (%d thread(s)).", threads)
        baseline_spec = model_util.get_baseline_model_spec(tfma_config)
        results = batched_evaluation.evaluate(
            batched_evaluation.serialized_batches(patterns), tfma_config, signatures, computations,
            baseline_spec.name if baseline_spec else None, threads)
        output_uri = artifact_utils.get_single_uri(output_dict[constants.EVALUATION_KEY])
        validation = evaluation_output.write(
            output_uri, results, tfma_config,
            model_locations={model.model_name: model.model_path for model in models},
            rubber_stamp=model_util.has_rubber_stamp(models))
        logging.info("Evaluation complete. Results written to %s.", output_uri)
        if not run_validation:
            logging.info("No threshold configured, will not validate model.")
            return None
        write_blessing(input_dict, output_dict, exec_properties, validation.validation_ok)
        return None
