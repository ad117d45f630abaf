"""The validated form of `pipeline_config.yaml`, the single source of truth for every run.

Everything a runner needs (paths, features, hyper-parameters, thresholds, serving target,
schedule, image) comes from here, so the local runner, the TFX CLI and Kubeflow build the
same pipeline. Loading fails fast, before any component runs, with one message per problem
naming the key path (``training.train_steps: ...``).

This module imports no TensorFlow: `mlops check-config` answers in well under a second.
"""
from __future__ import annotations

import difflib
import os
import posixpath
import re
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

import yaml
from pydantic import (
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from models import features as feature_lib
from pipeline.definition import data_files, schema_file
from pipeline.errors import UsageError
from serving.settings import NAME_PATTERN as _NAME_PATTERN  # noqa: F401
from serving.settings import (
    ServingSection,
    ServingSettings,
    StrictSection,
    is_remote,
    join_path,
)

DEFAULT_CONFIG_FILE = "pipeline_config.yaml"
CONFIG_ENV_VAR = "MLOPS_CONFIG"
OVERRIDE_ENV_PREFIX = "MLOPS__"

# Keras / TFMA metric class names the evaluation section accepts, by the task they fit.
# "higher" metrics improve upwards; bounded ones live in [0, 1].
_CLASSIFICATION_METRICS = {"BinaryAccuracy", "AUC", "Precision", "Recall",
                           "BinaryCrossentropy"}
_MULTICLASS_METRICS = {"SparseCategoricalAccuracy", "SparseCategoricalCrossentropy",
                       "SparseTopKCategoricalAccuracy"}
_REGRESSION_METRICS = {"MeanSquaredError", "MeanAbsoluteError", "RootMeanSquaredError",
                       "MeanAbsolutePercentageError"}
METRICS_BY_TASK = {
    "binary_classification": _CLASSIFICATION_METRICS,
    "multiclass_classification": _MULTICLASS_METRICS,
    "regression": _REGRESSION_METRICS,
}
LOWER_IS_BETTER = {"BinaryCrossentropy", "SparseCategoricalCrossentropy",
                   *_REGRESSION_METRICS}
BOUNDED_0_1 = {"BinaryAccuracy", "AUC", "Precision", "Recall",
               "SparseCategoricalAccuracy", "SparseTopKCategoricalAccuracy"}


# Profiles: what differs between runners (pipeline root, serving base, Beam args, caching)
# is stated under `profiles.<name>` and laid over the rest of the file, which is stated once.
# Cell texts read as "missing" by default: R's and pandas' conventions, spreadsheets' #N/A.
DEFAULT_MISSING_VALUES = ("NA", "N/A", "n/a", "NaN", "nan", "NULL", "null", "#N/A")

LOCAL = "local"
KUBEFLOW = "kubeflow"
PROFILES = (LOCAL, KUBEFLOW)


class ConfigError(UsageError):
    """A configuration problem a person can fix; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: Iterable[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))

    def __str__(self) -> str:
        lines = [f"Invalid configuration in {self.source}:"]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


_Section = StrictSection  # unknown keys are errors, so a typo never silently does nothing


class PipelineSection(_Section):
    """`pipeline:`: the run's name, where its artifacts and ML Metadata go, and how Beam runs."""

    name: str = Field(pattern=_NAME_PATTERN,
                      description="Pipeline name; Kubeflow v2 needs [a-z0-9][a-z0-9-]*")
    root: str = "build/pipeline_root"
    metadata_path: str = "build/metadata.sqlite"
    enable_cache: bool = True
    beam_args: list[str] = Field(default_factory=lambda: [
        "--direct_running_mode=in_memory", "--direct_num_workers=1"])
    threads: Union[Literal["auto"], PositiveInt] = Field(
        "auto", description="threads of the components' in-process paths: 'auto' (one on "
                            "small data, else the cores, at most 4) or a number")


class DataSection(_Section):
    """`data:`: which CSV spans a run reads, how they are split, and the curated schema."""

    input_base: str
    span_pattern: str = "span-{SPAN}/*.csv"
    span: Union[Literal["latest"], PositiveInt] = "latest"
    train_spans: PositiveInt = Field(
        1, description="spans each run reads, ending at `span`: 3 = that span and the two "
                       "before it")
    train_buckets: PositiveInt = 4
    eval_buckets: PositiveInt = 1
    schema_path: Optional[str] = None
    missing_values: list[str] = Field(
        default_factory=lambda: list(DEFAULT_MISSING_VALUES),
        description="cell texts read as missing, besides an empty cell")
    decoded_copy: bool = Field(
        True, description="ExampleGen also writes the rows as decoded Arrow beside the "
                          "Examples, which StatisticsGen and Transform read instead of "
                          "decoding them (about 0.7x the records' size)")

    @field_validator("span_pattern")
    @classmethod
    def _has_span(cls, value: str) -> str:
        if "{SPAN}" not in value:
            raise ValueError("must contain {SPAN} so each run picks a span "
                             "(e.g. 'span-{SPAN}/*.csv')")
        return value


class FeaturesSection(_Section):
    """`features:`: the model's inputs by kind, which decides how Transform prepares each."""

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    bucketized: dict[str, PositiveInt] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct_and_present(self) -> "FeaturesSection":
        names = self.all_names()
        if not names:
            raise ValueError("declare at least one feature under numeric, categorical "
                             "or bucketized")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"features declared more than once: {', '.join(duplicates)}")
        return self

    def all_names(self) -> list[str]:
        """Every declared feature in declaration order (numeric, categorical, bucketized),
        duplicates kept so the validator can name them."""
        return [*self.numeric, *self.categorical, *self.bucketized]


