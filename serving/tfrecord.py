"""TFRecord framing, for files written from a thread that shares the GIL with the event loop.

`tf.io.TFRecordWriter.write` releases the GIL for every record and must win it back from
the event loop each time: a second's request-log samples written that way made hundreds of
hand-overs per second on the request path's thread (bench/serving_options;
docs/performance.md). Framed here, a second's records leave in one file write.

The format is TensorFlow's (`tensorflow/core/lib/io/record_writer.cc`): per record, its
length as a little-endian uint64, the length's masked CRC-32C, the data, the data's masked
CRC-32C; readers (`tf.data.TFRecordDataset`, TFDV) cannot tell the files apart
(tests/serving/test_tfrecord.py compares them byte for byte).
"""
from __future__ import annotations

import struct

import google_crc32c

_LENGTH = struct.Struct("<Q")
_CRC = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    """CRC-32C of `data`, rotated and offset as TFRecord stores it (a CRC of data that
    itself holds CRCs is then not trivially related to them)."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame(record: bytes) -> bytes:
    """`record` as one TFRecord: length, its CRC, the data, its CRC."""
    length = _LENGTH.pack(len(record))
    return b"".join((length, _CRC.pack(masked_crc(length)), record,
                     _CRC.pack(masked_crc(record))))
