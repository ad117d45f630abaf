"""A rollout seen from the data plane (stand-in versions, a real repository and split, no
server): the candidate's failures never reach the client, and every bare-URL request is
counted, and measured unless a busy window's share leaves it out, for the version that
answered."""
from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from serving.batching import Batcher
from serving.config_files import BatchingParameters, single_model_config
from serving.dataplane import DataPlane, ModelSpec, answering_version
from serving.errors import Code, ServingError, invalid_argument
from serving.labels import LabelFolder
from serving.repository import ModelRepository
from serving.rollout.window import Monitor
from serving.traffic import Router, Split
from tests.serving.stand_ins import StandInServable

CHAMPION, CANDIDATE = 1, 2


def refusing_below(candidate_limit: float, champion_limit: float):
    """`y = 2x + version` and class scores (1 when x > 0), each version refusing inputs
    below its limit as a graph's check would."""

    def load(name: str, version: int, path: str) -> StandInServable:
        bound = candidate_limit if version == CANDIDATE else champion_limit

        def outputs(inputs):
            x = np.asarray(inputs["x"], np.float32)
            if (x < bound).any():
                raise invalid_argument(f"version {version} refuses x < {bound:g}")
            positive = (x > 0).astype(np.float32)  # class 1 for a positive x
            return {"y": x * 2 + version, "scores": np.stack([1 - positive, positive], 1)}

        return StandInServable(name, version, path, outputs=outputs)

    return load


def serving_both(tmp_path: Path, load) -> ModelRepository:
    """A repository serving versions 1 and 2 of model `m`, labelled stable and canary."""
    for version in (CHAMPION, CANDIDATE):
        (tmp_path / "m" / str(version)).mkdir(parents=True)
    repository = ModelRepository(load)
    config = single_model_config("m", str(tmp_path / "m"))
    model = config.model_config_list.config[0]
    model.model_version_policy.all.SetInParent()
    model.version_labels["stable"] = CHAMPION
    model.version_labels["canary"] = CANDIDATE
    repository.apply_config(config)
    repository.poll()
    return repository


@pytest.fixture(params=["direct", "batched"])
def rollout(tmp_path: Path, request):
    """A data plane in a rollout of version 2 against 1; `weight` sets the candidate's share.
    Batched, the batcher reports what it answered to the monitor (as the server wires it),
    and every test's counts must come out the same as when each request is measured alone."""
    repository = serving_both(tmp_path, refusing_below(0.0, -100.0))
    monitor = Monitor()
    monitor.begin("m", CHAMPION, CANDIDATE)
    router = Router()
    executor = ThreadPoolExecutor(2)
    batcher = Batcher(BatchingParameters(max_batch_size=8, batch_timeout_micros=1000),
                      lambda servable, name, inputs: servable.run(name, inputs), executor,
                      on_answered=monitor.answered_batch) if request.param == "batched" else None
    plane = DataPlane(repository, executor, batcher, router=router, monitor=monitor,
                      labels=LabelFolder(str(tmp_path / "request_logs")))

    def with_weight(weight: float) -> DataPlane:
        router.update({"m": Split(weight)})
        return plane

    return with_weight, monitor


class SampledVersions:
    """Stands in for the request log: which version each sampled call ran on."""

    def __init__(self) -> None:
        self.versions: list[int] = []

    def sample(self, servable, signature, inputs, key=None) -> bool:
        self.versions.append(servable.version)
        return True


def ask(plane: DataPlane, x: float, **spec) -> tuple[float, int]:
    """(y, the version the adapters would report) for one request (`spec`: version,
    label or request_key)."""

    async def call():
        result = await plane.predict(ModelSpec("m", **spec),
                                     lambda signature: {"x": np.asarray([x], np.float32)})
        return float(result.outputs["y"][0]), answering_version.get()

    return asyncio.run(call())


def test_the_champion_answers_what_the_candidate_fails_and_the_candidate_is_blamed(rollout):
    with_weight, monitor = rollout
    plane = with_weight(100)
    assert ask(plane, 1.0) == (4.0, CANDIDATE)
    assert ask(plane, -1.0) == (-1.0, CHAMPION)  # refused by 2, answered by 1
    champion, candidate = monitor.take("m")
    assert (candidate.requests, candidate.failed, candidate.client_errors) == (2, 1, 0)
    assert len(candidate.latencies_s) == 1 and candidate.output_rows().tolist() == [[0.0, 1.0]]
    assert champion.requests == 0  # a fallback is not a measured champion request


def test_what_both_versions_refuse_gets_the_champion_s_error_and_blames_neither(rollout):
    with_weight, monitor = rollout
    with pytest.raises(ServingError) as caught:
        ask(with_weight(100), -1000.0)
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert "version 1 refuses" in caught.value.message
    _, candidate = monitor.take("m")
    assert (candidate.requests, candidate.failed, candidate.client_errors) == (1, 0, 1)


def test_the_champion_s_own_failures_are_the_client_s(rollout):
    with_weight, monitor = rollout
    plane = with_weight(0)
    assert ask(plane, 2.0) == (5.0, CHAMPION)
    with pytest.raises(ServingError):
        ask(plane, -1000.0)
    champion, candidate = monitor.take("m")
    assert (champion.requests, champion.failed, champion.client_errors) == (2, 0, 1)
    assert candidate.requests == 0


def test_a_request_naming_a_version_or_label_is_answered_as_asked_and_not_measured(rollout):
    with_weight, monitor = rollout
    plane = with_weight(100)
    with pytest.raises(ServingError) as caught:
        ask(plane, -1.0, version=CANDIDATE)
    assert "version 2 refuses" in caught.value.message
    assert ask(plane, 1.0, label="canary") == (4.0, CANDIDATE)
    champion, candidate = monitor.take("m")
    assert champion.requests == candidate.requests == 0