class LabelSection(_Section):
    """`label:`: the column the model predicts and the task, which picks loss and metrics."""

    column: str
    task: Literal["binary_classification", "multiclass_classification", "regression"]
    positive_above: Optional[float] = None
    positive_value: Optional[Union[str, int, float]] = None
    class_names: Optional[list[str]] = None

    @model_validator(mode="after")
    def _task_options(self) -> "LabelSection":
        binary = self.task == "binary_classification"
        chosen = [k for k in ("positive_above", "positive_value") if getattr(self, k) is not None]
        if binary and len(chosen) != 1:
            raise ValueError("binary_classification needs exactly one of positive_above "
                             "(numeric label: positive when value > it) or positive_value")
        if not binary and chosen:
            raise ValueError(f"{chosen[0]} only applies to binary_classification")
        if self.class_names is not None:
            if not binary:
                raise ValueError("class_names only applies to binary_classification "
                                 "(multiclass names come from the data)")
            if len(self.class_names) != 2:
                raise ValueError("class_names needs two names: [negative, positive]")
        return self


class TrainingSection(_Section):
    """`training:`: the Trainer's steps, batch size and network shape (defaults fit a demo)."""

    train_steps: PositiveInt = 1000
    eval_steps: PositiveInt = 100
    batch_size: PositiveInt = 128
    learning_rate: PositiveFloat = 0.001
    hidden_units: list[PositiveInt] = Field(default_factory=lambda: [64, 32], min_length=1)
    vocab_size: PositiveInt = 1000
    embedding_dim: PositiveInt = 8


class Threshold(_Section):
    """One metric the Evaluator gates a push on: absolute bounds and/or how much worse
    than the serving model a candidate may be."""

    metric: str
    lower_bound: Optional[float] = None
    upper_bound: Optional[float] = None
    max_regression: Optional[NonNegativeFloat] = Field(
        0.0, description="How much worse than the serving model a candidate may be; "
                         "null turns the comparison off")

    @model_validator(mode="after")
    def _bounds(self) -> "Threshold":
        if self.lower_bound is None and self.upper_bound is None and self.max_regression is None:
            raise ValueError("set lower_bound, upper_bound or max_regression")
        if (self.lower_bound is not None and self.upper_bound is not None
                and self.lower_bound > self.upper_bound):
            raise ValueError(f"lower_bound {self.lower_bound} is above upper_bound "
                             f"{self.upper_bound}")
        if self.metric in BOUNDED_0_1:
            for key in ("lower_bound", "upper_bound"):
                value = getattr(self, key)
                if value is not None and not 0.0 <= value <= 1.0:
                    raise ValueError(f"{key} {value} is outside [0, 1], the range of "
                                     f"{self.metric}")
        return self

    @property
    def higher_is_better(self) -> bool:
        """Whether the metric improves upwards (accuracy) rather than downwards (a loss),
        which sets the direction of `max_regression`."""
        return self.metric not in LOWER_IS_BETTER


class EvaluationSection(_Section):
    """`evaluation:`: the thresholds a candidate must meet to be pushed, and the slices
    whose metrics the report shows."""

    thresholds: list[Threshold] = Field(min_length=1)
    slices: list[str] = Field(default_factory=list)


