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

Where no driver ran (Kubeflow Pipelines never runs TFX's `preCacheCheck` driver), the
executor resolves the span itself, with the driver's own input processor, at run time:
a scheduled run reads the newest span present when it starts, not when it was compiled.
"""
from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any, Iterator, NamedTuple, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
import numpy as np
import pyarrow as pa
import tensorflow as tf
from google.protobuf import struct_pb2
from tfx import types
from tfx.components.example_gen import driver as example_gen_driver
from tfx.components.example_gen import input_processor
from tfx.components.example_gen import utils as example_gen_utils
from tfx.components.example_gen import write_split
from tfx.components.example_gen.base_example_gen_executor import BaseExampleGenExecutor
from tfx.components.util import examples_utils
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2, range_config_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from components import csv_columns, parallelism, split_writer
from components.beam_runner import beam_would_distribute

SPAN_PATTERN_KEY = "span_pattern"  # in custom_config: the pattern with {SPAN} unresolved
TRAIN_SPANS_KEY = "train_spans"
MISSING_VALUES_KEY = "missing_values"
DECODED_COPY_KEY = "decoded_copy"
SPAN_TOKEN = "{SPAN}"
SPAN_PROPERTY = "span"  # the execution property the stock driver sets to the resolved span


class Window(NamedTuple):
    """What the executor reads: the span pattern, how many spans, which cells are missing;
    and whether it writes the rows' decoded copy (`data.decoded_copy`)."""

    span_pattern: str
    train_spans: int
    missing_values: tuple[str, ...] = ()
    decoded_copy: bool = True


def window_config(span_pattern: str, train_spans: int, missing_values: Sequence[str] = (),
                  decoded_copy: bool = True) -> example_gen_pb2.CustomConfig:
    """ExampleGen's `custom_config` (an `Any`, here a Struct) telling the executor the window,
    the cell texts that mean "missing" (`data.missing_values`) and whether to write the
    decoded copy (`data.decoded_copy`)."""
    options = struct_pb2.Struct()
    options.update({SPAN_PATTERN_KEY: span_pattern, TRAIN_SPANS_KEY: train_spans,
                    MISSING_VALUES_KEY: list(missing_values), DECODED_COPY_KEY: decoded_copy})
    config = example_gen_pb2.CustomConfig()
    config.custom_config.Pack(options)
    return config


def read_window_config(exec_properties: dict[str, Any]) -> Window:
    """The window from the executor's `custom_config` property.

    Raises:
        ValueError: `custom_config` is missing or is not `window_config()`'s Struct.
    """
    raw = exec_properties.get(standard_component_specs.CUSTOM_CONFIG_KEY)
    config = proto_utils.json_to_proto(raw, example_gen_pb2.CustomConfig()) \
        if isinstance(raw, str) else raw
    options = struct_pb2.Struct()
    if config is None or not config.custom_config.Unpack(options):
        raise ValueError("the span window executor needs window_config() as custom_config")
    missing = options[MISSING_VALUES_KEY] if MISSING_VALUES_KEY in options else []
    decoded_copy = bool(options[DECODED_COPY_KEY]) if DECODED_COPY_KEY in options else True
    return Window(options[SPAN_PATTERN_KEY], int(options[TRAIN_SPANS_KEY]),
                  tuple(str(value) for value in missing), decoded_copy)


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


def window_csv_files(input_base: str, span_pattern: str, newest: int, count: int,
                     resolved_pattern: str) -> tuple[list[str], list[str]]:
    """The window's CSV files and their header, which every file must share.

    Raises:
        RuntimeError: no file matches (TFX's own message, naming `resolved_pattern`), or
            a file's header differs from the newest file's.
    """
    files = window_files(input_base, span_pattern, newest, count)
    if not files:
        raise RuntimeError(f"Split pattern {resolved_pattern} does not match any files.")
    header = io_utils.load_csv_column_names(files[-1])
    for path in files:
        if io_utils.load_csv_column_names(path) != header:
            raise RuntimeError(f"{path} does not have the columns of {files[-1]}: every "
                               f"span of a training window needs the same header")
    return files, header


def _window_csv_files(exec_properties: dict[str, Any],
                      resolved_pattern: str) -> tuple[list[str], list[str]]:
    window = read_window_config(exec_properties)
    return window_csv_files(exec_properties[standard_component_specs.INPUT_BASE_KEY],
                            window.span_pattern, int(exec_properties[SPAN_PROPERTY]),
                            window.train_spans, resolved_pattern)


def window_records(files: list[str], header: list[str], missing_values: Sequence[str] = (),
                   decoded: bool = False
                   ) -> Iterator[tuple[pa.Array, Optional[pa.RecordBatch]]]:
    """The window's rows as deterministically serialized tf.Examples, a batch at a time,
    read twice: column types first, then the rows; with `decoded`, beside each batch of
    records its rows as the decoder decodes them (`csv_columns.to_decoded`), else None.

    Two passes over the files keep memory to one batch of rows at a time.
    """
    def batches() -> Iterator[pa.RecordBatch]:
        for path in files:
            yield from csv_columns.read_batches(path, header, missing_values)

    kinds = csv_columns.merge_kinds(csv_columns.batch_kinds(batch) for batch in batches())
    for batch in batches():
        yield (csv_columns.to_records_and_decoded(batch, kinds) if decoded
               else (csv_columns.to_records(batch, kinds), None))


def resolve_span(exec_properties: dict[str, Any]) -> dict[str, Any]:
    """The exec properties as TFX's ExampleGen driver leaves them: span, version and input
    fingerprint set, the split pattern's `{SPAN}` replaced. Unchanged if a driver ran."""
    if exec_properties.get(SPAN_PROPERTY) is not None:
        return exec_properties
    resolved = dict(exec_properties)
    input_config = proto_utils.json_to_proto(
        exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
    range_config = None
    if exec_properties.get(standard_component_specs.RANGE_CONFIG_KEY):
        range_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.RANGE_CONFIG_KEY],
            range_config_pb2.RangeConfig())
    processor = input_processor.FileBasedInputProcessor(
        exec_properties[standard_component_specs.INPUT_BASE_KEY], input_config.splits,
        range_config)
    span, version = processor.resolve_span_and_version()
    for split in input_config.splits:
        split.pattern = processor.get_pattern_for_span_version(split.pattern, span, version)
    resolved[standard_component_specs.INPUT_CONFIG_KEY] = proto_utils.proto_to_json(
        input_config)
    resolved[SPAN_PROPERTY] = span
    resolved[example_gen_utils.VERSION_PROPERTY_NAME] = version
    resolved[example_gen_utils.FINGERPRINT_PROPERTY_NAME] = processor.get_input_fingerprint(
        span, version)
    return resolved


