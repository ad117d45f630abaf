"""`mlops skew`: do the requests a version answers still look like the data it learned from?

The requests (TFRecord files of `tf.Example`s, as a request logger writes them) get TFDV
statistics, which are compared with the training data behind the served version, found
through its push manifest and run record (`lineage`):

- **skew**: per feature, served requests against the training split: L-infinity distance
  for categorical features (the largest difference in a category's share), Jensen-Shannon
  divergence for numeric ones (histograms), thresholds from the config's `skew:` section;
- **drift** (with `--previous DIR`): the same distances between two windows of requests;
- **anomalies**: the requests against the version's schema, in TFDV's SERVING environment
  (where the label is not expected), e.g. a category the schema does not know.

Integer columns declared categorical are compared as categories (L-infinity), as their
vocabulary was built: both sides' statistics are computed here with that schema.
"""
from __future__ import annotations

import copy
import dataclasses
import glob
import os
from typing import Any, Iterable, Iterator, Optional

from pipeline.definition.config import PipelineConfig
from pipeline.errors import UserError
from pipeline.records import lineage

REQUEST_PATTERNS = ("*.tfrecord", "*.tfrecord.gz", "*.gz")
BATCH_SIZE = 8192
MEASURES = {"L_INFTY": "L-infinity", "JENSEN_SHANNON_DIVERGENCE": "Jensen-Shannon"}


class SkewError(UserError):
    """What a skew check needs is missing: requests, the version, its training data."""


@dataclasses.dataclass
class Shift:
    """One feature's distance between two distributions, and its threshold."""

    feature: str
    measure: str  # "L-infinity" or "Jensen-Shannon"
    value: float
    threshold: float

    @property
    def exceeded(self) -> bool:
        """Past the threshold: a problem to report (equal to it is still fine)."""
        return self.value > self.threshold

    def line(self) -> str:
        """The feature, measure, value, threshold and verdict in one line of the report."""
        verdict = "SHIFTED" if self.exceeded else "ok"
        return (f"{self.feature}: {self.measure} {self.value:.4f} "
                f"(threshold {self.threshold:g}) {verdict}")


@dataclasses.dataclass
class SkewReport:
    """What `mlops skew` found: per-feature skew against the training data, drift against
    earlier requests, and schema anomalies of the requests."""

    version: int
    requests: int
    files: list[str]
    skew: list[Shift]
    drift: list[Shift]
    anomalies: list[str]

    @property
    def problems(self) -> list[str]:
        """Every feature past a threshold, and every anomaly: what a person must look at."""
        return ([f"skew: {s.line()}" for s in self.skew if s.exceeded]
                + [f"drift: {s.line()}" for s in self.drift if s.exceeded]
                + [f"anomaly: {a}" for a in self.anomalies])

    def lines(self) -> list[str]:
        """The report as text: a heading, every feature's shifts and anomalies, and a
        verdict line."""
        out = [f"{self.requests} requests ({len(self.files)} files) against the training "
               f"data of version {self.version}"]
        out += [f"  skew  {s.line()}" for s in self.skew]
        out += [f"  drift {s.line()}" for s in self.drift]
        out += [f"  anomaly {a}" for a in self.anomalies]
        out.append(f"{len(self.problems)} problem(s)" if self.problems else
                   "No skew, drift or anomaly past the thresholds.")
        return out

    def to_json(self) -> dict[str, Any]:
        """The report for `--json`, with each shift's verdict and the problems spelled out,
        so a script need not know the thresholds."""
        document = dataclasses.asdict(self)
        for key in ("skew", "drift"):
            for shift, entry in zip(getattr(self, key), document[key]):
                entry["exceeded"] = shift.exceeded
        document["problems"] = self.problems
        return document


def request_files(folder: str) -> list[str]:
    """The TFRecord files under `folder` (a request log), oldest name first.

    Raises:
        SkewError: no file under `folder` (searched recursively) matches the request
            log's patterns.
    """
    files = sorted({path for pattern in REQUEST_PATTERNS
                    for path in glob.glob(os.path.join(folder, "**", pattern), recursive=True)})
    if not files:
        raise SkewError(f"no request log under {folder} (TFRecord files of tf.Examples: "
                        f"{', '.join(REQUEST_PATTERNS)})")
    return files


def read_records(files: Iterable[str]) -> Iterator[bytes]:
    """Every serialized record of the files in turn (`.gz` ones gzipped), streamed, so a
    large request log need not fit in memory."""
    import tensorflow as tf

    for path in files:
        compression = "GZIP" if path.endswith(".gz") else ""
        for record in tf.data.TFRecordDataset(path, compression_type=compression):
            yield record.numpy()


def _batches(records: Iterable[bytes]):
    from tfx_bsl.coders import example_coder

    decoder = example_coder.ExamplesToRecordBatchDecoder()
    batch: list[bytes] = []
    for record in records:
        batch.append(record)
        if len(batch) == BATCH_SIZE:
            yield decoder.DecodeBatch(batch)
            batch = []
    if batch:
        yield decoder.DecodeBatch(batch)


