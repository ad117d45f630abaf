"""Arrow record batches of stored tf.Examples: read in C++, decoded in several threads.

The in-process executor paths (`beam_runner`) spend most of their time here. On the
1.5 M-row taxi sample, tfx_bsl's `ExamplesToRecordBatchDecoder.DecodeBatch` was most of
StatisticsGen, and Beam's pure-Python TFRecord reader (Python gzip, a Python call per
record) a quarter of Transform. Both have faster equivalents in the same libraries (each
measured with bench/scale and bench/components; figures in docs/performance.md):

- tf.data's TFRecordDataset reads, inflates and checks the records' CRCs in C++, on its own
  thread, faster with a large read buffer and prefetching than tfx_bsl's
  `make_tf_record_dataset` (its interleave machinery).
- `DecodeBatch` costs less per record on small batches, so records decode
  `DECODE_ROWS` at a time and tfx_bsl's `MergeRecordBatches` (C++) joins the pieces into
  batches of the size asked for.
- `DecodeBatch` releases the GIL, so batches decode in parallel. A decoder is not
  thread-safe (it keeps per-feature state), so each thread has its own.

Batches come out in the order of the records, so what consumes them sees what a
sequential reader would give it. The records and the decoder (with the same schema, or
none) are the ones TFX's TFXIO uses, so the batches hold the same values.

Cheaper still is not decoding: where this project's ExampleGen wrote the records, it also
wrote their decoded copy (`decoded_copy`), and `read` takes the batches from there.
"""
from __future__ import annotations

import threading
from typing import Iterable, Iterator, Optional, Sequence

import pyarrow as pa
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.util import tfxio_utils
from tfx.proto import example_gen_pb2
from tfx_bsl.arrow import table_util
from tfx_bsl.coders import example_coder
from tfx_bsl.tfxio import dataset_util

from components import decoded_copy, parallelism

# tf.data's default read buffer is 256 KB; a larger one halves the reading time above.
READ_BUFFER_BYTES = 8 << 20
# Records per `DecodeBatch` call (see above: 2,048 was already as slow as 8,192).
DECODE_ROWS = 1024


def matching_files(patterns: Iterable[str]) -> list[str]:
    """The files matching `patterns` (globs on any TensorFlow file system), in order."""
    return [path for pattern in patterns for path in sorted(tf.io.gfile.glob(pattern))]


def raw_batches(files: list[str], batch_size: int, prefetch: int) -> Iterator[list]:
    """Lists of up to `batch_size` serialized records of gzipped (or plain) TFRecords."""
    if not files:
        return
    compression = dataset_util.detect_compression_type(tf.constant(files)).numpy().decode()
    dataset = (tf.data.TFRecordDataset(files, compression_type=compression,
                                       buffer_size=READ_BUFFER_BYTES)
               .batch(batch_size).prefetch(prefetch))
    for records in dataset.as_numpy_iterator():
        yield records


class RecordDecoders(threading.local):
    """One `ExamplesToRecordBatchDecoder` per thread (they are not thread-safe)."""

    def __init__(self, schema: Optional[bytes]) -> None:
        super().__init__()
        self.decoder = (example_coder.ExamplesToRecordBatchDecoder(schema)
                        if schema is not None
                        else example_coder.ExamplesToRecordBatchDecoder())

    def decode(self, records: Sequence[bytes]) -> pa.RecordBatch:
        """`records` as one record batch, decoded `DECODE_ROWS` at a time.

        Without a schema each piece has the types its own records show (a feature without
        values in a piece is a null column there); `MergeRecordBatches` unifies them as
        decoding all the records at once would.
        """
        if len(records) <= DECODE_ROWS:
            return self.decoder.DecodeBatch(records)
        return table_util.MergeRecordBatches(
            [self.decoder.DecodeBatch(records[start:start + DECODE_ROWS])
             for start in range(0, len(records), DECODE_ROWS)])


def split_patterns(examples: list[types.Artifact], split: str) -> Optional[list[str]]:
    """The file patterns of a split of Examples artifacts if it holds gzipped tf.Examples
    (what `read` and `serialized_batches` read), else None: the caller then reads it
    through TFX's TFXIO."""
    payload_format, data_view_uri = tfxio_utils.resolve_payload_format_and_data_view_uri(
        examples)
    patterns, file_formats = tfxio_utils.get_file_format_and_patterns(examples, split)
    if (payload_format != example_gen_pb2.FORMAT_TF_EXAMPLE or data_view_uri
            or any(file_format != "tfrecords_gzip" for file_format in file_formats)):
        return None
    return patterns


def read(patterns: Iterable[str], schema: Optional[schema_pb2.Schema], batch_size: int,
         threads: int) -> Iterator[pa.RecordBatch]:
    """The tf.Examples in the files matching `patterns`, decoded as TFX's TFXIO does.

    Args:
      patterns: file paths or globs of TFRecord files of serialized tf.Examples.
      schema: decode only and exactly these features, typed as the schema says (as
        TFXIO does with a schema); None infers the features and types from the data.
      batch_size: the records per batch (the last may hold fewer).
      threads: how many batches decode at once; 1 decodes in the caller's thread.

    Yields:
      Arrow record batches, in the order of the records: from their decoded copy where
      ExampleGen wrote one (`decoded_copy`), else decoded here.
    """
    files = matching_files(patterns)
    copied = decoded_copy.read(files, schema, batch_size)
    if copied is not None:
        yield from copied
        return
    decoders = RecordDecoders(schema.SerializeToString() if schema is not None else None)
    batches = raw_batches(files, batch_size, prefetch=max(2, threads))
    yield from parallelism.ordered_map(decoders.decode, ((records,) for records in batches),
                                       threads, "decode-examples")
