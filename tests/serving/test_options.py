"""The server's options where they meet the REST workers: bounds, and the refusals that
name the flag or config key (`--rest_api_workers`, `serving.rest_api_workers`)."""
from __future__ import annotations

import pytest

from serving.errors import Code, ServingError
from serving.options import MAX_REST_API_WORKERS, ServerOptions


@pytest.mark.parametrize("workers", [0, -1, MAX_REST_API_WORKERS + 1])
def test_the_number_of_rest_workers_is_bounded(workers):
    with pytest.raises(ServingError, match=f"--rest_api_workers must be between 1 and "
                                           f"{MAX_REST_API_WORKERS}, not {workers}"):
        ServerOptions(model_base_path="m", rest_api_workers=workers)


def test_a_rollout_needs_one_process(tmp_path):
    with pytest.raises(ServingError, match="--rollout needs --rest_api_workers=1"):
        ServerOptions(model_config_file=str(tmp_path / "models.config"), rollout=True,
                      rest_api_workers=2)


def test_the_config_refuses_a_rollout_over_several_processes(workspace):
    from pipeline.definition.config import ConfigError, load_config
    from tests.conftest import write_config

    path = write_config(workspace, {"serving.rollout.enabled": True,
                                    "serving.rest_api_workers": 2})
    with pytest.raises(ConfigError, match="rollout.enabled needs rest_api_workers: 1"):
        load_config(path, check_files=False)


def test_workers_in_a_process_that_cannot_share_its_metrics_are_refused():
    """An embedding program (or a test) that imported prometheus_client without
    PROMETHEUS_MULTIPROC_DIR cannot run workers: said before anything starts."""
    from serving.server import ModelServer

    with pytest.raises(ServingError, match="needs the server's own process") as raised:
        ModelServer(ServerOptions(model_base_path="m", rest_api_workers=2))
    assert raised.value.code is Code.FAILED_PRECONDITION

