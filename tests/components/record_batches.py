"""Identity of Arrow record batches down to float bits: `RecordBatch.equals` holds a NaN
unequal to itself, and a comparison that forgives NaN would forgive its sign too."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def assert_identical(ours: pa.RecordBatch, theirs: pa.RecordBatch) -> None:
    """Same schema (names, order, types), same nulls, list lengths and values bit for bit."""
    assert ours.schema == theirs.schema
    assert ours.num_rows == theirs.num_rows
    for name, mine, other in zip(ours.schema.names, ours.columns, theirs.columns):
        assert mine.is_null().equals(other.is_null()), name
        if pa.types.is_null(mine.type):
            continue
        assert pc.list_value_length(mine).equals(pc.list_value_length(other)), name
        values, expected = pc.list_flatten(mine), pc.list_flatten(other)
        if pa.types.is_floating(values.type):
            assert np.array_equal(values.to_numpy().view(np.uint32),
                                  expected.to_numpy().view(np.uint32)), name
        else:
            assert values.equals(expected), name
