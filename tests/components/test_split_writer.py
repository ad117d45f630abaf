"""`components.split_writer`: gzipped TFRecord shards of several splits, from threads."""
from __future__ import annotations

from pathlib import Path

import pytest

from components import split_writer


def read_folder(folder: Path) -> list[bytes]:
    import tensorflow as tf

    return [r.numpy() for r in tf.data.TFRecordDataset(
        sorted(str(p) for p in folder.iterdir()), compression_type="GZIP")]


@pytest.mark.parametrize("shards", [1, 3])
def test_every_record_lands_in_its_split_once(tmp_path: Path, shards: int) -> None:
    folders = [str(tmp_path / "train"), str(tmp_path / "eval")]
    sent: dict[int, list[bytes]] = {0: [], 1: []}
    with split_writer.SplitWriter(folders, shards=shards) as writer:
        for chunk in range(20):
            for split in (0, 1):
                records = [f"{split}-{chunk}-{i}".encode() for i in range(50 + split)]
                writer.write(split, records)
                sent[split] += records
    for split, folder in enumerate(folders):
        names = sorted(p.name for p in Path(folder).iterdir())
        assert names == [split_writer.shard_path("", shard, shards)
                         for shard in range(shards)]
        assert sorted(read_folder(Path(folder))) == sorted(sent[split])


def test_a_failing_thread_is_an_error_in_the_caller(tmp_path: Path) -> None:
    writer = split_writer.SplitWriter([str(tmp_path / "train")], shards=2)
    writer.write(0, [b"fine"])
    writer.write(0, [None])  # the record writer refuses what is not bytes
    with pytest.raises(TypeError):
        writer.close()


def test_shards_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shards must be at least 1"):
        split_writer.SplitWriter([str(tmp_path)], shards=0)


def test_shards_are_gzip_at_its_fastest_level(tmp_path: Path) -> None:
    """The gzip header's XFL byte is 4 for zlib's fastest level (RFC 1952), 0 for the
    default level TensorFlow would otherwise use."""
    with split_writer.SplitWriter([str(tmp_path / "train")]) as writer:
        writer.write(0, [b"record"] * 100)
    (shard,) = (tmp_path / "train").iterdir()
    header = shard.read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b" and header[8] == 4
    assert read_folder(tmp_path / "train") == [b"record"] * 100


def test_a_writer_keeping_a_decoded_copy_needs_the_rows(tmp_path: Path) -> None:
    with split_writer.SplitWriter([str(tmp_path / "Split-train")], keep_decoded=True) as writer:
        with pytest.raises(ValueError, match="every write needs the rows"):
            writer.write(0, [b"record"])


def test_after_a_failed_write_no_manifest_vouches_for_the_copy(tmp_path: Path) -> None:
    """The manifest is what makes readers trust the copy: none after an error."""
    import pyarrow as pa

    rows = pa.RecordBatch.from_arrays([pa.array([[1]], pa.large_list(pa.int64()))], ["n"])
    writer = split_writer.SplitWriter([str(tmp_path / "Split-train")], shards=2,
                                      keep_decoded=True)
    writer.write(0, [b"fine"], rows)
    writer.write(0, [None], rows)  # the record writer refuses what is not bytes
    with pytest.raises(TypeError):
        writer.close()
    assert not (tmp_path / "Decoded-train" / "manifest.json").exists()
