"""CSV to serialized tf.Examples a column at a time, with CsvExampleGen's typing rules.

TFX's CsvExampleGen parses, types and converts every cell in Python, which was most of
ExampleGen's time (bench/pipeline; see docs/performance.md). Here Arrow's CSV reader
splits the files, each column is typed and converted once per distinct value (columns
repeat values: 15,000 taxi rows hold a few hundred distinct fares), and the rows are put
together by Arrow. The distinct values' Examples are written by Arrow and numpy for a
column at once (protobuf's wire format: key, varint lengths, packed numbers), not built as
protobuf messages one by one, which was most of ExampleGen's time at 1.5 M rows
(bench/scale); a test holds the bytes equal to protobuf's.

The result is the Examples CsvExampleGen writes (checked against it on the bundled data):
- a column is INT when every non-empty cell is an integer within int64, FLOAT when every
  non-empty cell is a number (integers included), otherwise STRING (an integer outside
  int64 makes it STRING too), using Python's `int`/`float` like tfx_bsl's inference;
- an empty cell is an empty value list of the column's type; a column with no value at all
  gives a feature without a kind;
- a cell whose whole text is one of the configured missing-value markers (`NA`, `N/A`...:
  `data.missing_values`) is read as an empty cell, so it neither makes a number column
  text nor becomes a category;
- STRING values are the raw bytes (no UTF-8 requirement).

The same typed columns also give the rows as tfx_bsl's decoder decodes those records
(`to_decoded`): ExampleGen writes them beside the records (`decoded_copy`), so that
StatisticsGen and Transform need not decode.

Each record is the Example's *deterministic* serialization (`to_records`), the bytes TFX's
ExampleGen hashes to choose a row's split: with them, a row's split is decided on the
record itself, with no parse and no second serialization per row (at scale those two were
most of ExampleGen's time: bench/scale, docs/performance.md).
"""
from __future__ import annotations

import enum
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pa_csv
from apache_beam.io.filesystems import FileSystems
import tensorflow as tf

_INT64 = np.iinfo(np.int64)
# Arrow reads a file in blocks of this size, one batch each (about 32,000 taxi rows).
# Larger blocks save a little CPU but cost more peak memory than the memory target allows
# (bench/scale; figures in docs/performance.md).
_BLOCK_BYTES = 4 << 20


class Kind(enum.IntEnum):
    """A column's type; a column takes the widest kind among its cells."""

    UNKNOWN = 0  # empty cells only
    INT = 1
    FLOAT = 2
    STRING = 3


def cell_kind(cell: bytes) -> Kind:
    """The narrowest kind that holds one cell (tfx_bsl's rule, Python's number syntax)."""
    if not cell:
        return Kind.UNKNOWN
    try:
        return Kind.INT if _INT64.min <= int(cell) <= _INT64.max else Kind.STRING
    except ValueError:
        pass
    try:
        float(cell)
    except ValueError:
        return Kind.STRING
    return Kind.FLOAT


class CsvFormatError(ValueError):
    """A CSV file that cannot be read as a table with the expected header."""


def read_batches(path: str, header: Sequence[str],
                 missing_values: Sequence[str] = ()) -> Iterator[pa.RecordBatch]:
    """The rows of one CSV file after its header line, every column as raw bytes, cells
    holding a missing-value marker emptied.

    Raises:
        CsvFormatError: Arrow cannot read the file as CSV with this header (a row with
            another number of cells, say); the message names the file.
        OSError: the file cannot be opened or read.
    """
    markers = pa.array([value.encode() for value in missing_values if value], pa.binary())
    options = dict(
        read_options=pa_csv.ReadOptions(column_names=list(header), skip_rows=1,
                                        block_size=_BLOCK_BYTES),
        # Quoted values may span lines, as CsvExampleGen allows; empty lines are skipped.
        parse_options=pa_csv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.binary() for name in header}, strings_can_be_null=False))
    try:
        # Beam's file systems, as CsvExampleGen: any Beam URI, compression by extension.
        with FileSystems.open(path) as stream:
            reader = pa_csv.open_csv(stream, **options)
            for batch in reader:
                yield _without_markers(batch, markers) if len(markers) else batch
    except pa.ArrowInvalid as error:
        raise CsvFormatError(f"{path}: {error}") from None


