"""CsvExampleGen over a window of spans: train on the newest N spans, not only the newest.

TFX 1.16's ExampleGen ingests exactly one span per run (its driver refuses a range of
several), and the resolver that gathers several spans' artifacts (`SpanRangeStrategy`)
does not compile for Kubeflow v2. So the window is read at ingestion instead: the stock
driver still resolves `{SPAN}` to the newest (or configured) span, fingerprints it and
records it as the artifact's span; this executor then reads that span's CSV files and
those of the spans before it, up to `train_spans` of them, as one data set, with column
types inferred over all of them (so a column cannot be INT in one span, FLOAT in another).
Files are read a column at a time (`csv_columns`), into the Examples CsvExampleGen writes.

Only the newest span's files are in TFX's cache key: older spans are expected not to
change once written, as the layout implies. Spans missing inside the window are skipped.
"""
from __future__ import annotations

import os
from typing import Any

import apache_beam as beam
import tensorflow as tf
from google.protobuf import struct_pb2
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import csv_columns

SPAN_PATTERN_KEY = "span_pattern"  # in custom_config: the pattern with {SPAN} unresolved
TRAIN_SPANS_KEY = "train_spans"
SPAN_TOKEN = "{SPAN}"
SPAN_PROPERTY = "span"  # the execution property the stock driver sets to the resolved span


def window_config(span_pattern: str, train_spans: int) -> example_gen_pb2.CustomConfig:
    """ExampleGen's `custom_config` (an `Any`, here a Struct) telling the executor the window."""
    options = struct_pb2.Struct()
    options.update({SPAN_PATTERN_KEY: span_pattern, TRAIN_SPANS_KEY: train_spans})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(options)
    return config


def read_window_config(exec_properties: dict[str, Any]) -> tuple[str, int]:
    """(span pattern, number of spans) from the executor's `custom_config` property."""
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    config = proto_utils.json_to_proto(raw, example_gen_pb2.CustomConfig()) \
        if isinstance(raw, str) else raw
    options = struct_pb2.Struct()
    if config is None or not config.custom_config.Unpack(options):
        raise ValueError("the span window executor needs window_config() as custom_config")
    return options[SPAN_PATTERN_KEY], int(options[TRAIN_SPANS_KEY])


def window_spans(newest: int, count: int) -> range:
    """The spans a run reads, newest last: `count` of them, none below 0."""
    return range(max(0, newest - count + 1), newest + 1)


def window_files(input_base: str, span_pattern: str, newest: int, count: int) -> list[str]:
    """The CSV files of the window, oldest span first (sorted within a span)."""
    files: list[str] = []
    for span in window_spans(newest, count):
        pattern = os.path.join(input_base, span_pattern.replace(SPAN_TOKEN, str(span)))
        files.extend(sorted(fileio.glob(pattern)))
    return files


class _SpanWindowCsvToExample(beam.PTransform):
    """CSV files of several spans -> tf.Examples, with one type inference over all of them."""

    def __init__(self, exec_properties: dict[str, Any], split_pattern: str) -> None:
        super().__init__()
        self._input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
        self._span_pattern, self._count = read_window_config(exec_properties)
        self._newest = int(exec_properties[SPAN_PROPERTY])
        self._resolved_pattern = split_pattern

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        files = window_files(self._input_base, self._span_pattern, self._newest, self._count)
        if not files:
            raise RuntimeError(f"Split pattern {self._resolved_pattern} does not match any "
                               "files.")
        header = io_utils.load_csv_column_names(files[-1])
        for path in files:
            if io_utils.load_csv_column_names(path) != header:
                raise RuntimeError(f"{path} does not have the columns of {files[-1]}: every "
                                   f"span of a training window needs the same header")
        batches = (pipeline
                   | "CreateFilenames" >> beam.Create(files)
                   | "ReadCsvColumns" >> beam.FlatMap(csv_columns.read_batches, header))
        kinds = beam.pvalue.AsSingleton(
            batches
            | "BatchColumnKinds" >> beam.Map(csv_columns.batch_kinds)
            | "InferColumnKinds" >> beam.CombineGlobally(csv_columns.merge_kinds))
        return (batches
                | "ToTFExample" >> beam.FlatMap(csv_columns.to_examples, kinds)
                # As messages, not bytes: the base executor then hashes their deterministic
                # serialization, so each row lands in the train/eval split CsvExampleGen
                # gives it (the C++ encoder's field order differs).
                | "ParseExample" >> beam.Map(tf.train.Example.FromString))


class Executor(BaseExampleGenExecutor):
    """ExampleGen executor that reads the configured window of spans."""

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _SpanWindowCsvToExample
