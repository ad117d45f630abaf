"""Which columns feed the model, and how each kind is named after Transform.

The declaration lives in `pipeline_config.yaml` (`features:` and `label:`); Transform and
Trainer receive it as `custom_config`, so this module reads plain dicts and never the file.
Kept free of TensorFlow so the declaration can be checked (and tested) cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

NUMERIC = "numeric"
CATEGORICAL = "categorical"
BUCKETIZED = "bucketized"

BINARY = "binary_classification"
MULTICLASS = "multiclass_classification"
REGRESSION = "regression"

LABEL_VOCABULARY = "label"

# What the data must hold for each declared column (`PipelineConfig.data_contract`): a
# feature's kind above, or for the label one of these. Checked before training
# (`components/data_gate.py`) and against a curated schema (`pipeline/definition/schema_file.py`).
LABEL = "label"
NUMERIC_LABEL = "numeric_label"
LABEL_KINDS = frozenset({LABEL, NUMERIC_LABEL})
NUMERIC_KINDS = frozenset({NUMERIC, BUCKETIZED, NUMERIC_LABEL})
DEFAULT_BINARY_CLASS_NAMES = ("0", "1")


def transformed_name(key: str) -> str:
    """Transform's output name for a raw column (kept distinct from the raw name)."""
    return f"{key}_xf"


@dataclass(frozen=True)
class LabelSpec:
    """The `label:` section as plain values: which column, which task, and how a binary
    label is read (a threshold or a positive value) and named."""

    column: str
    task: str
    positive_above: Optional[float] = None
    positive_value: Optional[Union[str, int, float]] = None
    class_names: Optional[tuple[str, ...]] = None

    @property
    def is_classification(self) -> bool:
        """Binary or multiclass: decides the loss, the metrics and the classify signature."""
        return self.task in (BINARY, MULTICLASS)

    @property
    def binary_class_names(self) -> tuple[str, ...]:
        """[negative, positive] as the classify API names them; "0" and "1" unless set."""
        return tuple(self.class_names or DEFAULT_BINARY_CLASS_NAMES)


@dataclass(frozen=True)
class FeatureSpec:
    """Features by kind; `bucketized` maps a column to its number of quantile buckets."""

    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    bucketized: Mapping[str, int] = field(default_factory=dict)
    label: LabelSpec = field(default_factory=lambda: LabelSpec("label", REGRESSION))

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any]) -> "FeatureSpec":
        """From the Transform / Trainer `custom_config` (`PipelineConfig.model_custom_config`),
        the only way `models/` learns the declaration."""
        features = custom_config["features"]
        label = dict(custom_config["label"])
        if label.get("class_names") is not None:
            label["class_names"] = tuple(label["class_names"])
        return cls(numeric=tuple(features.get(NUMERIC, ())),
                   categorical=tuple(features.get(CATEGORICAL, ())),
                   bucketized=dict(features.get(BUCKETIZED, {})),
                   label=LabelSpec(**label))

    @property
    def names(self) -> tuple[str, ...]:
        """Every model input column, in a stable order (numeric, bucketized, categorical)."""
        return (*self.numeric, *self.bucketized, *self.categorical)

    def kind_of(self, name: str) -> str:
        """Whether a column is numeric, bucketized or categorical, which decides its encoding.

        Raises:
            KeyError: `name` is not a declared feature (the label is not one).
        """
        if name in self.numeric:
            return NUMERIC
        if name in self.bucketized:
            return BUCKETIZED
        if name in self.categorical:
            return CATEGORICAL
        raise KeyError(f"'{name}' is not a declared feature")

    @property
    def label_key(self) -> str:
        """The label's name after Transform, where training and evaluation read it."""
        return transformed_name(self.label.column)
