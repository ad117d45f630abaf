"""`components.decoded_copy`: ExampleGen's decoded copy gives readers exactly the batches
decoding the records gives, and is taken only where its manifest vouches for the records."""
from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx.types import artifact_utils
from tfx_bsl.coders import example_coder

from components import csv_columns, decoded_copy, example_batches
from tests.components.record_batches import assert_identical
from tests.components.test_csv_columns import MARKED_CSV, TRICKY_CSV
from tests.components.test_span_window import run_example_gen
from tests.conftest import copy_taxi_span

# The taxi columns in another order than the records', with a feature the data lacks.
TAXI_SCHEMA = """
feature { name: "trip_miles" type: FLOAT }
feature { name: "company" type: BYTES }
feature { name: "not_in_the_data" type: INT }
feature { name: "trip_start_hour" type: INT }
feature { name: "tips" type: FLOAT }
"""


@pytest.fixture(scope="module")
def taxi_examples(tmp_path_factory):
    """ExampleGen's output on 3,000 taxi rows, each split in two shards (two threads)."""
    folder = tmp_path_factory.mktemp("decoded_copy")
    for span in (1, 2):
        copy_taxi_span(span, folder / "data", rows=1500)
    return run_example_gen(folder / "data", folder / "examples",
                           ["--direct_num_workers=1", "--in_process_threads=2"])


def record_files(examples, split: str) -> list[str]:
    return example_batches.matching_files([artifact_utils.get_split_uri([examples], split)
                                           + "/*"])


def decoded_from_records(files: list[str], schema, batch_size: int) -> list:
    """What decoding the records gives (the copy bypassed)."""
    decoders = example_batches.RecordDecoders(
        schema.SerializeToString() if schema is not None else None)
    return [decoders.decode(list(records))
            for records in example_batches.raw_batches(files, batch_size, prefetch=2)]


@pytest.mark.parametrize("with_schema", [False, True], ids=["no schema", "schema"])
@pytest.mark.parametrize("split", ["train", "eval"])
def test_the_copy_reads_as_the_records_decode(taxi_examples, monkeypatch, split: str,
                                              with_schema: bool) -> None:
    """Batch for batch (700 rows: batches span the copy's own batches and both shards),
    without decoding a record; with a schema, its features in its order and types."""
    schema = (text_format.Parse(TAXI_SCHEMA, schema_pb2.Schema()) if with_schema else None)
    files = record_files(taxi_examples, split)
    assert len(files) == 2
    expected = decoded_from_records(files, schema, 700)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded the records although a copy was vouched for")

    monkeypatch.setattr(example_batches, "RecordDecoders", no_decoding)
    ours = list(example_batches.read(files, schema, 700, threads=2))
    assert [batch.num_rows for batch in ours] == [batch.num_rows for batch in expected]
    for mine, theirs in zip(ours, expected):
        assert_identical(mine, theirs)


def test_the_copy_lies_beside_the_splits_and_stock_readers_skip_it(taxi_examples) -> None:
    """A copy file per record file holding rows (a thread may have written none)."""
    import tensorflow as tf

    root = Path(taxi_examples.uri)
    assert sorted(p.name for p in root.iterdir()) == [
        "Decoded-eval", "Decoded-train", "Split-eval", "Split-train"]
    for split in ("train", "eval"):
        with_rows = [Path(file).name + ".arrow" for file in record_files(taxi_examples, split)
                     if any(True for _ in tf.data.TFRecordDataset(file, "GZIP").take(1))]
        assert with_rows
        assert sorted(p.name for p in (root / f"Decoded-{split}").iterdir()) == [
            *with_rows, "manifest.json"]


def test_records_the_manifest_does_not_vouch_for_are_decoded(tmp_path: Path) -> None:
    """Records rewritten after the copy (another size), without a manifest entry, or whose
    copy is gone."""
    copy_taxi_span(1, tmp_path / "data", rows=600)
    examples = run_example_gen(tmp_path / "data", tmp_path / "examples",
                               ["--direct_num_workers=1", "--in_process_threads=1"])
    files = record_files(examples, "train")
    assert decoded_copy.read(files, None, 100) is not None
    copy = Path(decoded_copy.copy_path(files[0]))
    moved = copy.rename(copy.with_suffix(".moved"))
    assert decoded_copy.read(files, None, 100) is None
    moved.rename(copy)
    rows = sum(batch.num_rows for batch in example_batches.read(files, None, 100, 1))

    import tensorflow as tf

    first = next(iter(tf.data.TFRecordDataset(files, "GZIP"))).numpy()
    with tf.io.TFRecordWriter(files[0], options="GZIP") as writer:  # one record now
        writer.write(first)
    assert decoded_copy.read(files, None, 100) is None
    assert [b.num_rows for b in example_batches.read(files, None, 100, 1)] == [1] != [rows]

    (Path(decoded_copy.copy_folder(str(Path(files[0]).parent))) / "manifest.json").unlink()
    assert decoded_copy.read(files, None, 100) is None


