"""TF Serving's configuration files (``serving.config_files``), without a server or a model.

``models.config`` round trips through the tensorflow-serving-api proto and is checked as
``tensorflow_model_server`` checks it; the batching and monitoring files parse with TF
Serving's field names and fall back to its defaults.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from serving import config_files
from serving.config_files import BatchingParameters, ModelServerConfig
from serving.errors import Code, ServingError

REPO = Path(__file__).resolve().parents[2]


def refused(call, *args) -> str:
    with pytest.raises(ServingError) as caught:
        call(*args)
    assert caught.value.code is Code.INVALID_ARGUMENT
    return caught.value.message


def two_versions_config(base_path: str = "/models/taxi") -> ModelServerConfig:
    config = ModelServerConfig()
    model = config.model_config_list.config.add(name="taxi", base_path=base_path,
                                                model_platform="tensorflow")
    model.model_version_policy.specific.versions.extend([3, 4])
    model.version_labels["stable"] = 3
    model.version_labels["canary"] = 4
    return config


# --- models.config -------------------------------------------------------------------

def test_models_config_round_trip(tmp_path):
    path = tmp_path / "nested" / "models.config"
    config_files.write_model_server_config(two_versions_config(), path)
    assert config_files.read_model_server_config(path) == two_versions_config()
    assert [p.name for p in path.parent.iterdir()] == ["models.config"]  # no staging left
    text = path.read_text()
    assert 'name: "taxi"' in text and 'key: "canary"' in text and "versions: 4" in text


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "models.config"
    config_files.write_model_server_config(two_versions_config(), path)
    changed = two_versions_config()
    changed.model_config_list.config[0].model_version_policy.latest.num_versions = 2
    config_files.write_model_server_config(changed, path)
    read = config_files.read_model_server_config(path)
    assert read.model_config_list.config[0].model_version_policy.WhichOneof(
        "policy_choice") == "latest"


def test_reads_the_documented_text_format(tmp_path):
    path = tmp_path / "models.config"
    path.write_text("""
        model_config_list {
          config {
            name: "taxi"
            base_path: "/models/taxi"
            model_platform: "tensorflow"
            model_version_policy { specific { versions: 3 versions: 4 } }
            version_labels { key: "stable" value: 3 }
            version_labels { key: "canary" value: 4 }
          }
          config { name: "other" base_path: "gs://bucket/other" }
        }
    """)
    config = config_files.read_model_server_config(path)
    taxi, other = config.model_config_list.config
    assert list(taxi.model_version_policy.specific.versions) == [3, 4]
    assert dict(taxi.version_labels) == {"stable": 3, "canary": 4}
    assert other.base_path == "gs://bucket/other"  # a URI is absolute


def test_relative_base_path_is_refused_naming_the_model(tmp_path):
    path = tmp_path / "models.config"
    config_files.write_model_server_config(two_versions_config("models/taxi"), path)
    message = refused(config_files.read_model_server_config, path)
    assert "'taxi'" in message and "base_path must be absolute" in message
    assert "'models/taxi'" in message and str(path) in message


def test_duplicate_model_is_refused(tmp_path):
    config = two_versions_config()
    config.model_config_list.config.add(name="taxi", base_path="/elsewhere")
    message = refused(config_files.parse_model_server_config,
                      config_files.model_server_config_text(config), "models.config")
    assert "'taxi' is configured twice" in message


@pytest.mark.parametrize("text, expected", [
    ('model_config_list { config { base_path: "/m" } }', "needs a name and a base_path"),
    ('model_config_list { config { name: "m" } }', "needs a name and a base_path"),
    ('model_config_list { config { name: "m" base_path: "/m" model_platform: "pytorch" } }',
     "platform 'pytorch' is not supported"),
    ('custom_model_config { type_url: "x" }', "expected a model_config_list"),
    ("model_config_list { config { nmae: \"m\" } }", "nmae"),
    ("model_config_list {", "models.config"),
])
def test_bad_models_config_is_refused(text, expected):
    assert expected in refused(config_files.parse_model_server_config, text, "models.config")


def test_unreadable_models_config(tmp_path):
    missing = tmp_path / "absent.config"
    message = refused(config_files.read_model_server_config, missing)
    assert "cannot read" in message and str(missing) in message


def test_single_model_config_serves_the_latest_version():
    config = config_files.single_model_config("taxi", "/models/taxi")
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == (
        "taxi", "/models/taxi", "tensorflow")
    assert model.model_version_policy.WhichOneof("policy_choice") is None  # latest 1
    checked = config_files.parse_model_server_config(
        config_files.model_server_config_text(config), "flags")
    assert checked == config


# --- batching parameters ---------------------------------------------------------------

def test_batching_defaults_are_tf_servings():
    params = BatchingParameters.from_file(None)
    assert params == BatchingParameters()
    assert params.max_batch_size == 1000
    assert params.batch_timeout_micros == 0
    assert params.max_enqueued_batches == 10
    assert params.allowed_batch_sizes == ()
    assert params.enable_large_batch_splitting is False


def test_batching_file_sets_what_it_names(tmp_path):
    path = tmp_path / "batching_parameters.txt"
    path.write_text("""
        max_batch_size { value: 32 }
        batch_timeout_micros { value: 2000 }
        allowed_batch_sizes: 8
        allowed_batch_sizes: 32
        enable_large_batch_splitting { value: true }
        pad_variable_length_inputs: true
    """)
    params = BatchingParameters.from_file(str(path))
    assert params.max_batch_size == 32
    assert params.batch_timeout_micros == 2000
    assert params.allowed_batch_sizes == (8, 32)
    assert params.enable_large_batch_splitting is True
    defaults = BatchingParameters()
    assert params.max_enqueued_batches == defaults.max_enqueued_batches
    assert params.num_batch_threads == defaults.num_batch_threads


def test_batching_file_keeps_an_explicit_zero_timeout(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text("num_batch_threads { value: 7 } batch_timeout_micros { value: 0 }")
    params = BatchingParameters.from_file(str(path))
    assert (params.num_batch_threads, params.batch_timeout_micros) == (7, 0)


@pytest.mark.parametrize("text, expected", [
    ("max_batch_size { value: 0 }", "max_batch_size must be positive"),
    ("num_batch_threads { value: -1 }", "num_batch_threads must be positive"),
    ("max_enqueued_batches { value: 0 }", "max_enqueued_batches must be positive"),
    ("batch_timeout_micros { value: -5 }", "batch_timeout_micros must not be negative"),
    ("max_batch_size { value: 16 } allowed_batch_sizes: 8", "must increase and end with"),
    ("max_batch_size { value: 16 } allowed_batch_sizes: 16 allowed_batch_sizes: 8",
     "must increase and end with"),
    ("max_batch_size: 16", "max_batch_size"),  # needs the wrapper: { value: 16 }
    ("max_batch_sizes { value: 16 }", "max_batch_sizes"),
])
def test_bad_batching_files_are_refused(tmp_path, text, expected):
    path = tmp_path / "batching.txt"
    path.write_text(text)
    message = refused(BatchingParameters.from_file, str(path))
    assert expected in message and str(path) in message


# --- monitoring ----------------------------------------------------------------------------

def test_monitoring_path(tmp_path):
    path = tmp_path / "monitoring.config"
    assert config_files.prometheus_path(None) is None
    assert config_files.prometheus_path("") is None
    path.write_text('prometheus_config { enable: true path: "/metrics/here" }')
    assert config_files.prometheus_path(str(path)) == "/metrics/here"
    path.write_text("prometheus_config { enable: true }")
    assert config_files.prometheus_path(str(path)) == "/monitoring/prometheus/metrics"
    path.write_text('prometheus_config { enable: false path: "/metrics/here" }')
    assert config_files.prometheus_path(str(path)) is None


def test_bad_monitoring_file_is_refused(tmp_path):
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enabled: true }")
    assert "enabled" in refused(config_files.prometheus_path, str(path))
    assert "cannot read" in refused(config_files.prometheus_path, str(tmp_path / "none"))


# --- import weight -----------------------------------------------------------------------------

def test_config_and_json_modules_do_not_import_tensorflow():
    """Flags and config files are read (and refused) before TensorFlow loads."""
    code = ("import sys; import serving.config_files, serving.protocol.json_codec, "
            "serving.options; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow'))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=120, check=True)
    assert result.stdout.strip() == "[]", result.stdout