def _without_markers(batch: pa.RecordBatch, markers: pa.Array) -> pa.RecordBatch:
    empty = pa.scalar(b"", pa.binary())
    columns = [pc.if_else(pc.is_in(column, value_set=markers), empty, column)
               for column in batch.columns]
    return pa.RecordBatch.from_arrays(columns, batch.schema.names)


# Cells that `cell_kind` certainly calls INT (18 digits at most: within int64), and cells
# it certainly calls INT or FLOAT (those, decimals, exponents; not a longer integer, which
# beyond int64 is STRING). ASCII only, no sign but '-', no spaces or underscores.
_INT_CELLS = r"^-?[0-9]{1,18}$"
_NUMBER_CELLS = (r"^-?(?:[0-9]{1,18}|(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
                 r"|[0-9]+[eE][-+]?[0-9]+)$")


def column_kind(cells: pa.Array) -> Kind:
    """The kind of a column holding `cells` (each distinct cell once): decided by Arrow's
    regular expressions where every cell is a plain number, else by `cell_kind` on each
    cell (text, and what Python reads that the patterns leave out: `+7`, ` 7`, `1_000`,
    `nan`, integers beyond int64). A test holds the two ways equal."""
    filled = cells.filter(pc.not_equal(pc.binary_length(cells), 0))
    if not len(filled):
        return Kind.UNKNOWN
    if pc.all(pc.match_substring_regex(filled, _INT_CELLS)).as_py():
        return Kind.INT
    if pc.all(pc.match_substring_regex(filled, _NUMBER_CELLS)).as_py():
        return Kind.FLOAT  # not all INT, so at least one FLOAT
    return max(cell_kind(cell) for cell in filled.to_pylist())


def batch_kinds(batch: pa.RecordBatch) -> dict[str, Kind]:
    """Each column's kind over the distinct values of one batch."""
    return {name: column_kind(pc.unique(column))
            for name, column in zip(batch.schema.names, batch.columns)}


def merge_kinds(kinds: Iterable[Mapping[str, Kind]]) -> dict[str, Kind]:
    merged: dict[str, Kind] = {}
    for partial in kinds:
        for name, kind in partial.items():
            merged[name] = max(merged.get(name, Kind.UNKNOWN), kind)
    return merged


# Tags of length-delimited fields (wire type 2) by number. Field 1 is an Example's
# `features`, a Features' map entry, an entry's key, a BytesList's value and a packed
# list's values; field 2 is an entry's value (the Feature).
_FIELD_1, _FIELD_2 = b"\x0a", b"\x12"


def _feature(kind: Kind, cell: bytes) -> tf.train.Feature:
    """One cell as a Feature of its column's kind (an empty cell: an empty list)."""
    if kind == Kind.UNKNOWN:
        return tf.train.Feature()
    if kind == Kind.STRING:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[cell] if cell else []))
    if kind == Kind.INT:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(cell)] if cell else []))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(cell)] if cell else []))


def _entries_by_protobuf(name: str, cells: pa.Array, kind: Kind) -> pa.Array:
    """Each cell's `feature` map entry, serialized by protobuf: a `Features` message holding
    one entry serializes to exactly that entry, so the entries of one row, concatenated in
    key order, are its `Features` serialized deterministically."""
    return pa.array([tf.train.Features(feature={name: _feature(kind, cell)}).SerializeToString(
        deterministic=True) for cell in cells.to_pylist()], pa.binary())


def _varints(values: np.ndarray) -> pa.Array:
    """Each integer in protobuf's base-128 varint encoding (a negative int64 as its
    two's-complement uint64, ten bytes), as a binary array."""
    unsigned = values.astype(np.int64).view(np.uint64)
    widths = np.ones(len(unsigned), np.int64)
    rest = unsigned >> np.uint64(7)
    while rest.any():
        widths += rest > 0
        rest >>= np.uint64(7)
    width = int(widths.max(initial=1))
    position = np.arange(width)
    groups = ((unsigned[:, None] >> (position.astype(np.uint64) * np.uint64(7)))
              & np.uint64(0x7F)).astype(np.uint8)
    groups |= np.where(position[None, :] < widths[:, None] - 1, 0x80, 0).astype(np.uint8)
    data = groups[position[None, :] < widths[:, None]]  # each value's bytes, in order
    offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int32)
    return pa.Array.from_buffers(pa.binary(), len(unsigned),
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())])


