"""The in-process Evaluator slices a batch as TFMA's slicer slices each example."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow_model_analysis.slicer import slicer_lib

from components import batch_slicing


def example(**features) -> bytes:
    result = tf.train.Example()
    for name, values in features.items():
        feature = result.features.feature[name]
        if not values:  # present, with no values (an empty bytes list)
            feature.bytes_list.SetInParent()
        elif isinstance(values[0], bytes):
            feature.bytes_list.value.extend(values)
        elif isinstance(values[0], int):
            feature.int64_list.value.extend(values)
        else:
            feature.float_list.value.extend(values)
    return result.SerializeToString()


def tfma_slices(examples: list[dict], column: str) -> dict:
    """Per slice key, the rows TFMA's slicer puts in it (one example at a time)."""
    spec = slicer_lib.SingleSliceSpec(columns=[column])
    result: dict = {}
    for row, features in enumerate(examples):
        arrays = {name: np.array(values) for name, values in features.items()}
        for key in set(slicer_lib.get_slices_for_features_dicts([], arrays, [spec])):
            result.setdefault(key, []).append(row)
    return result


def our_slices(decoder: batch_slicing.SliceFeatureDecoder, examples: list[dict],
               column: str) -> dict:
    serialized = np.array([example(**features) for features in examples], dtype=object)
    decoded = decoder(serialized)
    return {key: rows.tolist() for key, rows in
            batch_slicing.column_slices(column, decoded.get(column))}


BATCHES = [
    # learns the kinds: repeated values, a missing feature, an empty list
    [{"kind": [b"a", b"b", b"a"], "hour": [3]}, {"hour": [4, 4]}, {"kind": [b"b"]},
     {"kind": [], "hour": [3, 5]}],
    # parsed with the learned kinds
    [{"kind": [b"c"], "hour": [5]}, {"kind": [b"a"], "hour": [3]}, {}],
    # "hour" as floats now: decoded whole again, as TFXIO would
    [{"kind": [b"a"], "hour": [1.5]}, {"kind": [b"caf\xc3\xa9"], "hour": [2.0, 1.5]}],
]


def test_slices_match_tfmas_slicer_batch_after_batch() -> None:
    decoder = batch_slicing.SliceFeatureDecoder(["kind", "hour"])
    for batch in BATCHES:
        for column in ("kind", "hour"):
            assert our_slices(decoder, batch, column) == tfma_slices(batch, column), (
                column, batch)


def test_no_slicing_features_decodes_nothing() -> None:
    assert batch_slicing.SliceFeatureDecoder([])(np.array([example(a=[1])])) == {}