def comparing_schema(schema, config: PipelineConfig):
    """The version's schema, set up to compare: integer categories as categories, the
    label absent when serving, a comparator with the config's threshold per feature."""
    from tensorflow_metadata.proto.v0 import schema_pb2

    schema = copy.deepcopy(schema)
    thresholds = config.skew
    categorical = set(config.features.categorical)
    if "SERVING" not in schema.default_environment:
        schema.default_environment.extend(["TRAINING", "SERVING"])
    for feature in schema.feature:
        if feature.name == config.label.column:
            feature.not_in_environment.append("SERVING")
            continue
        if feature.name not in config.features.all_names():
            continue
        if feature.name in categorical:
            if feature.type == schema_pb2.INT:  # a category, as its vocabulary saw it
                feature.int_domain.is_categorical = True
            for comparator in (feature.skew_comparator, feature.drift_comparator):
                comparator.infinity_norm.threshold = thresholds.categorical_l_infinity
        else:
            for comparator in (feature.skew_comparator, feature.drift_comparator):
                comparator.jensen_shannon_divergence.threshold = \
                    thresholds.numeric_jensen_shannon
    return schema


def _shifts(anomalies, kind: str) -> list[Shift]:
    shifts = []
    for info in anomalies.drift_skew_info:
        name = info.path.step[0] if info.path.step else ""
        for measurement in getattr(info, f"{kind}_measurements"):
            measure = MEASURES.get(type(measurement).Type.Name(measurement.type))
            if measure:
                shifts.append(Shift(name, measure, measurement.value, measurement.threshold))
    return sorted(shifts, key=lambda s: s.feature)


def _read_schema(uri: str):
    from tensorflow_metadata.proto.v0 import schema_pb2
    from tfx.utils import io_utils

    return io_utils.parse_pbtxt_file(os.path.join(uri, "schema.pbtxt"), schema_pb2.Schema())


def _training_statistics(examples_uri: str, options):
    from tfx.types import artifact_utils, standard_artifacts

    from components.statistics import split_statistics

    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    return split_statistics(examples, "train", options)


def served_version(config: PipelineConfig) -> int:
    """The version the server answers with, by the models.config's policy: the one whose
    training data requests are compared with when no version is given.

    Raises:
        SkewError: no version on disk is served (none pushed, or the policy admits none).
        ServingError: INVALID_ARGUMENT when the models.config exists but is not valid.
    """
    from components import serving_baseline
    from serving.server_files import MODELS_CONFIG

    version = serving_baseline.served_version(
        config.serving_model_dir, os.path.join(config.serving.base_directory, MODELS_CONFIG),
        config.serving.model_name)
    if version is None:
        raise SkewError(f"no version is served from {config.serving_model_dir}")
    return version


def rollout_candidate(config: PipelineConfig) -> int:
    """The candidate of the model's running rollout (`serving.rollout`).

    Raises:
        SkewError: no rollout is running, or its state file is not readable.
    """
    from serving.rollout.records import RolloutFiles

    files = RolloutFiles(config.serving.base_directory, config.serving.model_name)
    try:
        state = files.read_state()
    except ValueError as err:
        raise SkewError(str(err)) from None
    if not state.running:
        raise SkewError(f"no rollout of {config.serving.model_name} is running "
                        f"(`mlops rollout status`: {state.state})")
    return state.candidate


def record_for_rollout(config: PipelineConfig, found: SkewReport) -> str:
    """Writes the report's verdict as the rollout's `skew` check (the server counts it in
    its next interval): value = problems found, threshold 0. Returns the verdict."""
    from serving.rollout.records import RolloutFiles

    problems = found.problems
    verdict = "fail" if problems else "pass"
    RolloutFiles(config.serving.base_directory, config.serving.model_name
                 ).write_external_check(found.version, {
                     "name": "skew", "value": float(len(problems)), "threshold": 0.0,
                     "verdict": verdict,
                     "detail": "; ".join(problems[:3]) or f"{found.requests} requests"})
    return verdict


def skew(config: PipelineConfig, requests_dir: str, version: Optional[int] = None,
         previous_dir: Optional[str] = None) -> SkewReport:
    """Compares the requests under `requests_dir` with version `version`'s training data
    (default: the version being served), and with `previous_dir`'s requests if given.

    Raises:
        SkewError: no requests, no such version, or no record of its run here.
    """
    files = request_files(requests_dir)  # the mistakes a person makes, found before
    version = version or served_version(config)  # TFDV's seconds of imports
    try:
        origin = lineage.lineage(config, version)
    except lineage.LineageError as err:
        raise SkewError(str(err)) from None
    run = origin.run
    if run is None or not run.examples_uri or not run.schema_uri:
        raise SkewError(f"no record of the run behind version {version} on this machine: "
                        "its training data is what the requests are compared with")
    import tensorflow_data_validation as tfdv
    from tensorflow_data_validation.statistics import stats_options

    from components.data_gate import anomaly_problems
    from components.statistics import batch_statistics

    schema = comparing_schema(_read_schema(run.schema_uri), config)
    options = stats_options.StatsOptions(schema=schema)
    served = batch_statistics(_batches(read_records(files)), options)
    training = _training_statistics(run.examples_uri, options)
    requests = int(served.datasets[0].num_examples) if served.datasets else 0
    skewed = tfdv.validate_statistics(training, schema, environment="TRAINING",
                                      serving_statistics=served)
    drift: list[Shift] = []
    if previous_dir:
        before = batch_statistics(_batches(read_records(request_files(previous_dir))), options)
        drift = _shifts(tfdv.validate_statistics(served, schema, environment="SERVING",
                                                 previous_statistics=before), "drift")
    checked = tfdv.validate_statistics(served, schema, environment="SERVING")
    return SkewReport(version, requests, files, _shifts(skewed, "skew"), drift,
                      anomaly_problems(checked))