def test_without_a_decoded_copy_the_records_alone_are_written_and_decoded(
        tmp_path: Path) -> None:
    """`data.decoded_copy: false`: ExampleGen writes what TFX's ExampleGen writes, and the
    readers decode the same rows."""
    copy_taxi_span(1, tmp_path / "data", rows=600)
    with_copy, without = (
        run_example_gen(tmp_path / "data", tmp_path / name,
                        ["--direct_num_workers=1", "--in_process_threads=1"],
                        decoded_copy=keep)
        for name, keep in (("with", True), ("without", False)))
    assert sorted(p.name for p in Path(without.uri).iterdir()) == ["Split-eval", "Split-train"]
    files = record_files(without, "train")
    assert decoded_copy.read(files, None, 100) is None
    decoded = list(example_batches.read(files, None, 100, 1))
    copied = list(example_batches.read(record_files(with_copy, "train"), None, 100, 1))
    assert len(decoded) == len(copied) > 2
    for mine, theirs in zip(copied, decoded):
        assert_identical(mine, theirs)


def test_a_schema_the_copy_cannot_give_exactly_is_decoded(taxi_examples) -> None:
    """A feature typed otherwise than the data (the decoder's business, error or not), or a
    sparse feature: the copy is not used."""
    files = record_files(taxi_examples, "eval")
    retyped = text_format.Parse('feature { name: "fare" type: INT }', schema_pb2.Schema())
    assert decoded_copy.read(files, retyped, 100) is None
    sparse = text_format.Parse(TAXI_SCHEMA + 'sparse_feature { name: "s" }', schema_pb2.Schema())
    assert decoded_copy.read(files, sparse, 100) is None
    assert decoded_copy.read(files, text_format.Parse(TAXI_SCHEMA, schema_pb2.Schema()),
                             100) is not None


@pytest.mark.parametrize("text", [TRICKY_CSV, MARKED_CSV], ids=["tricky", "marked"])
def test_projection_is_the_decoder_s_with_a_schema(tmp_path: Path, text: str) -> None:
    """Kindless and empty columns, missing features, schema order: `project` on the copy's
    batch is what the decoder makes of the records with the schema."""
    path = tmp_path / "data.csv"
    path.write_bytes(text.encode())
    header = text.splitlines()[0].split(",")
    (batch,) = csv_columns.read_batches(str(path), header, ("NA",))
    kinds = csv_columns.merge_kinds([csv_columns.batch_kinds(batch)])
    types = {csv_columns.Kind.INT: "INT", csv_columns.Kind.FLOAT: "FLOAT"}
    schema = text_format.Parse("".join(
        f'feature {{ name: "{name}" type: {types.get(kinds[name], "BYTES")} }}'
        for name in reversed(header)) + 'feature { name: "absent" type: FLOAT }',
        schema_pb2.Schema())
    copy = csv_columns.to_decoded(batch, kinds)
    assert decoded_copy.projectable(copy.schema, schema)
    decoder = example_coder.ExamplesToRecordBatchDecoder(schema.SerializeToString())
    assert_identical(decoded_copy.project(copy, schema),
                     decoder.DecodeBatch(csv_columns.to_records(batch, kinds).to_pylist()))


def test_rebatching_keeps_rows_and_order() -> None:
    import pyarrow as pa

    pieces = [pa.RecordBatch.from_arrays([pa.array(range(start, start + size))], ["n"])
              for start, size in ((0, 5), (5, 1), (6, 0), (6, 9))]
    batches = list(decoded_copy.rebatched(pieces, 4))
    assert [b.num_rows for b in batches] == [4, 4, 4, 3]
    assert [v for b in batches for v in b.column(0).to_pylist()] == list(range(15))
