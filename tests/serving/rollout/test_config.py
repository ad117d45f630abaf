"""`serving.rollout` in the config, the embedded server's `--rollout_*` flags and the
policy: one set of keys, carried from the file to the server's command line."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipeline.definition.config import ConfigError, load_config
from serving import flags, server_files
from serving.options import ServerOptions
from serving.rollout.policy import RolloutPolicy
from serving.settings import RolloutSection
from tests.conftest import mlops, write_config
from tests.serving.conftest import fake_real_server

ROLLOUT = {"serving.rollout.enabled": True, "serving.rollout.steps": [5, 50],
           "serving.rollout.interval_seconds": 30, "serving.rollout.min_labelled": 200}


def test_the_config_the_flags_and_the_policy_have_the_same_keys():
    keys = {field.name for field in dataclasses.fields(RolloutPolicy)}
    assert set(RolloutSection.model_fields) == keys
    assert {field.name[len("rollout_"):] for field in dataclasses.fields(ServerOptions)
            if field.name.startswith("rollout_")} == keys - {"enabled"}


def test_the_config_s_rollout_reaches_the_embedded_server_s_command_line(tmp_path: Path):
    config = load_config(write_config(tmp_path, ROLLOUT), check_files=False)
    settings = config.serving_settings()
    files = server_files.write_server_files(settings)
    embedded = server_files.server_command(settings, files, "python")
    options, _ = flags.parse(embedded[3:])
    assert options.rollout_policy() == settings.serving.rollout.policy()
    assert options.rollout_policy().steps == (5.0, 50.0)
    real = server_files.server_command(settings, files, "python", "/bin/tensorflow_model_server")
    assert not [flag for flag in real if flag.startswith("--rollout")]


def test_an_impossible_rollout_is_a_config_error_naming_its_key(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, {"serving.rollout.steps": [50, 10],
                                            "serving.rollout.confidence": 1.5}),
                    check_files=False)
    message = str(caught.value)
    assert "serving.rollout" in message and "steps must be rising" in message
    assert "confidence must be at least 0.5" in message


def test_the_server_refuses_a_rollout_without_a_models_config_it_may_edit():
    with pytest.raises(SystemExit):
        flags.parse(["--model_base_path=/m", "--rollout"])


def test_serve_refuses_a_rollout_with_the_real_server(tmp_path: Path):
    config_file = write_config(tmp_path, ROLLOUT)
    fake, env = fake_real_server(tmp_path)
    result = mlops("serve", "--config", str(config_file), env=env)
    assert result.returncode == 2 and "started" not in result.stdout
    assert result.stderr.strip() == (
        f"error: serving.rollout.enabled is set, but {fake} has no traffic split to roll "
        "out with: use `mlops serve --embedded`, or unset it")