class _SpanWindowCsvToExample(beam.PTransform):
    """CSV files of several spans -> tf.Examples, with one type inference over all of them."""

    def __init__(self, exec_properties: dict[str, Any], split_pattern: str) -> None:
        super().__init__()
        self._files, self._header = _window_csv_files(exec_properties, split_pattern)
        self._missing_values = read_window_config(exec_properties).missing_values
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
            example_gen_pb2.Output())
        self._partition_by_feature = output_config.split_config.HasField(
            "partition_feature_name")

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        batches = (pipeline
                   | "CreateFilenames" >> beam.Create(self._files)
                   | "ReadCsvColumns" >> beam.FlatMap(csv_columns.read_batches, self._header,
                                                      self._missing_values))
        kinds = beam.pvalue.AsSingleton(
            batches
            | "BatchColumnKinds" >> beam.Map(csv_columns.batch_kinds)
            | "InferColumnKinds" >> beam.CombineGlobally(csv_columns.merge_kinds))
        # Deterministically serialized records: the base executor hashes the bytes as
        # they are, which are the bytes CsvExampleGen hashes for the same row.
        records = batches | "ToTFExample" >> beam.FlatMap(csv_columns.to_examples, kinds)
        if self._partition_by_feature:  # the base executor reads that feature from messages
            records |= "ParseExample" >> beam.Map(tf.train.Example.FromString)
        return records


def hash_split_buckets(output_config: example_gen_pb2.Output) -> list[int]:
    """Cumulative hash buckets of the output splits, as TFX's ExampleGen computes them."""
    return list(itertools.accumulate(
        split.hash_buckets for split in output_config.split_config.splits))


def split_of_records(records: Sequence[bytes],
                     output_config: example_gen_pb2.Output) -> np.ndarray:
    """Each record's output split number, as TFX's partition function picks it
    (`base_example_gen_executor._PartitionFn` on a record's bytes: SHA-256 as a big-endian
    integer, modulo the buckets, then the split whose cumulative buckets exceed it).

    Computed here for a batch at once rather than by calling that function per record:
    its hex round trip and bisection were most of ExampleGen's per-row Python work
    (docs/performance.md, Scale); `tests/components/test_span_window.py` holds the two
    equal on every bucket layout it tries.
    """
    buckets = hash_split_buckets(output_config)
    total, sha256, to_int = buckets[-1], hashlib.sha256, int.from_bytes
    hashed = np.fromiter((to_int(sha256(record).digest(), "big") % total
                          for record in records), dtype=np.int64, count=len(records))
    return np.searchsorted(np.asarray(buckets), hashed, side="right").astype(np.int32)