def _framed(tag: bytes, payload: pa.Array) -> pa.Array:
    """`tag`, the payload's length as a varint, the payload: one length-delimited field."""
    lengths = pc.binary_length(payload).to_numpy(zero_copy_only=False)
    return pc.binary_join_element_wise(pa.scalar(tag, pa.binary()), _varints(lengths),
                                       payload, b"")


def _numbers(column: pa.Array, kind: Kind) -> np.ndarray:
    """The cells of an INT or FLOAT column (no empty cell) as the values an Example holds:
    int64, or float32 (beyond float32's range: infinity, as protobuf stores it).

    Raises:
        pa.ArrowInvalid: Arrow cannot parse a number cell that Python's `int`/`float`
            did (`+7`, ` 7`, `1_000`); the caller converts that column by Python.
    """
    numbers = pc.cast(pc.cast(column, pa.string()), pa.int64() if kind == Kind.INT
                      else pa.float64()).to_numpy(zero_copy_only=False)
    if kind == Kind.INT:
        return numbers.astype(np.int64)
    with np.errstate(over="ignore"):
        return numbers.astype("<f4")


def _value_lists(column: pa.Array, kind: Kind) -> pa.Array:
    """Each cell as the serialized BytesList, Int64List (packed) or FloatList (packed)
    holding it: field 1 with the cell's bytes, varint or little-endian float32.

    Raises:
        pa.ArrowInvalid: as `_numbers`; the caller serializes that column by protobuf.
    """
    if kind == Kind.STRING:
        return _framed(_FIELD_1, column)
    numbers = _numbers(column, kind)
    if kind == Kind.INT:
        payload = _varints(numbers)
    else:
        offsets = np.arange(0, 4 * len(numbers) + 1, 4, dtype=np.int32)
        payload = pa.Array.from_buffers(pa.binary(), len(numbers), [
            None, pa.py_buffer(offsets), pa.py_buffer(numbers.tobytes())])
    return _framed(_FIELD_1, payload)


# Each kind's field in the `Feature` message: bytes_list = 1, float_list = 2, int64_list = 3.
_FEATURE_TAGS = {Kind.STRING: _FIELD_1, Kind.FLOAT: _FIELD_2, Kind.INT: b"\x1a"}


def _entries(name: str, cells: pa.Array, kind: Kind) -> pa.Array:
    """Each cell's `feature` map entry, serialized as protobuf would
    (`_entries_by_protobuf`, which a test holds it equal to): the entry's key and
    the Feature's bytes written by Arrow and numpy for all the cells at once.

    An empty cell is an empty list of the column's kind; a column of empty cells only
    (UNKNOWN) is a Feature with no kind.

    Raises:
        pa.ArrowInvalid: a number cell that Python reads and Arrow does not (`_value_lists`).
    """
    empty = pc.equal(pc.binary_length(cells), 0)
    if kind == Kind.UNKNOWN:
        features = pa.array([b""] * len(cells), pa.binary())
    else:
        filled = pc.if_else(empty, pa.scalar(b"0" if kind != Kind.STRING else b"",
                                             pa.binary()), cells)
        lists = pc.if_else(empty, pa.scalar(b"", pa.binary()), _value_lists(filled, kind))
        features = _framed(_FEATURE_TAGS[kind], lists)
    key = _framed(_FIELD_1, pa.array([name.encode()], pa.binary()))[0].as_py()
    return _framed(_FIELD_1, _framed(key + _FIELD_2, features))


def _column_entries(name: str, column: pa.Array, kind: Kind) -> pa.Array:
    """Each row's `feature` map entry for this column (`_distinct_entries`)."""
    return _distinct_entries(name, pc.dictionary_encode(column), kind)


def _distinct_entries(name: str, encoded: pa.DictionaryArray, kind: Kind) -> pa.Array:
    """Each row's `feature` map entry for a dictionary-encoded column: each distinct cell
    serialized once (`_entries`, or by protobuf where Arrow cannot parse a number Python
    did), then repeated for its rows by Arrow."""
    try:
        entries = _entries(name, encoded.dictionary, kind)
    except pa.ArrowInvalid:
        entries = _entries_by_protobuf(name, encoded.dictionary, kind)
    return pc.take(entries, encoded.indices)


