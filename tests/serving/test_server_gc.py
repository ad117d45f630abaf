"""The cyclic collector while the embedded server runs (`serving.server.GC_YOUNG_THRESHOLD`).

Under load the requests in flight hold more container objects than CPython's young
threshold (700), so at the default a young collection ran every twenty-odd requests and
found nothing to free; the server raises the threshold while it runs and gives the
process its own back when the last server in it stops.
"""
from __future__ import annotations

import asyncio
import gc

import httpx
import pytest

from serving import server as server_module
from tests.serving.conftest import MODEL_NAME, ROWS

pytestmark = pytest.mark.slow

PREDICT = f"/v1/models/{MODEL_NAME}:predict"
CLIENTS, REQUESTS_EACH = 32, 40


def young_collections_during_load(rest_url: str) -> tuple[int, int]:
    """(young collections, answered requests) while CLIENTS concurrent clients send
    REQUESTS_EACH requests each."""
    started = []

    def count(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 0:
            started.append(1)

    async def load() -> int:
        async with httpx.AsyncClient(base_url=rest_url, timeout=60) as client:
            async def one_client() -> int:
                answered = 0
                for _ in range(REQUESTS_EACH):
                    answer = await client.post(PREDICT, json={"instances": ROWS[:1]})
                    answered += answer.status_code == 200
                return answered
            return sum(await asyncio.gather(*[one_client() for _ in range(CLIENTS)]))

    gc.callbacks.append(count)
    try:
        answered = asyncio.run(load())
    finally:
        gc.callbacks.remove(count)
    return len(started), answered


def test_a_load_runs_a_tenth_of_the_young_collections_it_ran_at_cpythons_default(
        start_server, base_path, monkeypatch):
    """The same load on a server at CPython's threshold, then on one at the server's
    (the client runs in this process too, so its objects count as well)."""
    counts = {}
    for name, threshold in (("default", 700),
                            ("server's", server_module.GC_YOUNG_THRESHOLD)):
        monkeypatch.setattr(server_module, "GC_YOUNG_THRESHOLD", threshold)
        running = start_server(model_name=MODEL_NAME, model_base_path=str(base_path))
        counts[name], answered = young_collections_during_load(running.rest_url)
        running.stop()
        assert answered == CLIENTS * REQUESTS_EACH
    assert counts["default"] >= 20, counts  # the load holds more than 700 objects at a time
    assert counts["server's"] * 10 <= counts["default"], counts


def test_the_threshold_is_the_processs_own_again_once_every_server_stopped(start_server,
                                                                          base_path):
    before = gc.get_threshold()
    first = start_server(model_name=MODEL_NAME, model_base_path=str(base_path))
    second = start_server(model_name=MODEL_NAME, model_base_path=str(base_path))
    assert gc.get_threshold()[0] == server_module.GC_YOUNG_THRESHOLD
    first.stop()
    assert gc.get_threshold()[0] == server_module.GC_YOUNG_THRESHOLD  # one still runs
    second.stop()
    assert gc.get_threshold() == before