def test_labels_posted_later_are_kept_and_joined_to_the_version_that_answered(rollout,
                                                                              tmp_path):
    with_weight, monitor = rollout
    plane = with_weight(100)
    for key, x in (("k1", 1.0), ("k2", 2.0), ("k3", 3.0)):
        ask(plane, x, request_key=key)
    ask(with_weight(0), 4.0, request_key="k4")  # the champion's
    body = b"\n".join(json.dumps({"key": key, "label": label}).encode() for key, label in (
        ("k1", 1), ("k2", 0), ("k3", "1"), ("k4", 1), ("never-asked", 0), ("k1", 0)))
    answer = asyncio.run(plane.record_labels("m", body))
    assert answer["labels"] == 6 and answer["joined"] == 4  # k1 counted once
    assert Path(answer["kept"]).parent == tmp_path / "request_logs" / "m" / "labels"
    champion, candidate = monitor.quality("m")
    assert (candidate.labelled, candidate.correct) == (3, 2)
    assert (champion.labelled, champion.correct) == (1, 1)
    with pytest.raises(ServingError) as caught:
        asyncio.run(plane.record_labels("other", body))
    assert caught.value.code == Code.NOT_FOUND


def test_in_shadow_mode_the_champion_answers_and_the_candidate_is_only_measured(rollout,
                                                                                 tmp_path):
    with_weight, monitor = rollout
    plane = with_weight(0)  # shadow mode: the split sends every request to the champion
    monitor.begin("m", CHAMPION, CANDIDATE, mirror=100)
    plane.request_logs = SampledVersions()

    async def shadowed(x: float, key: str):
        result = await plane.predict(ModelSpec("m", request_key=key),
                                     lambda signature: {"x": np.asarray([x], np.float32)})
        version = answering_version.get()
        await plane.shadow_calls_done()
        return float(result.outputs["y"][0]), version

    assert asyncio.run(shadowed(1.0, "a")) == (3.0, CHAMPION)
    assert asyncio.run(shadowed(-1.0, "b")) == (-1.0, CHAMPION)  # the shadow refused it
    champion, candidate = monitor.take("m")
    assert champion.requests == 2 and champion.failed == 0
    assert (candidate.requests, candidate.failed, candidate.client_errors) == (2, 1, 0)
    assert candidate.output_rows().tolist() == [[0.0, 1.0]]
    assert plane.request_logs.versions == [CHAMPION, CHAMPION]  # a shadow call is not logged

    monitor.set_mirror("m", 0)
    asyncio.run(shadowed(1.0, "c"))
    _, candidate = monitor.take("m")
    assert candidate.requests == 0  # a 0 % share mirrors nothing


def test_a_batch_shared_with_requests_naming_a_version_measures_only_the_bare_ones(tmp_path):
    """Bare-URL requests and requests naming the candidate run in one batch: the batch
    reports the bare ones, each once, with their own rows and latencies; a keyed one waits
    for its label; the named ones are not measured."""
    repository = serving_both(tmp_path, refusing_below(-100.0, -100.0))
    monitor = Monitor()
    monitor.begin("m", CHAMPION, CANDIDATE)
    executor = ThreadPoolExecutor(2)
    batcher = Batcher(BatchingParameters(max_batch_size=16, batch_timeout_micros=200_000),
                      lambda servable, name, inputs: servable.run(name, inputs), executor,
                      on_answered=monitor.answered_batch)
    plane = DataPlane(repository, executor, batcher, router=Router({"m": Split(100)}),
                      monitor=monitor)

    async def one(x: float, **spec) -> float:
        result = await plane.predict(ModelSpec("m", **spec),
                                     lambda signature: {"x": np.asarray([x], np.float32)})
        return float(result.outputs["y"][0])

    async def load():
        return await asyncio.gather(one(1.0), one(-2.0, version=CANDIDATE), one(3.0),
                                    one(-4.0, label="canary"), one(5.0, request_key="k"))

    assert asyncio.run(load()) == [4.0, -2.0, 8.0, -6.0, 12.0]
    assert batcher.batches_run == 1  # all five shared one model call
    champion, candidate = monitor.take("m")
    assert (candidate.requests, len(candidate.latencies_s), champion.requests) == (3, 3, 0)
    assert candidate.output_rows().tolist() == [[0.0, 1.0]] * 3  # x > 0 only: named rows out
    assert min(candidate.latencies_s) > 0
    assert monitor.label("m", "k", "1") and monitor.quality("m")[1].correct == 1


def test_requests_left_unmeasured_in_a_busy_window_are_counted_and_fall_back_alike(rollout,
                                                                                   monkeypatch):
    """With the window's share at zero (a busy window), no request is measured, yet each
    is counted for the version that answered, and the candidate's failures are still
    answered by the champion and blamed on it."""
    with_weight, monitor = rollout
    monkeypatch.setattr(monitor, "measures", lambda model_name, key: False)
    plane = with_weight(100)
    assert [ask(plane, x) for x in (1.0, 2.0, -1.0)] == [(4.0, CANDIDATE), (6.0, CANDIDATE),
                                                         (-1.0, CHAMPION)]
    champion, candidate = monitor.take("m")
    assert (candidate.requests, candidate.failed) == (3, 1)
    assert len(candidate.latencies_s) == 0 and len(candidate.output_rows()) == 0
    assert champion.requests == 0
