"""TFRecord framing (serving/tfrecord.py) against TensorFlow's own writer and reader."""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf

from serving import tfrecord

RECORDS = [b"", b"x", b"a" * 1000, bytes(range(256)) * 40]


def test_framed_records_are_byte_for_byte_what_tensorflow_s_writer_writes(tmp_path: Path):
    path = tmp_path / "by-tensorflow.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in RECORDS:
            writer.write(record)
    assert b"".join(tfrecord.frame(record) for record in RECORDS) == path.read_bytes()


def test_tensorflow_reads_framed_records_back(tmp_path: Path):
    path = tmp_path / "framed.tfrecord"
    path.write_bytes(b"".join(tfrecord.frame(record) for record in RECORDS))
    assert [record.numpy() for record in tf.data.TFRecordDataset(str(path))] == RECORDS
