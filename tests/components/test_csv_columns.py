"""The columnar CSV reader produces the Examples TFX's own CsvExampleGen code produces."""
from __future__ import annotations

from pathlib import Path

import pytest
import tensorflow as tf
# TFX's stock CSV parsing, the reference the columnar reader must agree with.
from tfx.components.example_gen.csv_example_gen.executor import (
    _ParsedCsvToTfExample, _ReadCsvRecordsFromTextFile)
from tfx.utils import io_utils
from tfx_bsl.coders import csv_decoder

from components import csv_columns
from components.csv_columns import Kind
from tests.components.record_batches import assert_identical
from tests.conftest import copy_taxi_span

TRICKY_CSV = (
    'id,amount,name,note,empty,big,mixed,spaced\n'
    '1,2.5,"Smith, J",plain,,1,1, 7\n'
    '2,,"two\nlines",x,,99999999999999999999,2.5,8\n'
    '3,1e3,,"say ""hi""",,3,,9\n'
    '\n'
    '4,-0,é,y,,-4,inf,10\n'
)


def stock_examples(path: Path) -> list[tf.train.Example]:
    """What CsvExampleGen's DoFns make of a file (one file, so one type inference)."""
    header = io_utils.load_csv_column_names(str(path))
    parse = csv_decoder.ParseCSVLine(delimiter=",")
    parse.setup()
    rows = [cells for line in _ReadCsvRecordsFromTextFile().process(str(path))
            for cells, _ in parse.process(line)]
    inferrer = csv_decoder.ColumnTypeInferrer(header, skip_blank_lines=True)
    accumulator = inferrer.create_accumulator()
    for cells in rows:
        accumulator = inferrer.add_input(accumulator, cells)
    column_infos = inferrer.extract_output(accumulator)
    to_example = _ParsedCsvToTfExample()
    return [example for cells in rows for example in to_example.process(cells, column_infos)]


def columnar_examples(path: Path, markers: tuple[str, ...] = ()) -> list[tf.train.Example]:
    header = io_utils.load_csv_column_names(str(path))
    batches = list(csv_columns.read_batches(str(path), header, markers))
    kinds = csv_columns.merge_kinds(csv_columns.batch_kinds(b) for b in batches)
    return [tf.train.Example.FromString(record)
            for batch in batches for record in csv_columns.to_examples(batch, kinds)]


@pytest.mark.parametrize("cell,kind", [
    (b"", Kind.UNKNOWN), (b"12", Kind.INT), (b"-0", Kind.INT), (b" 7", Kind.INT),
    (b"2.5", Kind.FLOAT), (b"1e3", Kind.FLOAT), (b"inf", Kind.FLOAT),
    (b"99999999999999999999", Kind.STRING), (b"Smith, J", Kind.STRING)])
def test_cell_kind_follows_tfx_bsl_inference(cell: bytes, kind: Kind) -> None:
    assert csv_columns.cell_kind(cell) == kind


@pytest.mark.parametrize("cells", [
    [b"1", b"-2", b"007", b"123456789012345678"], [b"1", b"2.5"], [b"-.5", b"5.", b"1e5"],
    [b"1E+05", b"3"], [b"+7", b"1"], [b" 7"], [b"1_000"], [b"nan", b"1"], [b"inf"],
    [b"99999999999999999999"], [b"9223372036854775807"], [b"9223372036854775808"],
    [b"1234567890123456789012.5"], [b"0x10"], [b"-"], [b".", b"1"], [b"1e"], [b"e5"],
    [b"1.5", b"Cash"], [b"\xff\xfe", b"1"], ["٣".encode(), b"1"], [b"", b"4"], [b""], [],
    [b"1\n"], [b"--1"], [b"1.2.3"]])
def test_column_kind_is_the_widest_cell_kind(cells: list[bytes]) -> None:
    """Arrow's patterns decide plain numbers; every other column gets `cell_kind` per cell:
    the same kind either way."""
    import pyarrow as pa

    expected = max((csv_columns.cell_kind(cell) for cell in cells), default=Kind.UNKNOWN)
    assert csv_columns.column_kind(pa.array(cells, pa.binary())) == expected


