"""Evaluator executor that compares a candidate only with a model that is really there.

The baseline comes from `ServingBaseline`, the version being served. It is dropped, so that
only the absolute thresholds decide (as TFX does without a baseline), when

- nothing is served yet: the baseline artifact holds no SavedModel (a first run);
- the baseline *is* the candidate: an unchanged re-run whose model was already pushed
  would otherwise be "compared" with its own copy.
"""
from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.evaluator import executor as evaluator_executor
from tfx.types import standard_component_specs
from tfx.utils import path_utils

from components import serving_baseline, versioned_pusher

BASELINE_KEY = standard_component_specs.BASELINE_MODEL_KEY
MODEL_KEY = standard_component_specs.MODEL_KEY


def _is_candidate(baseline: types.Artifact, candidate: types.Artifact) -> bool:
    """Whether the baseline is the candidate, directly or as its pushed copy (whose push
    manifest, copied along, names the model it came from)."""
    if baseline.uri == candidate.uri:
        return True
    manifest = versioned_pusher.read_manifest(path_utils.serving_model_dir(baseline.uri))
    return (manifest or {}).get("model_uri") == candidate.uri


class Executor(evaluator_executor.Executor):

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        baseline = input_dict.get(BASELINE_KEY) or []
        candidate = input_dict.get(MODEL_KEY) or []
        if baseline and (not serving_baseline.has_model(baseline[0])
                         or (candidate and _is_candidate(baseline[0], candidate[0]))):
            input_dict = {k: v for k, v in input_dict.items() if k != BASELINE_KEY}
        super().Do(input_dict, output_dict, exec_properties)