def records_by_split(records: Sequence[bytes], splits: np.ndarray,
                     count: int) -> list[list[bytes]]:
    """`records` grouped by their split number (`split_of_records`), in their order."""
    groups: list[list[bytes]] = [[] for _ in range(count)]
    add = [group.append for group in groups]
    for record, split in zip(records, splits.tolist()):
        add[split](record)
    return groups


class Executor(BaseExampleGenExecutor):
    """ExampleGen executor that reads the configured window of spans.

    Where Beam would not distribute the work (`beam_runner`), the rows are split and written
    in this process, without a Beam pipeline: the same Examples, in the same splits (TFX's
    own partition function) and files; only their order within a split differs, which TFX's
    Beam writer shuffles anyway, without Beam's per-stage costs. Beside each split it
    writes the rows' decoded copy (`decoded_copy`; unless `data.decoded_copy` is false),
    which StatisticsGen and Transform read instead of decoding the records.
    """

    def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
        return _SpanWindowCsvToExample

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        """Writes the window's Examples (in this process when Beam would not distribute),
        and, when no driver ran (a KFP task), the span properties a driver would record.

        Raises:
            ValueError: `custom_config` is not `window_config()`'s.
            RuntimeError: the window has no file, or its files' headers differ.
            CsvFormatError: a file cannot be read as CSV with that header.
        """
        driver_ran = exec_properties.get(SPAN_PROPERTY) is not None
        exec_properties = resolve_span(exec_properties)
        # The files are read outside a Beam pipeline; Beam's s3:// filesystem needs the
        # options a pipeline would hand it (endpoint, keys), so it is handed them here.
        FileSystems.set_options(PipelineOptions(self._beam_pipeline_args))
        self._write(input_dict, output_dict, exec_properties)
        if not driver_ran:  # the span, version and fingerprint the driver would record
            for artifact in output_dict[standard_component_specs.EXAMPLES_KEY]:
                example_gen_driver.update_output_artifact(exec_properties,
                                                          artifact.mlmd_artifact)

    def _write(self, input_dict: dict[str, list[types.Artifact]],
               output_dict: dict[str, list[types.Artifact]],
               exec_properties: dict[str, Any]) -> None:
        input_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.INPUT_CONFIG_KEY], example_gen_pb2.Input())
        output_config = proto_utils.json_to_proto(
            exec_properties[standard_component_specs.OUTPUT_CONFIG_KEY],
            example_gen_pb2.Output())
        payload = exec_properties.get(standard_component_specs.OUTPUT_DATA_FORMAT_KEY)
        file_format = exec_properties.get(standard_component_specs.OUTPUT_FILE_FORMAT_KEY)
        in_process = (not beam_would_distribute(self._beam_pipeline_args)
                      # One input split hash-split into gzipped tf.Examples, as configured
                      # by the builder; anything else is TFX's to write.
                      and bool(output_config.split_config.splits)
                      and not output_config.split_config.HasField("partition_feature_name")
                      and len(input_config.splits) == 1
                      and payload in (None, example_gen_pb2.FORMAT_TF_EXAMPLE)
                      and file_format in (None, example_gen_pb2.FILE_FORMAT_UNSPECIFIED,
                                          example_gen_pb2.FORMAT_TFRECORDS_GZIP))
        if not in_process:
            super().Do(input_dict, output_dict, exec_properties)
            return
        self._log_startup(input_dict, output_dict, exec_properties)
        output = output_dict[standard_component_specs.EXAMPLES_KEY]
        split_names = example_gen_utils.generate_output_split_names(input_config, output_config)
        for artifact in output:
            artifact.split_names = artifact_utils.encode_split_names(split_names)
        files, header = _window_csv_files(exec_properties, input_config.splits[0].pattern)
        window = read_window_config(exec_properties)
        threads = parallelism.threads_for(self._beam_pipeline_args,
                                          parallelism.stored_bytes(files))
        folders = [artifact_utils.get_split_uri(output, name) for name in split_names]
        with split_writer.SplitWriter(folders, shards=threads,
                                      keep_decoded=window.decoded_copy) as writer:
            for batch, decoded in window_records(files, header, window.missing_values,
                                                 decoded=window.decoded_copy):
                records = batch.to_pylist()
                splits = split_of_records(records, output_config)
                for split, group in enumerate(records_by_split(records, splits, len(folders))):
                    writer.write(split, group, None if decoded is None
                                 else decoded.filter(pa.array(splits == split)))
        # The properties TFX's ExampleGen sets on what it wrote.
        for artifact in output:
            if payload is not None:
                examples_utils.set_payload_format(artifact, payload)
            if file_format:
                examples_utils.set_file_format(artifact,
                                               write_split.to_file_format_str(file_format))
