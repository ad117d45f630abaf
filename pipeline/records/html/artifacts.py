"""What the report reads from a run's artifacts: TFMA's metrics by slice, TFDV's feature
statistics and the ExampleValidator's anomalies.

Statistics and anomalies are tensorflow_metadata protos, read without TFDV or TensorFlow
(for a local path). Slice metrics take TFMA, already imported in an `mlops run` process;
`mlops report` on an older run imports it (seconds). Every reader returns an empty result
for a missing or unreadable artifact: a report must not fail on one.
"""
from __future__ import annotations

import dataclasses
import math
import os
from typing import Optional

SPLIT_PREFIX = "Split-"


@dataclasses.dataclass
class SliceMetrics:
    """TFMA's metrics for one slice of the eval data, as the report's table shows them."""

    label: str  # "all rows" or "payment_type = Cash"
    values: dict[str, float]  # TFMA's metric names (binary_accuracy, auc, example_count)

    @property
    def examples(self) -> Optional[float]:
        """How many eval rows the slice has (None if TFMA did not count them): a small
        slice's metrics mean little."""
        return self.values.get("example_count")


@dataclasses.dataclass
class FeatureSummary:
    """One column's statistics from TFDV, reduced to what the report draws."""

    name: str
    kind: str  # numeric | text
    present: int
    missing: int
    numbers: dict[str, float] = dataclasses.field(default_factory=dict)  # mean, std, min, ...
    histogram: list[tuple[float, float, float]] = dataclasses.field(default_factory=list)
    top_values: list[tuple[str, float]] = dataclasses.field(default_factory=list)
    unique: Optional[int] = None

    @property
    def missing_fraction(self) -> float:
        """The share of rows without a value (0.0 for an empty column)."""
        total = self.present + self.missing
        return self.missing / total if total else 0.0


@dataclasses.dataclass
class Anomaly:
    """One problem the ExampleValidator found in a split, for the report's anomalies."""

    split: str
    feature: str  # "" for the data set as a whole
    severity: str
    description: str


def _is_remote(path: str) -> bool:
    return "://" in path


def _read(path: str) -> bytes:
    if _is_remote(path):
        import tensorflow as tf

        with tf.io.gfile.GFile(path, "rb") as handle:
            return handle.read()
    with open(path, "rb") as handle:
        return handle.read()


def _splits(uri: str) -> list[str]:
    """The artifact's split folders (train, eval), in the order of the pipeline."""
    if _is_remote(uri):
        import tensorflow as tf

        names = [n.rstrip("/") for n in tf.io.gfile.listdir(uri)]
    else:
        names = os.listdir(uri) if os.path.isdir(uri) else []
    splits = [n[len(SPLIT_PREFIX):] for n in names if n.startswith(SPLIT_PREFIX)]
    order = {"train": 0, "eval": 1}
    return sorted(splits, key=lambda s: (order.get(s, 2), s))


# -- TFMA --------------------------------------------------------------------------------

def slice_metrics(evaluation_uri: Optional[str]) -> list[SliceMetrics]:
    """The candidate model's metrics for all rows and for each configured slice."""
    if not evaluation_uri:
        return []
    try:
        import tensorflow_model_analysis as tfma

        found = []
        for entry in tfma.load_metrics(evaluation_uri):
            values = {}
            for item in entry.metric_keys_and_values:
                key, value = item.key, item.value
                if key.model_name == "baseline" or key.is_diff or not value.HasField(
                        "double_value"):
                    continue
                values[key.name] = value.double_value.value
            found.append(SliceMetrics(_slice_label(entry.slice_key), values))
    except Exception:  # a foreign or half-written evaluation: no slice table
        return []
    return sorted(found, key=lambda s: (s.label != "all rows", -(s.examples or 0), s.label))


def _slice_label(slice_key) -> str:
    parts = []
    for key in slice_key.single_slice_keys:
        kind = key.WhichOneof("kind")
        value = getattr(key, kind) if kind else ""
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        elif isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{key.column} = {value}")
    return ", ".join(parts) or "all rows"


# -- TFDV statistics ---------------------------------------------------------------------

def feature_statistics(statistics_uri: Optional[str]) -> dict[str, list[FeatureSummary]]:
    """Per split, each column's counts, missing values and distribution."""
    if not statistics_uri:
        return {}
    from tensorflow_metadata.proto.v0 import statistics_pb2

    found = {}
    try:
        for split in _splits(statistics_uri):
            path = os.path.join(statistics_uri, SPLIT_PREFIX + split, "FeatureStats.pb")
            stats = statistics_pb2.DatasetFeatureStatisticsList()
            stats.ParseFromString(_read(path))
            if stats.datasets:
                found[split] = [_summary(f) for f in stats.datasets[0].features]
    except Exception:  # unreadable statistics: say nothing rather than fail the report
        return found
    return found


def _summary(feature) -> FeatureSummary:
    name = ".".join(feature.path.step) or feature.name
    kind = feature.WhichOneof("stats")
    if kind == "num_stats":
        stats = feature.num_stats
        common = stats.common_stats
        summary = FeatureSummary(name, "numeric", int(common.num_non_missing),
                                 int(common.num_missing))
        summary.numbers = {"mean": stats.mean, "std dev": stats.std_dev, "min": stats.min,
                           "median": stats.median, "max": stats.max,
                           "zeros": float(stats.num_zeros)}
        standard = [h for h in stats.histograms if h.type == h.STANDARD]
        if standard:
            summary.histogram = [(b.low_value, b.high_value, b.sample_count)
                                 for b in standard[0].buckets
                                 if math.isfinite(b.low_value) and math.isfinite(b.high_value)]
        return summary
    if kind == "string_stats":
        stats = feature.string_stats
        common = stats.common_stats
        summary = FeatureSummary(name, "text", int(common.num_non_missing),
                                 int(common.num_missing), unique=int(stats.unique))
        summary.top_values = [(v.value, v.frequency) for v in stats.top_values[:6]]
        if stats.avg_length:
            summary.numbers = {"avg length": stats.avg_length}
        return summary
    common = getattr(feature, kind).common_stats if kind else None
    return FeatureSummary(name, kind or "unknown", int(common.num_non_missing) if common else 0,
                          int(common.num_missing) if common else 0)


# -- anomalies ---------------------------------------------------------------------------

def anomalies(anomalies_uri: Optional[str]) -> Optional[list[Anomaly]]:
    """Every anomaly the ExampleValidator found, per split; None when none were read."""
    if not anomalies_uri:
        return None
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    found = []
    try:
        splits = _splits(anomalies_uri)
        for split in splits:
            proto = anomalies_pb2.Anomalies()
            proto.ParseFromString(_read(os.path.join(anomalies_uri, SPLIT_PREFIX + split,
                                                     "SchemaDiff.pb")))
            for feature, info in sorted(proto.anomaly_info.items()):
                found.append(_anomaly(split, feature, info))
            if proto.HasField("dataset_anomaly_info"):
                found.append(_anomaly(split, "", proto.dataset_anomaly_info))
    except Exception:
        return None
    return found if splits else None


def _anomaly(split: str, feature: str, info) -> Anomaly:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    severity = anomalies_pb2.AnomalyInfo.Severity.Name(info.severity).lower()
    text = info.description or "; ".join(r.description for r in info.reason)
    if info.short_description and info.short_description not in text:
        text = f"{info.short_description}: {text}"
    return Anomaly(split, feature, severity, text)
