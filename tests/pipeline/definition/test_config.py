"""Config validation: a valid file loads, and each mistake gets one message naming its key."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.definition.config import ConfigError, env_overrides, load_config
from tests.conftest import REPO, write_curated_schema


def problems(path: Path, *overrides: str, **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides, **kwargs)
    return caught.value.problems


def one_problem(path: Path, *overrides: str) -> str:
    found = problems(path, *overrides)
    assert len(found) == 1, found
    return found[0]


def test_valid_config_loads_with_paths_resolved_against_the_file(config_file: Path):
    config = load_config(config_file)
    assert config.pipeline.name == "chicago-taxi"
    assert config.data.input_base == str(config_file.parent / "data")
    assert config.serving_model_dir == str(config_file.parent / "serving_models" / "chicago-taxi")
    assert config.pipeline.root == str(config_file.parent / "build" / "pipeline_root")


def test_the_repository_config_is_valid():
    config = load_config(REPO / "pipeline_config.yaml")
    assert config.label.column == "tips"


def test_unknown_key_is_named_with_a_suggestion(config_file: Path):
    assert one_problem(config_file, "training.train_stpes=5") == (
        "training.train_stpes: unknown key (did you mean 'train_steps'?)")


def test_wrong_type_names_the_key_and_value(config_file: Path):
    message = one_problem(config_file, "training.train_steps=many")
    assert message.startswith("training.train_steps: ")
    assert "'many'" in message


def test_non_positive_number_is_refused(config_file: Path):
    assert one_problem(config_file, "training.batch_size=0").startswith("training.batch_size:")


def test_missing_required_key(config_file: Path):
    raw = config_file.read_text().replace("  column: tips\n", "")
    config_file.write_text(raw)
    assert one_problem(config_file) == "label.column: required key is missing"


def test_invalid_pipeline_name_explains_the_kubeflow_rule(config_file: Path):
    message = one_problem(config_file, "pipeline.name=Chicago_Taxi")
    assert message.startswith("pipeline.name: 'Chicago_Taxi' is not a valid name")
    assert "Kubeflow" in message


def test_missing_data_folder(config_file: Path):
    message = one_problem(config_file, "data.input_base=nowhere")
    assert message.startswith("data.input_base: folder not found: ")
    assert message.endswith("nowhere")


def test_no_file_for_the_requested_span(config_file: Path):
    message = one_problem(config_file, "data.span=7")
    assert message.startswith("data.span_pattern: no file for span 7 matches ")


def test_span_pattern_needs_a_span_placeholder(config_file: Path):
    assert "must contain {SPAN}" in one_problem(config_file, "data.span_pattern=all/*.csv")


def test_missing_schema_file(config_file: Path):
    message = one_problem(config_file, "data.schema_path=schema.pbtxt")
    assert message.startswith("data.schema_path: file not found: ")


def test_a_curated_schema_with_every_declared_column_loads(config_file: Path):
    config = load_config(config_file, [write_curated_schema(config_file)])
    assert config.data.schema_path == str(config_file.parent / "schema.pbtxt")


def test_curated_schema_that_is_not_a_schema(config_file: Path):
    (config_file.parent / "schema.pbtxt").write_text('feature { name: "fare" kind: FLOAT }\n')
    message = one_problem(config_file, "data.schema_path=schema.pbtxt")
    assert message.startswith("data.schema_path: ")
    assert "schema.pbtxt is not a schema in text format: line 1:" in message
    assert '"kind"' in message


def test_curated_schema_without_a_declared_column(config_file: Path):
    message = one_problem(config_file, write_curated_schema(config_file, leave_out="trip_miles"))
    assert message.endswith("schema.pbtxt has no feature 'trip_miles' (declared numeric)")


def test_curated_schema_without_the_label(config_file: Path):
    message = one_problem(config_file, write_curated_schema(config_file, leave_out="tips"))
    assert message.endswith("schema.pbtxt has no feature 'tips' (the label)")


def test_curated_schema_typing_a_numeric_column_as_text(config_file: Path):
    message = one_problem(config_file, write_curated_schema(config_file, text_typed="fare"))
    assert message.endswith("types 'fare' as BYTES, but it is declared numeric: "
                            "INT or FLOAT needed")


def test_lower_bound_above_upper_bound(config_file: Path):
    message = one_problem(config_file, "evaluation.thresholds=[{metric: AUC, lower_bound: 0.9, "
                                       "upper_bound: 0.8}]")
    assert message == "evaluation.thresholds[0]: lower_bound 0.9 is above upper_bound 0.8"


def test_bound_outside_the_range_of_a_bounded_metric(config_file: Path):
    message = one_problem(config_file, "evaluation.thresholds=[{metric: BinaryAccuracy, "
                                       "lower_bound: 80}]")
    assert message == ("evaluation.thresholds[0]: lower_bound 80.0 is outside [0, 1], the range "
                       "of BinaryAccuracy")


def test_negative_regression_allowance(config_file: Path):
    message = one_problem(config_file,
                          "evaluation.thresholds=[{metric: AUC, max_regression: -0.1}]")
    assert message.startswith("evaluation.thresholds[0].max_regression: ")


def test_metric_that_does_not_fit_the_task(config_file: Path):
    message = one_problem(config_file, "evaluation.thresholds=[{metric: MeanSquaredError, "
                                       "upper_bound: 3}]")
    assert "metric 'MeanSquaredError' does not fit task binary_classification" in message


def test_threshold_without_any_bound(config_file: Path):
    message = one_problem(config_file, "evaluation.thresholds=[{metric: AUC, "
                                       "max_regression: null}]")
    assert message == ("evaluation.thresholds[0]: set lower_bound, upper_bound or "
                       "max_regression")


def test_binary_label_needs_a_positive_rule(config_file: Path):
    message = one_problem(config_file, "label.positive_above=null")
    assert message.startswith("label: binary_classification needs exactly one of")


def test_label_cannot_be_a_feature(config_file: Path):
    message = one_problem(config_file, "features.numeric=[fare, tips]")
    assert "label.column 'tips' is also declared as a feature" in message


def test_feature_declared_twice(config_file: Path):
    message = one_problem(config_file, "features.categorical=[fare]")
    assert message == "features: features declared more than once: fare"


def test_slice_on_an_undeclared_feature(config_file: Path):
    assert "evaluation.slices names undeclared features: ['colour']" in one_problem(
        config_file, "evaluation.slices=[colour]")


def test_five_field_cron_is_refused_with_the_kubeflow_format(config_file: Path):
    message = one_problem(config_file, "schedule.cron=0 2 * * *")
    assert "has five fields, like a crontab line, but Kubeflow's cron has six fields, " \
        "seconds first" in message
    assert "as six fields: '0 0 2 * * *'" in message


def test_a_cron_value_out_of_range_is_refused_at_load(config_file: Path):
    """The same grammar as the server's parser: caught by check-config, not by the
    API server when the schedule is created."""
    assert one_problem(config_file, "schedule.cron=0 0 25 * * *").startswith(
        "schedule.cron: invalid cron '0 0 25 * * *': hour field '25': 25 is above the "
        "maximum 23")
    assert one_problem(config_file, "schedule.max_concurrency=11").startswith(
        "schedule.max_concurrency: ")


def test_several_problems_are_reported_together(config_file: Path):
    found = problems(config_file, "training.train_steps=x", "serving.model_nam=y")
    assert len(found) == 2


def test_override_must_be_key_equals_value(config_file: Path):
    assert one_problem(config_file, "training.train_steps") == (
        "override 'training.train_steps' is not KEY=VALUE (e.g. training.train_steps=50)")


def test_overrides_from_the_command_line_are_typed_as_yaml(config_file: Path):
    config = load_config(config_file, ["training.train_steps=50",
                                       "training.hidden_units=[8, 4]"])
    assert config.training.train_steps == 50
    assert config.training.hidden_units == [8, 4]


def test_overrides_from_the_environment(config_file: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLOPS__TRAINING__LEARNING_RATE", "0.5")
    assert load_config(config_file).training.learning_rate == 0.5
    assert load_config(config_file, use_env=False).training.learning_rate == 0.001


def test_env_override_names_map_to_key_paths():
    assert env_overrides({"MLOPS__DATA__SPAN": "2", "HOME": "/root"}) == ["data.span=2"]


def test_missing_config_file(tmp_path: Path):
    assert problems(tmp_path / "absent.yaml")[0].startswith("config file not found")


def test_config_that_is_not_yaml(tmp_path: Path):
    path = tmp_path / "broken.yaml"
    path.write_text("pipeline: [unclosed\n")
    assert problems(path)[0].startswith("not valid YAML")


def test_error_text_lists_the_file_and_each_problem(config_file: Path):
    with pytest.raises(ConfigError) as caught:
        load_config(config_file, ["training.train_steps=x"])
    text = str(caught.value)
    assert text.splitlines()[0] == f"Invalid configuration in {config_file}:"
    assert text.splitlines()[1].startswith("  - training.train_steps:")


def test_a_value_fitting_no_alternative_gets_one_line(config_file: Path):
    message = one_problem(config_file, "data.span=newest")
    assert message.startswith("data.span: Input should be 'latest' (got 'newest'); or: ")
    assert "valid integer" in message


def test_training_window_must_hold_at_least_one_span(config_file: Path):
    message = one_problem(config_file, "data.train_spans=0")
    assert message.startswith("data.train_spans:") and "greater than 0" in message
    assert load_config(config_file, ["data.train_spans=3"]).data.train_spans == 3


# --- profiles: what differs per runner -------------------------------------------------

def test_the_kubeflow_profile_is_laid_over_the_file_with_the_pods_paths(config_file: Path):
    local = load_config(config_file)
    kubeflow = load_config(config_file, profile="kubeflow")
    assert (local.profile, kubeflow.profile) == ("local", "kubeflow")
    assert kubeflow.pipeline.root == "gs://mlops-example/chicago-taxi/pipeline_root"
    assert kubeflow.serving_model_dir == "/mnt/serving/chicago-taxi"
    assert kubeflow.pipeline.enable_cache is False and local.pipeline.enable_cache is True
    # stated once, the same under both
    assert kubeflow.training == local.training and kubeflow.features == local.features
    # the package is written on this machine, whatever the profile
    assert kubeflow.kubeflow.output_file == local.kubeflow.output_file
    assert kubeflow.kubeflow.output_file.startswith(str(config_file.parent))


def test_relative_paths_of_the_kubeflow_profile_are_inside_the_image(config_file: Path):
    config = load_config(config_file, ["profiles.kubeflow.data.input_base=data/taxi",
                                       "kubeflow.project_dir=/srv/project"],
                         profile="kubeflow")
    assert config.data.input_base == "/srv/project/data/taxi"


def test_an_explicit_override_wins_over_the_profile(config_file: Path):
    config = load_config(config_file, ["pipeline.enable_cache=true"], profile="kubeflow")
    assert config.pipeline.enable_cache is True


def test_the_kubeflow_profile_does_not_check_local_files(config_file: Path):
    """Its data is in a bucket or on a volume only the pods see."""
    config = load_config(config_file, ["profiles.kubeflow.data.input_base=/mnt/data/taxi"],
                         profile="kubeflow")
    assert config.data.input_base == "/mnt/data/taxi"


def test_a_mistake_in_a_profile_names_the_key_and_the_profile(config_file: Path):
    with pytest.raises(ConfigError) as caught:
        load_config(config_file, ["profiles.kubeflow.pipeline.enable_cahe=false"],
                    profile="kubeflow")
    assert caught.value.problems == [
        "pipeline.enable_cahe: unknown key (did you mean 'enable_cache'?)"]
    assert caught.value.source.endswith("(profile kubeflow)")


def test_an_unknown_profile_is_refused(config_file: Path):
    assert one_problem(config_file, "profiles.vertex={pipeline: {root: x}}") == (
        "profiles.vertex: unknown profile; choose local or kubeflow")


def test_volume_mounts_need_absolute_distinct_paths(config_file: Path):
    relative = one_problem(config_file, "kubeflow.volumes=[{claim: a, mount_path: mnt/a}]")
    assert relative.startswith("kubeflow.volumes[0].mount_path: ")
    twice = one_problem(config_file, "kubeflow.volumes=[{claim: a, mount_path: /mnt/a}, "
                                     "{claim: b, mount_path: /mnt/a/}]")
    assert twice == "kubeflow: volumes mount more than one claim at /mnt/a"


def test_env_and_secrets_for_the_kubeflow_pods(config_file: Path):
    config = load_config(config_file, [
        "kubeflow.env={AWS_ENDPOINT_URL: 'http://minio-service.kubeflow:9000'}",
        "kubeflow.secrets=[{secret: mlpipeline-minio-artifact, env: {AWS_ACCESS_KEY_ID: "
        "accesskey}}, {secret: gcs.key, mount_path: /secrets/gcs, components: [Trainer]}]"])
    assert config.kubeflow.env == {"AWS_ENDPOINT_URL": "http://minio-service.kubeflow:9000"}
    minio, gcs = config.kubeflow.secrets
    assert (minio.env, minio.mount_path, minio.components) == (
        {"AWS_ACCESS_KEY_ID": "accesskey"}, None, None)
    assert (gcs.secret, gcs.env, gcs.mount_path, gcs.components) == (
        "gcs.key", {}, "/secrets/gcs", ["Trainer"])


def test_env_variable_names_are_checked(config_file: Path):
    assert one_problem(config_file, "kubeflow.env={1_BAD: x}") == (
        "kubeflow.env: '1_BAD' is not a valid environment variable name: use letters, "
        "digits and '_', not starting with a digit")
    assert one_problem(config_file, "kubeflow.env={PORT: 9000}").startswith(
        "kubeflow.env.PORT: Input should be a valid string")


SECRET = "{secret: s, env: {A: k}}"


@pytest.mark.parametrize("secrets, problem", [
    ("[{secret: My_Secret, env: {A: k}}]",
     "kubeflow.secrets[0].secret: not a Kubernetes Secret name: lowercase letters, digits, "
     "'-' and '.', a letter or digit at each end, at most 253 characters (got 'My_Secret')"),
    (f"[{SECRET}, {{secret: t}}]",
     "kubeflow.secrets[1]: give env (environment variable: secret key) and/or mount_path "
     "(a folder for its keys as files) for Secret 't'"),
    (f"[{SECRET}, {{secret: t, mount_path: secrets/t}}]",
     "kubeflow.secrets[1].mount_path: must be an absolute path in the pod (starting with /, "
     "not / itself) (got 'secrets/t')"),
    ("[{secret: s, env: {AWS-KEY: k}}]",
     "kubeflow.secrets[0].env: 'AWS-KEY' is not a valid environment variable name: use "
     "letters, digits and '_', not starting with a digit"),
    ("[{secret: s, env: {A: 'a/b'}}]",
     "kubeflow.secrets[0].env.A: 'a/b' is not a key a Secret can have: letters, digits, "
     "'-', '_' and '.'"),
    (f"[{SECRET}, {{secret: t, mount_path: /mnt/serving/}}]",  # the repo's serving volume
     "kubeflow.secrets[1].mount_path: kubeflow.volumes[0] is mounted at /mnt/serving "
     "already"),
    ("[{secret: s, mount_path: /s}, {secret: t, mount_path: /s}]",
     "kubeflow.secrets[1].mount_path: kubeflow.secrets[0] is mounted at /s already"),
    ("[{secret: serving-models, mount_path: /s, components: [Pusher]}]",
     "kubeflow.secrets[0].secret: kubeflow.volumes[0] (claim serving-models) is mounted in "
     "the same pods, and KFP names each pod volume after its Secret or claim: two volumes "
     "named 'serving-models', which Kubernetes refuses"),
    (f"[{SECRET}, {{secret: t, env: {{A: k}}, components: [Trainer]}}]",
     "kubeflow.secrets[1].env: A is set by kubeflow.secrets[0] too, in the same containers"),
    ("[{secret: s, env: {A: k}, mountpath: /s}]",
     "kubeflow.secrets[0].mountpath: unknown key (did you mean 'mount_path'?)"),
])
def test_secret_mistakes_are_named_by_their_key(config_file: Path, secrets: str, problem: str):
    assert one_problem(config_file, f"kubeflow.secrets={secrets}") == problem


def test_a_secret_may_share_a_name_or_variable_with_others_in_other_pods(config_file: Path):
    config = load_config(config_file, [
        "kubeflow.env={B: x}",
        "kubeflow.secrets=[{secret: s, env: {A: k}, components: [Trainer]}, {secret: t, env: "
        "{A: k}, components: [Pusher]}, {secret: serving-models, mount_path: /s, components: "
        "[Trainer]}]"])
    assert [s.secret for s in config.kubeflow.secrets] == ["s", "t", "serving-models"]
    assert one_problem(config_file, "kubeflow.env={A: x}",
                       "kubeflow.secrets=[{secret: s, env: {A: k}, components: [Trainer]}]") == (
        "kubeflow.secrets[0].env: A is set by kubeflow.env too, in the same containers")