def _encoded_columns(batch: pa.RecordBatch) -> list[tuple[str, pa.DictionaryArray]]:
    """The batch's columns in the records' key order (a map's keys sorted as bytes, as
    deterministic serialization writes them), each dictionary-encoded: the records and
    their decoded rows are both built from each column's distinct cells."""
    names = sorted(batch.schema.names, key=lambda name: name.encode())
    return [(name, pc.dictionary_encode(batch.column(name))) for name in names]


def _records(columns: list[tuple[str, pa.DictionaryArray]],
             kinds: Mapping[str, Kind]) -> pa.Array:
    features = pc.binary_join_element_wise(
        *(_distinct_entries(name, encoded, kinds[name]) for name, encoded in columns), b"")
    return _framed(_FIELD_1, features)


def to_records(batch: pa.RecordBatch, kinds: Mapping[str, Kind]) -> pa.Array:
    """The batch's rows as tf.Examples, typed by `kinds` (from every batch), each
    serialized deterministically: map entries in key order, as
    `Example.SerializeToString(deterministic=True)` writes them."""
    return _records(_encoded_columns(batch), kinds)


def to_examples(batch: pa.RecordBatch, kinds: Mapping[str, Kind]) -> list[bytes]:
    """`to_records` as a list of bytes, one serialized tf.Example per row."""
    return to_records(batch, kinds).to_pylist()


# The Arrow type tfx_bsl's decoder gives each kind's feature (a kindless one: `pa.null()`).
DECODED_TYPES = {Kind.INT: pa.large_list(pa.int64()), Kind.FLOAT: pa.large_list(pa.float32()),
                 Kind.STRING: pa.large_list(pa.large_binary())}


def _decoded_values(cells: pa.Array, kind: Kind) -> pa.Array:
    """Each cell as the value list its Example's feature decodes to: one value, or none for
    an empty cell; a kindless column is all null. The numbers are `_numbers`' (Python's
    where Arrow cannot parse a cell, as `_entries_by_protobuf` converts it), so the lists
    hold exactly what the records hold."""
    if kind == Kind.UNKNOWN:
        return pa.nulls(len(cells))
    filled = pc.not_equal(pc.binary_length(cells), 0).to_numpy(zero_copy_only=False)
    present = cells.filter(pa.array(filled))
    if kind == Kind.STRING:
        values = pc.cast(present, pa.large_binary())
    else:
        try:
            numbers = _numbers(present, kind)
        except pa.ArrowInvalid:
            convert = int if kind == Kind.INT else float
            with np.errstate(over="ignore"):
                numbers = np.array([convert(cell) for cell in present.to_pylist()],
                                   np.int64 if kind == Kind.INT else "<f4")
        values = pa.array(numbers, DECODED_TYPES[kind].value_type)
    offsets = np.concatenate([[0], np.cumsum(filled, dtype=np.int64)])
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), values)


def _decoded(columns: list[tuple[str, pa.DictionaryArray]],
             kinds: Mapping[str, Kind]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pc.take(_decoded_values(encoded.dictionary, kinds[name]), encoded.indices)
         for name, encoded in columns], [name for name, _ in columns])


def to_decoded(batch: pa.RecordBatch, kinds: Mapping[str, Kind]) -> pa.RecordBatch:
    """The batch's rows as tfx_bsl's `ExamplesToRecordBatchDecoder` (without a schema)
    decodes their records (`to_records`): a column per feature in the records' key order,
    each typed by its kind (`DECODED_TYPES`). Each distinct cell is converted once, as for
    the records; a test holds the batches equal to the decoder's."""
    return _decoded(_encoded_columns(batch), kinds)


def to_records_and_decoded(batch: pa.RecordBatch, kinds: Mapping[str, Kind]
                           ) -> tuple[pa.Array, pa.RecordBatch]:
    """`to_records` and `to_decoded` of one batch, its columns encoded once for both."""
    columns = _encoded_columns(batch)
    return _records(columns, kinds), _decoded(columns, kinds)
