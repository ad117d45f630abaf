"""The evaluation artifact's files, as TFMA's writers lay them out, from per-slice results.

TFMA's writers are Beam transforms, but the work inside them is plain functions: the
proto conversions of `metrics_plots_and_validations_writer`, the per-slice checks of
`metrics_validator` and the `CombineValidations` combiner, and `eval_config_writer`'s
serialization. They are called here directly, and the records written to the files Beam
would have produced (one shard each, TFRecord), so `tfma.load_metrics`,
`tfma.load_validation_result` and every other reader see the same artifact.
"""
from __future__ import annotations

import os
from typing import Iterable

import tensorflow as tf
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.proto import config_pb2
from tensorflow_model_analysis.proto import validation_result_pb2
from tensorflow_model_analysis.writers import eval_config_writer
from tensorflow_model_analysis.writers import metrics_plots_and_validations_writer as writer

from components import batched_metrics

# Beam's WriteToTFRecord names: sharded (one shard) for the sliced outputs, not for the
# validation result.
_SHARD = "-00000-of-00001.tfrecord"
_UNSLICED = ".tfrecord"
# What TFMA's default writers record when the examples came as a PCollection.
_DATA_LOCATION = "<user provided PCollection>"
_DATA_FILE_FORMAT = "<unknown>"


def _write_records(path: str, records: Iterable[bytes]) -> None:
    with tf.io.TFRecordWriter(path) as records_file:
        for record in records:
            records_file.write(record)


def validation_result(sliced_metrics: list[tuple[tuple, batched_metrics.MetricsDict]],
                      eval_config: config_pb2.EvalConfig,
                      rubber_stamp: bool) -> validation_result_pb2.ValidationResult:
    """Every slice's threshold checks merged, as TFMA's writer merges them."""
    combine = writer.CombineValidations(eval_config, rubber_stamp=rubber_stamp)
    accumulator = combine.create_accumulator()
    for slice_key, metrics in sliced_metrics:
        accumulator = combine.add_input(
            accumulator, metrics_validator.validate_metrics((slice_key, metrics), eval_config))
    return combine.extract_output(accumulator)


def write(output_uri: str, results: list[tuple[tuple, batched_metrics.MetricsDict]],
          eval_config: config_pb2.EvalConfig, model_locations: dict[str, str],
          rubber_stamp: bool) -> validation_result_pb2.ValidationResult:
    """Writes eval_config.json, metrics, plots, attributions and validations; returns
    the validation result."""
    tf.io.gfile.makedirs(output_uri)
    metrics, plots, attributions = [], [], []
    for slice_key, slice_results in results:
        slice_metrics, slice_plots, slice_attributions = (
            batched_metrics.split_by_kind(slice_results))
        metrics.append((slice_key, slice_metrics))
        plots.append((slice_key, slice_plots))
        attributions.append((slice_key, slice_attributions))

    def path(key: str, suffix: str = _SHARD) -> str:
        return os.path.join(output_uri, key + suffix)

    with tf.io.gfile.GFile(os.path.join(
            output_uri, f"{eval_config_writer.EVAL_CONFIG_FILE}."
                        f"{eval_config_writer.EVAL_CONFIG_FILE_FORMAT}"), "w") as config_file:
        config_file.write(eval_config_writer._serialize_eval_run(
            eval_config, _DATA_LOCATION, _DATA_FILE_FORMAT, model_locations) + "\n")
    _write_records(path(constants.METRICS_KEY), (
        writer.convert_slice_metrics_to_proto(m, add_metrics_callbacks=[]).SerializeToString()
        for m in metrics))
    _write_records(path(constants.PLOTS_KEY), (
        writer.convert_slice_plots_to_proto(p, add_metrics_callbacks=[]).SerializeToString()
        for p in plots))
    _write_records(path(constants.ATTRIBUTIONS_KEY), (
        writer.convert_slice_attributions_to_proto(a).SerializeToString()
        for a in attributions))
    result = validation_result(metrics, eval_config, rubber_stamp)
    _write_records(path(constants.VALIDATIONS_KEY, _UNSLICED), [result.SerializeToString()])
    return result