class ScheduleSection(_Section):
    """A recurring run on Kubeflow: KFP's cron (six fields, seconds first) and its limits."""

    cron: str = "0 0 2 * * *"
    max_concurrency: int = Field(
        1, ge=1, le=10,  # the API server's range (api_converter.go)
        description="runs of the schedule at once; 1 = a slow run delays the next")
    catchup: bool = Field(False, description="after a pause, run every missed slot (true) "
                                             "or only the next one (false)")

    @field_validator("cron")
    @classmethod
    def _kubeflow_cron(cls, value: str) -> str:
        from pipeline.kubeflow import cron  # the server's grammar (robfig/cron v1.2.0)

        try:
            return cron.validate(value)  # a CronError is a ValueError: one line for the key
        except cron.CrontabLineError as err:
            if err.converted is None:
                raise
            raise ValueError(f"{err}; as six fields: '{err.converted}'") from None


class SkewSection(_Section):
    """`mlops skew`: how far served requests may move from the training data."""

    categorical_l_infinity: float = Field(
        0.1, gt=0, le=1, description="largest allowed difference in a category's share")
    numeric_jensen_shannon: float = Field(
        0.1, gt=0, le=1, description="largest allowed Jensen-Shannon divergence of a "
                                     "numeric feature's histogram")
    requests: Optional[str] = Field(
        None, description="the request log (TFRecord tf.Examples); default: "
                          "<serving.base_directory>/request_logs/<model_name>")


class VolumeMount(_Section):
    """A PersistentVolumeClaim mounted into the pipeline's pods on Kubeflow."""

    claim: str = Field(pattern=_NAME_PATTERN)
    mount_path: str = Field(pattern=r"^/")
    components: Optional[list[str]] = Field(
        None, description="component ids that mount it (e.g. [ServingBaseline, Pusher]); "
                          "null = every component")


# Kubernetes' rules for what `kubeflow.env` and `kubeflow.secrets` name: environment variable
# names (a C identifier), Secret names (a DNS-1123 subdomain, at most 253 characters) and
# the keys of a Secret's data (apimachinery validation.IsConfigMapKey).
ENV_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_SECRET_NAME_MAX = 253


def _env_var_problem(name: str) -> Optional[str]:
    if ENV_VAR_NAME.match(name):
        return None
    return (f"'{name}' is not a valid environment variable name: use letters, digits and "
            "'_', not starting with a digit")


def _absolute_mount_path(value: str) -> str:
    if not value.startswith("/") or posixpath.normpath(value) == "/":
        raise ValueError("must be an absolute path in the pod (starting with /, not / itself)")
    return value


class SecretMount(_Section):
    """A Kubernetes Secret given to the pipeline's pods on Kubeflow: some of its keys as
    environment variables (`env`, KFP's `secretAsEnv`), and/or all of them as files in a
    folder (`mount_path`, `secretAsVolume`). Both are in the platform spec of every KFP
    backend from 2.0.5 on."""

    secret: str = Field(description="the Secret's name, in the namespace the pods run in")
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variable -> key of the Secret")
    mount_path: Optional[str] = Field(None, description="where its keys appear as files")
    components: Optional[list[str]] = Field(
        None, description="component ids that get it (e.g. [Trainer, Pusher]); "
                          "null = every component")

    @field_validator("secret")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        if len(value) > _SECRET_NAME_MAX or not SECRET_NAME.match(value):
            raise ValueError("not a Kubernetes Secret name: lowercase letters, digits, '-' "
                             "and '.', a letter or digit at each end, at most "
                             f"{_SECRET_NAME_MAX} characters")
        return value

    @field_validator("env")
    @classmethod
    def _env_names_and_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for name, key in value.items():
            problem = _env_var_problem(name)
            if problem:
                raise ValueError(problem)
            if not SECRET_KEY.match(key):
                raise ValueError(f"{name}: '{key}' is not a key a Secret can have: letters, "
                                 "digits, '-', '_' and '.'")
        return value

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: Optional[str]) -> Optional[str]:
        return None if value is None else _absolute_mount_path(value)

    @model_validator(mode="after")
    def _env_or_mount(self) -> "SecretMount":
        if not self.env and self.mount_path is None:
            raise ValueError("give env (environment variable: secret key) and/or mount_path "
                             f"(a folder for its keys as files) for Secret '{self.secret}'")
        return self


