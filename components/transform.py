"""Transform executor that feeds tf.Transform its input faster where Beam would not distribute.

TFX's Transform reads its examples through TFXIO's Beam source: Beam's pure-Python TFRecord
reader (Python gzip and a Python call per record), Beam's adaptive batching (at most 1,000
rows a batch, so one TensorFlow session run per 1,000 rows at best) and tfx_bsl's decoder
in one thread. On the 1.5 M-row taxi sample reading and decoding were half of Transform's
time. Where Beam runs everything in this process anyway (`beam_runner`), this executor
hands tf.Transform the same Arrow record batches, from the same files and decoded by the
same decoder with the same (projected) schema, but read in C++ and decoded in
`parallelism.threads_for` threads (`example_batches`), in batches of `BATCH_SIZE` rows:
less time and memory than the stock executor's (bench/components; see docs/performance.md).

Everything else is TFX's: the executor, the Beam pipeline, tf.Transform's analysis and
its outputs. Only the source of one PCollection differs, so the transform graph is the one
the stock executor writes; sums over the data (means, variances) may differ in their last
bits, as they do between two stock runs, whose batch boundaries depend on timing.

Before its pipeline, TFX's executor traces the preprocessing_fn four times only to
inspect it (the columns analysis reads, twice, the columns the transform reads, the
analyzer cache's keys); on small data those traces were a quarter of Transform's time.
Here the column inspections share one trace, and without an analyzer cache (the pipeline
disables it) the cache keys are not computed: TFX only counts them then, for a metric.

A distributing runner, input that is not gzipped tf.Examples (other payloads, raw
records), and small input read in one thread (`in_process_tfxio`) keep the stock
executor's reading.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import apache_beam as beam
import pyarrow as pa
import tensorflow_transform as tft
from absl import logging
from tensorflow_metadata.proto.v0 import schema_pb2
from tensorflow_transform import impl_helper
from tensorflow_transform.beam import analysis_graph_builder
from tfx import types
from tfx.components.transform import executor as stock
from tfx.types import standard_component_specs
from tfx_bsl.tfxio import tf_example_record
from tfx_bsl.tfxio import tfxio as tfxio_module

from components import decoded_copy, example_batches, parallelism
from components.beam_runner import beam_would_distribute

# Rows per record batch, which is also rows per tf.Transform session run: fewer runs than
# with Beam's batches of at most 1,000 rows, a few MB per batch in flight.
BATCH_SIZE = 8192


class _ReadInProcess(beam.PTransform):
    """A Beam source of record batches read by `example_batches` in one bundle."""

    def __init__(self, patterns: list[str], schema: Optional[schema_pb2.Schema],
                 batch_size: int, threads: int) -> None:
        super().__init__()
        self._patterns = patterns
        self._schema = schema
        self._batch_size = batch_size
        self._threads = threads

    def expand(self, pipeline: beam.Pipeline) -> beam.PCollection:
        patterns, schema = self._patterns, self._schema
        batch_size, threads = self._batch_size, self._threads

        def read(_: Any) -> Iterator[pa.RecordBatch]:
            return example_batches.read(patterns, schema, batch_size, threads)

        return (pipeline
                | "Start" >> beam.Create([None])
                | "ReadAndDecode" >> beam.FlatMap(read).with_output_types(pa.RecordBatch))


class InProcessExampleRecord(tf_example_record.TFExampleRecord):
    """TFX's TFXIO for gzipped tf.Examples, with `example_batches` as its Beam source.

    Schema, projection, Arrow schema and tensor adapters are the parent's, so
    tf.Transform builds the same graph; `BeamSource` yields the same record batches.
    """

    def __init__(self, file_pattern: list[str], schema: Optional[schema_pb2.Schema],
                 telemetry_descriptors: Optional[list[str]], threads: int) -> None:
        super().__init__(file_pattern=file_pattern, schema=schema,
                         telemetry_descriptors=telemetry_descriptors)
        self.threads = threads

    def _ProjectImpl(self, tensor_names: list[str]) -> tfxio_module.TFXIO:
        projected = super()._ProjectImpl(tensor_names)
        return InProcessExampleRecord(self._file_pattern, projected._schema,
                                      self.telemetry_descriptors, self.threads)

    def BeamSource(self, batch_size: Optional[int] = None) -> beam.PTransform:
        return _ReadInProcess(self._file_pattern, self._GetSchemaForDecoding(),
                              batch_size or BATCH_SIZE, self.threads)


def in_process_tfxio(tfxio: tfxio_module.TFXIO, beam_pipeline_args: list[str]
                     ) -> Optional[InProcessExampleRecord]:
    """`tfxio` read by `example_batches`, or None where TFX's reading should stay.

    That is input other than gzipped tf.Examples, and small input read in one thread
    without a decoded copy (`decoded_copy`): on the bundled data decoding the records
    here (TensorFlow's eager and tf.data runtimes' start-up) outweighed its gains
    (bench/components; see docs/performance.md), while reading a copy costs nearly nothing.
    """
    if (type(tfxio) is not tf_example_record.TFExampleRecord
            or tfxio.raw_record_column_name is not None):
        return None
    patterns = list(tfxio._file_pattern)
    size = parallelism.stored_bytes(patterns)
    threads = parallelism.threads_for(beam_pipeline_args, size)
    if (threads == 1 and size < parallelism.AUTO_MIN_BYTES
            and not decoded_copy.copied(example_batches.matching_files(patterns))):
        return None
    return InProcessExampleRecord(patterns, tfxio._schema, tfxio.telemetry_descriptors,
                                  threads)


class InProcessTransformProcessor(stock.TransformProcessor):
    """TFX's TransformProcessor (the part of the executor that runs tf.Transform), with
    `InProcessExampleRecord` for gzipped tf.Examples."""

    beam_pipeline_args: list[str] = []

    def _CreateTFXIO(self, dataset: Any, schema: schema_pb2.Schema) -> tfxio_module.TFXIO:
        tfxio = super()._CreateTFXIO(dataset, schema)
        fast = in_process_tfxio(tfxio, self.beam_pipeline_args)
        if fast is None:
            logging.info("Transform reads %s through Beam: small, or not gzipped "
                         "tf.Examples", dataset.file_pattern)
            return tfxio
        logging.info("Transform reads %s in this process, %d thread(s)",
                     dataset.file_pattern, fast.threads)
        return fast


@contextlib.contextmanager
def _patched(owner: Any, name: str, replacement: Any) -> Iterator[None]:
    """`owner.name` is `replacement` inside the block, then what it was: TFX's executor and
    tf.Transform look these names up when called, with no hook to pass another."""
    original = getattr(owner, name)
    setattr(owner, name, replacement)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _specs_key(specs: dict) -> Any:
    """Equal specs (TFX builds the same type specs twice) give equal keys; specs that
    cannot be hashed are told apart by identity."""
    try:
        key = tuple(sorted(specs.items()))
        hash(key)
        return key
    except TypeError:
        return id(specs)


@contextlib.contextmanager
def _column_inspections_share_a_trace() -> Iterator[None]:
    """TFX's executor inspects the preprocessing_fn three times with
    `tft.get_analyze_input_columns` and `get_transform_input_columns` (same function, equal
    specs); each only reads the traced graph, so they read one. The analysis itself traces
    its own graph, as before."""
    traces: dict[tuple, tuple] = {}
    trace = impl_helper.trace_preprocessing_function

    def shared_trace(preprocessing_fn, input_specs, use_tf_compat_v1, base_temp_dir=None):
        key = (id(preprocessing_fn), _specs_key(input_specs), use_tf_compat_v1)
        if key not in traces:  # the arguments are kept, so their ids stay theirs
            traces[key] = (trace(preprocessing_fn, input_specs, use_tf_compat_v1,
                                 base_temp_dir), preprocessing_fn, input_specs)
        return traces[key][0]

    def inspecting(inspect: Any) -> Any:
        def inspect_with_shared_trace(*args: Any, **kwargs: Any) -> Any:
            with _patched(impl_helper, "trace_preprocessing_function", shared_trace):
                return inspect(*args, **kwargs)
        return inspect_with_shared_trace

    with _patched(tft, "get_analyze_input_columns", inspecting(tft.get_analyze_input_columns)), \
            _patched(tft, "get_transform_input_columns",
                     inspecting(tft.get_transform_input_columns)):
        yield


@contextlib.contextmanager
def _no_cache_keys_without_a_cache(input_dict: dict, output_dict: dict) -> Iterator[None]:
    """Without an analyzer cache read or written, TFX's executor uses the cache keys only
    to estimate a stage count for a metric; they cost a trace and an analysis graph."""
    if input_dict.get(standard_component_specs.ANALYZER_CACHE_KEY) or output_dict.get(
            standard_component_specs.UPDATED_ANALYZER_CACHE_KEY):
        yield
        return
    with _patched(analysis_graph_builder, "get_analysis_cache_entry_keys",
                  lambda *args, **kwargs: set()):
        yield


class Executor(stock.Executor):
    """The stock Transform executor, its input read in C++ and threads where Beam would
    not distribute."""

    def processor_class(self) -> type:
        """The TransformProcessor to run: TFX's for a distributing runner, else one that
        reads in this process, with this executor's Beam arguments."""
        if beam_would_distribute(self._beam_pipeline_args):
            return stock.TransformProcessor
        return type("TransformProcessor", (InProcessTransformProcessor,),
                    {"beam_pipeline_args": list(self._beam_pipeline_args)})

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        processor_class = self.processor_class()
        if processor_class is stock.TransformProcessor:
            logging.info("Transform reads through Beam: a distributing Beam runner")
        # `Do` (200 lines of TFX's input and output handling, kept as they are) builds its
        # processor from the module's name `TransformProcessor`.
        with _patched(stock, "TransformProcessor", processor_class), \
                _column_inspections_share_a_trace(), \
                _no_cache_keys_without_a_cache(input_dict, output_dict):
            super().Do(input_dict, output_dict, exec_properties)
