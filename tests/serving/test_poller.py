"""The server's poller on the pipeline's model: pushes noticed between polls, polling off
honoured, and an unloaded version's memory given back."""
from __future__ import annotations

import time
import weakref
from pathlib import Path

from tests.serving.conftest import MODEL_NAME, RunningServer, add_version, wait_for

LONG_INTERVAL_S = 600  # no regular poll happens within a test


def states(server: RunningServer) -> dict[int, str]:
    return {s.version: s.state.name for s in server.server.repository.status(MODEL_NAME)}


def test_a_push_is_loaded_without_waiting_for_the_poll_interval(
        start_server, base_path: Path, pipeline_model: Path) -> None:
    server = start_server(model_name=MODEL_NAME, model_base_path=str(base_path),
                          file_system_poll_wait_seconds=LONG_INTERVAL_S)
    assert states(server) == {1: "AVAILABLE"}
    add_version(base_path, pipeline_model, 2)
    # well before the interval: only the listing check between polls can have seen it
    wait_for(lambda: states(server) == {2: "AVAILABLE", 1: "END"}, "version 2 to take over")


def test_polling_off_loads_nothing_after_start(start_server, base_path: Path,
                                               pipeline_model: Path) -> None:
    server = start_server(model_name=MODEL_NAME, model_base_path=str(base_path),
                          file_system_poll_wait_seconds=0)
    add_version(base_path, pipeline_model, 2)
    time.sleep(1.0)  # ten listing checks' worth, had they been on
    assert states(server) == {1: "AVAILABLE"}


def test_an_unloaded_version_is_freed(start_server, base_path: Path,
                                      pipeline_model: Path) -> None:
    server = start_server(model_name=MODEL_NAME, model_base_path=str(base_path),
                          file_system_poll_wait_seconds=LONG_INTERVAL_S)
    # the graph, not the Servable: the graph's reference cycles are what only the
    # collector frees, and what a frozen heap would keep for ever
    first = weakref.ref(server.server.repository.resolve(MODEL_NAME, 1)._graph)
    add_version(base_path, pipeline_model, 2)
    wait_for(lambda: states(server).get(1) == "END", "version 1 to unload")
    # the server unfreezes and collects a second after the unload
    wait_for(lambda: first() is None, "version 1's graph to be freed", timeout=30)
