"""A stand-in for a loaded model version, for data-plane and batching tests without a
pipeline run or a SavedModel: the same interface as `serving.servable.Servable`."""
from __future__ import annotations

import threading
from typing import Callable, Mapping, Optional

import numpy as np
import tensorflow as tf

from serving import servable as servable_lib
from serving.servable import Signature, TensorSpec

PREDICT_METHOD = "tensorflow/serving/predict"


def signature(name: str, method: str = PREDICT_METHOD, inputs: Optional[dict] = None,
              outputs: Optional[dict] = None) -> Signature:
    inputs = inputs or {"x": tf.float32}
    outputs = outputs or {"y": tf.float32}
    return Signature(name, method,
                     {key: TensorSpec(key, dtype, (None,)) for key, dtype in inputs.items()},
                     {key: TensorSpec(key, dtype, (None,)) for key, dtype in outputs.items()})


class StandInServable:
    """`y = 2x + version` for `serving_default`; records every batch it is called with.

    `gate`, when set, makes calls wait for it (to hold a batch in flight); `outputs`
    replaces the computation.
    """

    def __init__(self, name: str = "m", version: int = 1, path: str = "",
                 signatures: Optional[dict[str, Signature]] = None,
                 outputs: Optional[Callable[[Mapping[str, np.ndarray]], dict]] = None) -> None:
        self.name, self.version, self.path = name, version, path
        self.signatures = signatures or {
            servable_lib.DEFAULT_SIGNATURE: signature(servable_lib.DEFAULT_SIGNATURE)}
        self.signature_defs: dict = {}
        self.calls: list[dict[str, np.ndarray]] = []
        self.gate: Optional[threading.Event] = None
        self._outputs = outputs

    def signature(self, name: str) -> Signature:
        return self.signatures[name or servable_lib.DEFAULT_SIGNATURE]

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict:
        if self.gate is not None:
            self.gate.wait(10)
        self.calls.append(dict(inputs))
        if self._outputs is not None:
            return self._outputs(inputs)
        return {"y": np.asarray(inputs["x"], np.float32) * 2 + self.version}