def test_kinds_widen_across_batches() -> None:
    merged = csv_columns.merge_kinds([
        {"a": Kind.INT, "b": Kind.UNKNOWN, "c": Kind.FLOAT},
        {"a": Kind.FLOAT, "b": Kind.UNKNOWN, "c": Kind.STRING}])
    assert merged == {"a": Kind.FLOAT, "b": Kind.UNKNOWN, "c": Kind.STRING}


def test_tricky_csv_gives_the_stock_examples(tmp_path: Path) -> None:
    path = tmp_path / "tricky.csv"
    path.write_bytes(TRICKY_CSV.encode("utf-8"))
    ours = columnar_examples(path)
    assert len(ours) == 4  # the blank line is skipped, the quoted newline kept in a value
    assert ours == stock_examples(path)
    second = ours[1].features.feature
    assert second["name"].bytes_list.value == [b"two\nlines"]
    assert second["big"].bytes_list.value == [b"99999999999999999999"]  # beyond int64
    assert second["amount"].HasField("float_list") and not second["amount"].float_list.value
    assert second["empty"].WhichOneof("kind") is None  # a column with no value at all


def test_bundled_taxi_sample_gives_the_stock_examples(tmp_path: Path) -> None:
    path = copy_taxi_span(1, tmp_path, rows=3000) / "trips.csv"
    ours = columnar_examples(path)
    assert len(ours) == 3000
    assert ours == stock_examples(path)


