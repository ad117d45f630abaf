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



@pytest.mark.parametrize("flags, workers, cores, threads", [
    ({}, 1, 8, (0, 0)),  # TensorFlow's own choice, as tensorflow_model_server's default
    ({}, 2, 8, (4, 4)),  # the cores divided among the REST processes
    ({}, 3, 8, (2, 2)),
    ({}, 4, 2, (1, 1)),  # at least one each
    ({"tensorflow_session_parallelism": 3}, 2, 8, (3, 3)),
    ({"tensorflow_intra_op_parallelism": 2}, 1, 8, (2, 0)),  # the other stays automatic
    ({"tensorflow_inter_op_parallelism": 5, "tensorflow_session_parallelism": 3}, 1, 8,
     (0, 5)),  # either of the two wins over the session flag (server.cc)
])
def test_session_threads_follow_tensorflow_model_servers_precedence(
        monkeypatch, flags, workers, cores, threads):
    monkeypatch.setattr("serving.process.usable_cores", lambda: cores)
    options = ServerOptions(model_base_path="m", rest_api_workers=workers, **flags)
    assert options.session_threads() == threads


def test_all_three_thread_flags_are_refused_as_tensorflow_model_server_does():
    with pytest.raises(ServingError, match="Either configure --tensorflow_session_parallelism "
                                           "or .* You cannot configure all"):
        ServerOptions(model_base_path="m", tensorflow_session_parallelism=1,
                      tensorflow_intra_op_parallelism=1, tensorflow_inter_op_parallelism=1)
    with pytest.raises(ServingError, match="--tensorflow_inter_op_parallelism must not be "
                                           "negative"):
        ServerOptions(model_base_path="m", tensorflow_inter_op_parallelism=-1)


def test_each_rest_worker_gets_the_primarys_share_of_the_cores(monkeypatch):
    """Workers run with rest_api_workers=1, so they are handed the numbers resolved for N
    processes, not left to resolve them as one process would (all the cores)."""
    from serving.workers import WorkerPool

    monkeypatch.setattr("serving.process.usable_cores", lambda: 4)
    pool = WorkerPool(ServerOptions(model_base_path="m", rest_api_workers=2), rest_port=1)
    assert pool.worker_options.rest_api_workers == 1
    assert pool.worker_options.session_threads() == (2, 2)
    flags = ServerOptions(model_base_path="m", rest_api_workers=2,
                          tensorflow_session_parallelism=3)
    assert WorkerPool(flags, rest_port=1).worker_options.session_threads() == (3, 3)


def test_the_server_loads_its_versions_with_the_resolved_threads(monkeypatch):
    from serving import server

    asked = []
    monkeypatch.setattr(server, "load_servable",
                        lambda warmup, threads: asked.append(threads) or (lambda *a: None))
    server.ModelServer(ServerOptions(model_base_path="m", tensorflow_session_parallelism=3))
    assert asked == [(3, 3)]