class KubeflowSection(_Section):
    """How the pipeline is packaged for Kubeflow Pipelines and which server runs it."""

    image: str = "mlops-tfx-pipeline:latest"
    project_dir: str = Field(
        "/pipeline", pattern=r"^/",
        description="where the image holds this project; the kubeflow profile's relative "
                    "paths resolve against it")
    output_file: str = "build/kubeflow/pipeline.yaml"
    host: Optional[str] = Field(None, description="KFP API endpoint, e.g. "
                                                  "http://localhost:8080 (or --host)")
    namespace: Optional[str] = Field(None, description="multi-user KFP: the user's profile "
                                                       "namespace")
    experiment: Optional[str] = Field(None, description="default: the pipeline name")
    token_env: str = Field("KFP_TOKEN", description="environment variable holding a bearer "
                                                    "token, when the endpoint needs one")
    volumes: list[VolumeMount] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict, description="environment variables of every task's container "
                                          "(plain values; credentials go in secrets)")
    secrets: list[SecretMount] = Field(default_factory=list)

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            problem = _env_var_problem(name)
            if problem:
                raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _distinct_mounts(self) -> "KubeflowSection":
        paths = [volume.mount_path.rstrip("/") for volume in self.volumes]
        twice = sorted({p for p in paths if paths.count(p) > 1})
        if twice:
            raise ValueError(f"volumes mount more than one claim at {', '.join(twice)}")
        return self

    @model_validator(mode="after")
    def _secrets_fit_the_pods(self) -> "KubeflowSection":
        """What would make a pod invalid or ambiguous: two mounts at one path; two pod
        volumes of one name (KFP names a Secret's volume after the Secret and a PVC's after
        its claim, driver.go `extendPodSpecPatch`); one variable set twice in a container.
        Messages start with the sub-key (see `_describe`)."""
        paths = {volume.mount_path.rstrip("/"): f"kubeflow.volumes[{index}]"
                 for index, volume in enumerate(self.volumes)}
        volume_names: dict[str, list[tuple[str, Optional[list[str]]]]] = {}
        for index, volume in enumerate(self.volumes):
            volume_names.setdefault(volume.claim, []).append(
                (f"kubeflow.volumes[{index}] (claim {volume.claim})", volume.components))
        env_vars = {name: [("kubeflow.env", None)] for name in self.env}
        for index, item in enumerate(self.secrets):
            here = f"secrets[{index}]"
            named = f"kubeflow.{here}"
            if item.mount_path is not None:
                path = item.mount_path.rstrip("/")
                if path in paths:
                    raise ValueError(f"{here}.mount_path: {paths[path]} is mounted at {path} "
                                     "already")
                paths[path] = named
                for other, components in volume_names.get(item.secret, []):
                    if _overlap(components, item.components):
                        raise ValueError(
                            f"{here}.secret: {other} is mounted in the same pods, and KFP "
                            "names each pod volume after its Secret or claim: two volumes "
                            f"named '{item.secret}', which Kubernetes refuses")
                volume_names.setdefault(item.secret, []).append((named, item.components))
            for name in item.env:
                for other, components in env_vars.get(name, []):
                    if _overlap(components, item.components):
                        raise ValueError(f"{here}.env: {name} is set by {other} too, in the "
                                         "same containers")
                env_vars.setdefault(name, []).append((named, item.components))
        return self


def _overlap(first: Optional[list[str]], second: Optional[list[str]]) -> bool:
    """Whether two `components` lists (None: every component) share a component."""
    return first is None or second is None or bool(set(first) & set(second))