def test_a_short_row_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "short.csv"
    path.write_text("a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(csv_columns.CsvFormatError, match=r"short\.csv.*Expected 3 columns"):
        columnar_examples(path)


MARKED_CSV = (
    "species,bill_length_mm,island,year\n"
    "Adelie,39.1,Torgersen,2007\n"
    "Adelie,NA,Torgersen,N/A\n"
    "Gentoo,,NA,2008\n"
    "Chinstrap,46.5,Dream,2009\n"
)


def test_missing_value_markers_are_read_as_empty_cells(tmp_path: Path) -> None:
    """`NA` in a number column is a missing number, not text that makes the column STRING;
    in a text column it is no category. Empty cells stay missing as before."""
    path = tmp_path / "penguins.csv"
    path.write_text(MARKED_CSV)
    rows = columnar_examples(path, ("NA", "N/A"))
    length = [list(r.features.feature["bill_length_mm"].float_list.value) for r in rows]
    assert length == [[pytest.approx(39.1)], [], [], [pytest.approx(46.5)]]
    assert [list(r.features.feature["year"].int64_list.value) for r in rows] == [
        [2007], [], [2008], [2009]]
    assert [list(r.features.feature["island"].bytes_list.value) for r in rows] == [
        [b"Torgersen"], [b"Torgersen"], [], [b"Dream"]]
    # the label column (first) keeps its values
    assert [r.features.feature["species"].bytes_list.value[0] for r in rows] == [
        b"Adelie", b"Adelie", b"Gentoo", b"Chinstrap"]


def test_without_markers_the_text_is_data_as_csv_example_gen_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "penguins.csv"
    path.write_text(MARKED_CSV)
    assert columnar_examples(path, ()) == stock_examples(path)
    rows = columnar_examples(path, ())
    assert rows[1].features.feature["bill_length_mm"].bytes_list.value == [b"NA"]


def test_only_whole_cells_are_markers(tmp_path: Path) -> None:
    path = tmp_path / "names.csv"
    path.write_text("name\nNAOMI\nNA\n")
    rows = columnar_examples(path, ("NA",))
    assert [list(r.features.feature["name"].bytes_list.value) for r in rows] == [
        [b"NAOMI"], []]


COLUMNS = {  # cells of each kind as a CSV holds them, empty ones and varint edges included
    Kind.INT: [b"0", b"1", b"127", b"128", b"-1", b"", b"007", b"16384", b"-300",
               b"9223372036854775807", b"-9223372036854775808", b"2097151"],
    Kind.FLOAT: [b"0", b"1.5", b"", b"-0", b"1e5", b".5", b"5.", b"nan", b"-nan", b"inf",
                 b"-inf", b"Infinity", b"3.4e39", b"1e-50", b"41.8810", b"-87.632", b"7"],
    Kind.STRING: [b"", b"Cash", b"x" * 127, b"y" * 128, b"z" * 20000, "Zoë".encode(),
                  b"\xff\xfe", b"a,b"],
    Kind.UNKNOWN: [b"", b""],
}


@pytest.mark.parametrize("kind", list(COLUMNS), ids=lambda kind: kind.name)
@pytest.mark.parametrize("name", ["fare", "x" * 130])
def test_columns_are_serialized_as_protobuf_serializes_them(kind: Kind, name: str) -> None:
    """The column-at-once serialization gives protobuf's bytes for every cell (lengths over
    127 take two-byte varints; a negative int64 ten)."""
    import pyarrow as pa

    column = pa.array(COLUMNS[kind], pa.binary())
    ours = csv_columns._column_entries(name, column, kind).to_pylist()
    by_protobuf = csv_columns._entries_by_protobuf(name, column, kind).to_pylist()
    assert ours == by_protobuf


@pytest.mark.parametrize("kind,cells", [(Kind.INT, [b"+7", b"1"]), (Kind.INT, [b" 7"]),
                                        (Kind.FLOAT, [b"1_000.5"]), (Kind.FLOAT, [b"+1.5"])])
def test_numbers_only_python_reads_are_serialized_by_protobuf(kind: Kind, cells) -> None:
    """Python's `int`/`float` read cells that Arrow's parser refuses; such a column is
    serialized by protobuf, as the kind was decided, never refused."""
    import pyarrow as pa

    column = pa.array(cells, pa.binary())
    assert all(csv_columns.cell_kind(cell) <= kind for cell in cells)
    assert (csv_columns._column_entries("n", column, kind).to_pylist()
            == csv_columns._entries_by_protobuf("n", column, kind).to_pylist())


def decoded_by_tfx_bsl(records: list[bytes]):
    from tfx_bsl.coders import example_coder

    return example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(records)


@pytest.mark.parametrize("kind", list(COLUMNS), ids=lambda kind: kind.name)
def test_columns_decode_as_tfx_bsl_decodes_their_records(kind: Kind) -> None:
    """`to_decoded` is what tfx_bsl's decoder makes of `to_records`' bytes: the types,
    the column order and every value (NaN, infinities, float32 rounding, empty cells)."""
    import pyarrow as pa

    cells = COLUMNS[kind] + COLUMNS[kind][::-1]  # repeated cells: converted once, taken twice
    batch = pa.RecordBatch.from_arrays([pa.array(cells, pa.binary()),
                                        pa.array([b"a"] * len(cells), pa.binary())],
                                       ["value", "Key"])
    kinds = {"value": kind, "Key": Kind.STRING}
    assert_identical(csv_columns.to_decoded(batch, kinds),
                     decoded_by_tfx_bsl(csv_columns.to_records(batch, kinds).to_pylist()))


@pytest.mark.parametrize("kind,cells", [(Kind.INT, [b"+7", b"1", b""]),
                                        (Kind.FLOAT, [b"1_000.5", b"", b"2"])])
def test_numbers_only_python_reads_decode_as_their_records(kind: Kind, cells) -> None:
    import pyarrow as pa

    batch = pa.RecordBatch.from_arrays([pa.array(cells, pa.binary())], ["n"])
    assert_identical(csv_columns.to_decoded(batch, {"n": kind}),
                     decoded_by_tfx_bsl(csv_columns.to_records(batch, {"n": kind})
                                        .to_pylist()))


@pytest.mark.parametrize("text", ["tricky", "marked", "taxi"])
def test_files_decode_as_tfx_bsl_decodes_their_records(tmp_path: Path, text: str) -> None:
    if text == "taxi":
        path = copy_taxi_span(1, tmp_path, rows=3000) / "trips.csv"
    else:
        path = tmp_path / f"{text}.csv"
        path.write_bytes((TRICKY_CSV if text == "tricky" else MARKED_CSV).encode())
    header = io_utils.load_csv_column_names(str(path))
    batches = list(csv_columns.read_batches(str(path), header, ("NA",)))
    kinds = csv_columns.merge_kinds(csv_columns.batch_kinds(b) for b in batches)
    for batch in batches:
        assert_identical(csv_columns.to_decoded(batch, kinds),
                         decoded_by_tfx_bsl(csv_columns.to_records(batch, kinds).to_pylist()))
