"""Evaluator executor that never compares a model with itself.

TFX's LatestBlessedModelStrategy returns the newest blessed model, which on a re-run with
unchanged data is the cached candidate itself. TFMA would then "compare" a model to its
own copy. Here the baseline is dropped in that case, so only the absolute thresholds
decide, exactly as on a first run.
"""
from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_component_specs

BASELINE_KEY = standard_component_specs.BASELINE_MODEL_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY


class Executor(evaluator_executor.Executor):

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        baseline = input_dict.get(BASELINE_KEY) or []
        candidate = input_dict.get(MODEL_KEY) or []
        if baseline and candidate and baseline[0].uri == candidate[0].uri:
            input_dict = {k: v for k, v in input_dict.items() if k != BASELINE_KEY}
        super().Do(input_dict, output_dict, exec_properties)