class PipelineConfig(_Section):
    """The whole validated file; build it with `load_config`, which also applies profiles
    and overrides and resolves relative paths."""

    pipeline: PipelineSection
    data: DataSection
    features: FeaturesSection
    label: LabelSection
    training: TrainingSection = Field(default_factory=TrainingSection)
    evaluation: EvaluationSection
    serving: ServingSection
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    skew: SkewSection = Field(default_factory=SkewSection)
    kubeflow: KubeflowSection = Field(default_factory=KubeflowSection)
    _profile: str = PrivateAttr(LOCAL)

    @property
    def profile(self) -> str:
        """The profile this config was loaded with: `local` or `kubeflow`."""
        return self._profile

    @model_validator(mode="after")
    def _cross_checks(self) -> "PipelineConfig":
        if self.label.column in self.features.all_names():
            raise ValueError(f"label.column '{self.label.column}' is also declared as a "
                             "feature; a label cannot be a model input")
        unknown = [s for s in self.evaluation.slices if s not in self.features.all_names()]
        if unknown:
            raise ValueError(f"evaluation.slices names undeclared features: {unknown}")
        allowed = METRICS_BY_TASK[self.label.task]
        for index, threshold in enumerate(self.evaluation.thresholds):
            if threshold.metric not in allowed:
                raise ValueError(
                    f"evaluation.thresholds[{index}].metric '{threshold.metric}' does not fit "
                    f"task {self.label.task}; choose one of {sorted(allowed)}")
        return self

    # -- derived values: computed, never stored, so they cannot drift ------------------
    @property
    def serving_model_dir(self) -> str:
        """Where the Pusher writes versions and the server reads them (`serving.model_dir`)."""
        return self.serving.model_dir

    def serving_settings(self) -> ServingSettings:
        """What the serving package needs (it imports nothing of the pipeline's)."""
        return ServingSettings(self.serving, self.pipeline.name)

    def declared_columns(self) -> dict[str, str]:
        """Each column the config names in the data, with the key that names it."""
        keys = {name: f"features.{kind}" for kind in ("numeric", "categorical", "bucketized")
                for name in getattr(self.features, kind)}
        return {**keys, self.label.column: "label.column"}

    def data_contract(self) -> dict[str, str]:
        """Each declared column and what the data must hold for it: its kind, or for the
        label NUMERIC_LABEL (regression, or a positive_above threshold) or LABEL (kinds in
        `models/features.py`). Checked before training, and against a curated schema."""
        contract = {name: feature_lib.NUMERIC for name in self.features.numeric}
        contract.update({name: feature_lib.BUCKETIZED for name in self.features.bucketized})
        contract.update({name: feature_lib.CATEGORICAL for name in self.features.categorical})
        numeric_label = (self.label.task == feature_lib.REGRESSION
                         or self.label.positive_above is not None)
        contract[self.label.column] = (feature_lib.NUMERIC_LABEL if numeric_label
                                       else feature_lib.LABEL)
        return contract

    def model_custom_config(self) -> dict[str, Any]:
        """What Transform and Trainer need, as plain JSON: `models/` never reads the file."""
        return {
            "features": self.features.model_dump(),
            "label": self.label.model_dump(),
            "training": self.training.model_dump(),
        }


def _key_path(location: tuple) -> str:
    path = ""
    for part in location:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


# A section's cross-field check names the key it is about first: "secrets[1].mount_path: ...".
_SUB_KEY = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])?(?:\.[A-Za-z_]\w*(?:\[\d+\])?)*): ")


