"""`mlops versions / rollback / restore / label` on a serving directory, without a server.

Version folders here are stand-ins (the commands only read names and push manifests);
what is checked is the models.config they leave behind, read back with TF Serving's proto,
and the messages a person sees.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.definition.config import load_config
from serving import config_files, operations, server_files
from tests.conftest import mlops_in_process, write_config

NAME = "chicago-taxi"


@pytest.fixture
def config_file(workspace: Path) -> Path:
    path = write_config(workspace, {"serving.rest_api_port": 1})  # nothing listens there
    config = load_config(path, check_files=False).serving_settings()
    for version in (1, 2, 3):
        extra = Path(config.serving_model_dir) / str(version) / "assets.extra"
        extra.mkdir(parents=True)
        (extra / "push_manifest.json").write_text(json.dumps(
            {"pushed_at": f"2026-11-0{version}T10:00:00+00:00", "model_uri": f"run/{version}"}))
    server_files.write_server_files(config)
    return path


def model_config(config_file: Path):
    config = load_config(config_file, check_files=False).serving_settings()
    models = config_files.read_model_server_config(server_files.models_config_path(config))
    (model,) = models.model_config_list.config
    return model


def test_serve_files_are_written_once_and_keep_their_policy(config_file: Path):
    config = load_config(config_file, check_files=False).serving_settings()
    model = model_config(config_file)
    assert model.name == NAME and model.base_path == config.serving_model_dir
    assert model.model_version_policy.latest.num_versions == 1
    operations.rollback(config)
    files = server_files.write_server_files(config)  # `mlops serve` again: rollback kept
    assert model_config(config_file).model_version_policy.specific.versions == [2]
    assert "max_batch_size { value: 32 }" in files.batching_parameters.read_text()
    assert config_files.prometheus_path(str(files.monitoring_config)) == \
        "/monitoring/prometheus/metrics"


def test_rollback_restore_cycle(config_file: Path):
    config = load_config(config_file, check_files=False).serving_settings()
    change = operations.rollback(config)
    assert change.version == 2
    assert "serving version 2 instead of 3" in change.message
    assert list(model_config(config_file).model_version_policy.specific.versions) == [2]
    assert operations.rollback(config).version == 1  # again: one further back
    with pytest.raises(operations.OperationError, match="version 1 is the oldest"):
        operations.rollback(config)
    with pytest.raises(operations.OperationError,
                       match=r"version 7 is not in .*versions there: 1, 2, 3"):
        operations.rollback(config, to=7)
    assert operations.restore(config).version == 3
    assert model_config(config_file).model_version_policy.latest.num_versions == 1


def test_labels_stay_on_served_versions(config_file: Path):
    config = load_config(config_file, check_files=False).serving_settings()
    message = operations.set_label(config, "stable", 2)
    model = model_config(config_file)
    assert dict(model.version_labels) == {"stable": 2}
    assert sorted(model.model_version_policy.specific.versions) == [2, 3]
    assert "now serving versions 2, 3" in message
    operations.set_label(config, "canary", 3)
    assert dict(model_config(config_file).version_labels) == {"stable": 2, "canary": 3}
    change = operations.rollback(config, to=1)  # labels on versions no longer served go
    assert "Labels removed: canary, stable" in change.message or \
        "Labels removed: stable, canary" in change.message
    assert dict(model_config(config_file).version_labels) == {}
    with pytest.raises(operations.OperationError, match="has no label 'stable'"):
        operations.remove_label(config, "stable")
    with pytest.raises(operations.OperationError, match="version 9 is not in"):
        operations.set_label(config, "stable", 9)


def test_versions_lists_disk_policy_and_manifest(config_file: Path):
    config = load_config(config_file, check_files=False).serving_settings()
    listing = operations.list_versions(config)
    assert listing.policy == "latest 1" and listing.server_url is None
    assert [(r.version, r.aspired, r.state) for r in listing.rows] == [
        (3, True, None), (2, False, None), (1, False, None)]
    assert listing.rows[0].pushed_at.startswith("2026-11-03")


def test_cli_verbs(config_file: Path):
    result = mlops_in_process("rollback", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert "serving version 2 instead of 3" in result.stdout
    result = mlops_in_process("versions", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert "policy: specific 2" in result.stdout and "no server answers" in result.stdout
    result = mlops_in_process("label", "stable", "--config", str(config_file))
    assert result.returncode == 2 and "give a VERSION, or --remove" in result.stderr
    result = mlops_in_process("rollback", "--to", "12", "--config", str(config_file))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: version 12 is not in" in result.stderr
    result = mlops_in_process("restore", "--config", str(config_file))
    assert result.returncode == 0 and "serving version 3" in result.stdout
    result = mlops_in_process("predict", "--json", "nope.json", "--config", str(config_file))
    assert result.returncode == 1 and "nope.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_deploy_files_are_current():
    result = mlops_in_process("deploy-files", "--check")
    assert result.returncode == 0, result.stderr


def test_serve_passes_the_rest_ports_limits_to_the_embedded_server_only(workspace: Path):
    from serving import flags

    path = write_config(workspace, {"serving.max_request_bytes": 5000,
                                    "serving.rest_read_timeout_seconds": 2.5,
                                    "serving.rest_idle_timeout_seconds": 0,
                                    "serving.rest_max_connections": 77,
                                    "serving.rest_api_workers": 3})
    config = load_config(path, check_files=False).serving_settings()
    files = server_files.write_server_files(config)
    embedded = server_files.server_command(config, files, "python")
    options, _ = flags.parse(embedded[3:])
    assert (options.max_request_bytes, options.rest_read_timeout_seconds,
            options.rest_idle_timeout_seconds, options.rest_max_connections,
            options.rest_api_workers) == (5000, 2.5, 0, 77, 3)
    real = server_files.server_command(config, files, "python", "/bin/tensorflow_model_server")
    assert not [flag for flag in real if flag.startswith(("--rest_read", "--rest_idle",
                                                          "--rest_max", "--max_request",
                                                          "--rest_api_workers",
                                                          "--host"))]


def test_serve_passes_the_thread_flags_to_both_servers_only_when_set(workspace: Path):
    from pipeline.definition.config import ConfigError
    from serving import flags

    path = write_config(workspace, {"serving.tensorflow_intra_op_parallelism": 3})
    config = load_config(path, check_files=False).serving_settings()
    files = server_files.write_server_files(config)
    options, _ = flags.parse(server_files.server_command(config, files, "python")[3:])
    assert options.session_threads() == (3, 0)  # the inter-op pool left to the server
    real = server_files.server_command(config, files, "python", "/bin/tensorflow_model_server")
    assert {"--tensorflow_intra_op_parallelism=3",
            "--tensorflow_inter_op_parallelism=0"} <= set(real)
    unset = load_config(write_config(workspace), check_files=False).serving_settings()
    assert not [flag for flag in server_files.server_command(unset, files, "python", "/b/t")
                if "parallelism" in flag]
    with pytest.raises(ConfigError, match="tensorflow_inter_op_parallelism"):
        load_config(write_config(workspace, {"serving.tensorflow_inter_op_parallelism": -1}),
                    check_files=False)


def test_a_waiter_asks_until_every_rest_process_serves_the_version(monkeypatch):
    """With REST workers each process loads a version on its own, and each status
    request lands on any of them: here two, answering in turn, the second loading version
    2 only at its fifth answer. One process: the first AVAILABLE is enough; two: the
    waiter goes on until both say so, many times in a row."""
    from serving import operations

    calls = []

    def status(url, name, **options):
        calls.append(1)
        second_has_it = len(calls) >= 10  # its fifth answer
        first = len(calls) % 2 == 1
        state = "AVAILABLE" if first or second_has_it else "LOADING"
        return {2: {"state": state}}

    monkeypatch.setattr(operations, "server_status", status)
    monkeypatch.setattr(operations.time, "sleep", lambda seconds: None)
    assert operations.waiter("http://x", "m")(2) is True
    assert len(calls) == 1
    calls.clear()
    assert operations.waiter("http://x", "m", processes=2)(2) is True
    # the second's last LOADING is the 8th answer; from the 9th on, every one is AVAILABLE
    assert len(calls) == 8 + operations.CONFIRMATIONS_PER_PROCESS * 2
    calls.clear()
    gone = operations.unload_waiter("http://x", "m", processes=2, timeout_s=0.5)
    assert gone(2) is False  # the first process keeps serving it: not gone everywhere