def _describe(error: dict) -> str:
    """One readable line for one pydantic error, naming the key and what is wrong."""
    location = tuple(p for p in error["loc"] if not _is_union_tag(p))
    key = _key_path(location)
    kind = error["type"]
    sub_key = _SUB_KEY.match(error["msg"].removeprefix("Value error, "))
    if kind == "value_error" and sub_key and isinstance(error.get("input"), dict):
        message = error["msg"].removeprefix("Value error, ")[sub_key.end():]
        return f"{key}.{sub_key[1]}: {message}"
    if kind == "extra_forbidden":
        known = _known_keys(location[:-1])
        close = difflib.get_close_matches(str(location[-1]), known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{key}: unknown key{hint}"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind == "string_pattern_mismatch" and error["ctx"].get("pattern") == _NAME_PATTERN:
        return (f"{key}: '{error['input']}' is not a valid name: use lowercase letters, digits "
                "and '-', starting with a letter or digit (Kubeflow v2 requires it)")
    message = error["msg"].removeprefix("Value error, ")
    if "input" in error and kind not in ("model_type", "dict_type") and not isinstance(
            error["input"], dict):
        return f"{key}: {message} (got {error['input']!r})"
    return f"{key}: {message}"


def _merge_alternatives(lines: Iterable[str]) -> list[str]:
    """One line per key: a value that fits no member of a union lists each member's
    complaint ("Input should be 'latest'; or: Input should be a valid integer")."""
    merged: dict[str, list[str]] = {}
    for line in lines:
        key, _, message = line.partition(": ")
        if message not in merged.setdefault(key, []):
            merged[key].append(message)
    return [f"{key}: " + "; or: ".join(messages) for key, messages in merged.items()]


def _is_union_tag(part: Any) -> bool:
    """Pydantic names the union member it tried in the error location; keys never look so."""
    return part in ("int", "str", "float", "bool") or str(part).startswith(
        ("literal[", "function-", "constrained-"))


def _known_keys(location: tuple) -> list[str]:
    model: Any = PipelineConfig
    for part in location:
        if isinstance(part, int):  # an item of a list of sections (kubeflow.secrets[0])
            model = next(iter(typing.get_args(model)), None)
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def parse_override(assignment: str) -> tuple[list[str], Any]:
    """`training.train_steps=50` -> (['training', 'train_steps'], 50); YAML typing.

    The value is read as YAML, so `50` is an int, `true` a bool and `[a, b]` a list, as
    if written in the file; an empty value is None.

    Raises:
        ValueError: `assignment` has no `=`, or its key is empty (`=5`, `.=5`).
            `load_config` collects these into its ConfigError.
    """
    if "=" not in assignment:
        raise ValueError(f"override '{assignment}' is not KEY=VALUE (e.g. training.train_steps=50)")
    key, value = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ValueError(f"override '{assignment}' has an empty key")
    return parts, yaml.safe_load(value) if value.strip() else None


def env_overrides(environ: Optional[dict[str, str]] = None) -> list[str]:
    """`MLOPS__TRAINING__TRAIN_STEPS=50` -> `training.train_steps=50` (one run only)."""
    environ = os.environ if environ is None else environ
    return [f"{name[len(OVERRIDE_ENV_PREFIX):].lower().replace('__', '.')}={value}"
            for name, value in sorted(environ.items()) if name.startswith(OVERRIDE_ENV_PREFIX)]


def _apply(raw: dict, parts: list[str], value: Any) -> None:
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def resolve_config_path(path: Optional[str] = None) -> Path:
    """The file to load: an explicit path, else $MLOPS_CONFIG, else ./pipeline_config.yaml."""
    return Path(path or os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_FILE)


def load_config(path: Optional[Union[str, Path]] = None, overrides: Iterable[str] = (),
                use_env: bool = True, check_files: bool = True,
                profile: str = LOCAL) -> PipelineConfig:
    """Reads, overrides, validates and resolves the configuration, or raises ConfigError.

    `profile` (`local` or `kubeflow`) picks which `profiles:` section is laid over the
    file; overrides (`--set`, `MLOPS__...`) apply on top of it. Relative paths are made
    absolute against the file's folder for the local profile, and against
    `kubeflow.project_dir` (the project's folder inside the pipeline image) for the kubeflow
    profile, whose paths are the pods' and are not checked here; URIs (gs://...) are kept
    as they are. `kubeflow.output_file` is always on this machine. `check_files` checks the
    data's files; `serving.tls`'s files are checked whenever they are set (local profile).

    Args:
        path: the file; default `$MLOPS_CONFIG`, else `./pipeline_config.yaml`.
        overrides: `KEY=VALUE` assignments (`--set`), applied after the `MLOPS__...`
            environment variables (read only when `use_env`).
        use_env: whether `MLOPS__SECTION__KEY` variables override the file.
        check_files: whether to check, for the local profile, that `data.input_base`
            holds a file of the span to read and that `data.schema_path` fits the features.
        profile: `local` or `kubeflow`.

    Returns:
        The validated config with absolute paths; `config.profile` says which profile.

    Raises:
        ConfigError: one line per problem, each naming the key, when: the file is missing,
            is not YAML, or its top level is not a mapping; `profile` is unknown; an
            override is not `KEY=VALUE`; `profiles:` is not a mapping of `local` /
            `kubeflow` to mappings; a key is unknown (with a close match), missing or of
            the wrong type or value, or sections contradict each other (e.g. the label is
            also a feature); or, for the local profile, `serving.tls` names a file that is
            missing or unusable, or (with `check_files`) the data folder or span files are
            missing, or the curated schema is missing or lacks a declared column.
        OSError: the config file or the curated schema exists but cannot be read
            (permissions, say).
    """
    config_path = resolve_config_path(str(path) if path else None).resolve()
    source = str(config_path)
    if not config_path.is_file():
        raise ConfigError(source, [f"config file not found (set --config or ${CONFIG_ENV_VAR})"])
    try:
        raw = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(source, [f"not valid YAML: {err}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError(source, ["the top level must be a mapping of sections"])
    if profile not in PROFILES:
        raise ConfigError(source, [f"unknown profile {profile!r}: choose {' or '.join(PROFILES)}"])

    # Overrides of a profile's keys (`profiles.kubeflow.pipeline.root=...`) edit the
    # profile; the others apply after it, so an explicit override always wins.
    problems: list[str] = []
    parsed = []
    for assignment in [*(env_overrides() if use_env else []), *overrides]:
        try:
            parsed.append(parse_override(assignment))
        except ValueError as err:
            problems.append(str(err))
    for parts, value in parsed:
        if parts[0] == "profiles":
            _apply(raw, parts, value)
    profiles = raw.pop("profiles", None) or {}
    problems += _profile_problems(profiles)
    if problems:
        raise ConfigError(source, problems)
    if profile != LOCAL:
        source += f" (profile {profile})"
    raw = _merged(raw, profiles.get(profile) or {})
    for parts, value in parsed:
        if parts[0] != "profiles":
            _apply(raw, parts, value)

    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(source, _merge_alternatives(_describe(e) for e in err.errors())) from None

    config._profile = profile  # pylint: disable=protected-access
    _resolve_paths(config, config_path.parent)
    if profile == LOCAL:  # the TLS files always: the serving commands need them, not the data
        problems = [*(_file_problems(config) if check_files else []),
                    *config.serving.tls.problems()]
        if problems:
            raise ConfigError(source, problems)
    return config


def _profile_problems(profiles: Any) -> list[str]:
    if not isinstance(profiles, dict):
        return ["profiles: must map a profile name (local, kubeflow) to config sections"]
    problems = []
    for name, overlay in profiles.items():
        if name not in PROFILES:
            problems.append(f"profiles.{name}: unknown profile; choose {' or '.join(PROFILES)}")
        elif overlay is not None and not isinstance(overlay, dict):
            problems.append(f"profiles.{name}: must be a mapping of config sections")
    return problems


def _merged(base: dict, overlay: dict) -> dict:
    """`overlay` laid over `base`: mappings merge key by key, anything else is replaced."""
    result = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merged(result[key], value)
        else:
            result[key] = value
    return result


def _resolve_paths(config: PipelineConfig, config_dir: Path) -> None:
    if config.profile == LOCAL:
        def absolute(value: Optional[str]) -> Optional[str]:
            if value is None or is_remote(value):
                return value
            return str((config_dir / value).resolve())
    else:  # the pods' paths: inside the image, or on a mounted volume
        def absolute(value: Optional[str]) -> Optional[str]:
            if value is None or is_remote(value):
                return value
            return posixpath.normpath(posixpath.join(config.kubeflow.project_dir, value))

    config.pipeline.root = absolute(config.pipeline.root)
    config.pipeline.metadata_path = absolute(config.pipeline.metadata_path)
    config.data.input_base = absolute(config.data.input_base)
    config.data.schema_path = absolute(config.data.schema_path)
    config.serving.base_directory = absolute(config.serving.base_directory)
    config.serving.tls.resolve(absolute)
    config.serving.request_log.directory = absolute(config.serving.request_log.directory)
    config.skew.requests = absolute(config.skew.requests or join_path(
        config.serving.request_log_dir, config.serving.model_name))
    config.kubeflow.output_file = str((config_dir / config.kubeflow.output_file).resolve())


def _file_problems(config: PipelineConfig) -> list[str]:
    problems = []
    data = config.data
    if not is_remote(data.input_base):
        if not os.path.isdir(data.input_base):
            problems.append(f"data.input_base: folder not found: {data.input_base}")
        else:
            files = data_files.span_files(data.input_base, data.span_pattern, data.span)
            if not files:
                wanted = "*" if data.span == "latest" else str(data.span)
                pattern = os.path.join(data.input_base,
                                       data.span_pattern.replace("{SPAN}", wanted))
                which = "any span" if data.span == "latest" else f"span {data.span}"
                problems.append(f"data.span_pattern: no file for {which} matches {pattern}")

    if data.schema_path and not is_remote(data.schema_path):
        if os.path.isfile(data.schema_path):
            problems.extend(f"data.schema_path: {problem}" for problem in
                            schema_file.problems(data.schema_path, config.data_contract()))
        else:
            problems.append(f"data.schema_path: file not found: {data.schema_path}")
    return problems
