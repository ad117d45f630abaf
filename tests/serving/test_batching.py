"""The batcher with a stand-in model: merging, padding, slicing, limits (TF Serving's
batching rules), without a pipeline run."""
from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from serving.batching import Batcher
from serving.config_files import BatchingParameters
from serving.errors import Code, ServingError
from tests.serving.stand_ins import StandInServable


def batcher(on_answered=None, **params) -> Batcher:
    options = {"max_batch_size": 4, "batch_timeout_micros": 200_000, "num_batch_threads": 1,
               **params}
    return Batcher(BatchingParameters(**options), lambda servable, signature, inputs:
                   servable.run(signature, inputs), ThreadPoolExecutor(2),
                   on_answered=on_answered)


def rows(*values: float) -> dict[str, np.ndarray]:
    return {"x": np.array(values, np.float32)}


async def together(runner: Batcher, servable, *requests):
    return await asyncio.gather(*(runner.run(servable, "serving_default", r)
                                  for r in requests), return_exceptions=True)


def test_concurrent_requests_run_as_one_batch_and_each_gets_its_rows():
    model, runner = StandInServable(), batcher()
    answers = asyncio.run(together(runner, model, rows(1), rows(2, 3), rows(4)))
    assert runner.batches_run == 1 and len(model.calls) == 1
    assert [a["y"].tolist() for a in answers] == [[3.0], [5.0, 7.0], [9.0]]
    assert not runner._tasks  # every task it started is done and released


def test_a_batch_is_padded_to_an_allowed_size_and_the_padding_dropped():
    model, runner = StandInServable(), batcher(allowed_batch_sizes=(2, 4))
    answers = asyncio.run(together(runner, model, rows(1, 2), rows(3)))
    assert model.calls[0]["x"].shape == (4,)  # 3 rows padded to 4
    assert [a["y"].tolist() for a in answers] == [[3.0, 5.0], [7.0]]


def test_a_request_larger_than_a_batch_is_refused_unless_splitting_is_on():
    model = StandInServable()
    (refused,) = asyncio.run(together(batcher(), model, rows(1, 2, 3, 4, 5)))
    assert isinstance(refused, ServingError) and refused.code == Code.INVALID_ARGUMENT
    assert refused.message == "Task size 5 is larger than maximum input batch size 4"
    (alone,) = asyncio.run(together(batcher(enable_large_batch_splitting=True), model,
                                    rows(1, 2, 3, 4, 5)))
    assert alone["y"].tolist() == [3.0, 5.0, 7.0, 9.0, 11.0]


def test_a_full_queue_refuses_more_and_the_admitted_requests_are_answered():
    model = StandInServable()
    model.gate = threading.Event()
    runner = batcher(max_batch_size=2, max_enqueued_batches=1, batch_timeout_micros=0)

    async def scenario():
        first = asyncio.ensure_future(runner.run(model, "serving_default", rows(1, 2)))
        await asyncio.sleep(0.2)  # its batch is in the model, which waits on the gate
        queued = asyncio.ensure_future(runner.run(model, "serving_default", rows(3, 4)))
        await asyncio.sleep(0)
        with pytest.raises(ServingError) as refused:
            await runner.run(model, "serving_default", rows(5))
        model.gate.set()
        return refused.value, await first, await queued

    refused, first, queued = asyncio.run(scenario())
    assert refused.code == Code.UNAVAILABLE
    assert "queue to which this task was submitted is full" in refused.message
    assert first["y"].tolist() == [3.0, 5.0] and queued["y"].tolist() == [7.0, 9.0]


def test_an_output_without_a_batch_dimension_fails_every_request_of_the_batch():
    model = StandInServable(outputs=lambda inputs: {"y": np.float32(1.0)})
    answers = asyncio.run(together(batcher(), model, rows(1), rows(2)))
    assert all(isinstance(a, ServingError) and a.code == Code.INTERNAL for a in answers)
    assert "has no batch dimension of 2 rows" in answers[0].message


def test_a_full_batch_runs_at_once_and_a_partial_one_at_its_timeout():
    """Requests filling `max_batch_size` do not wait for the (here one minute) timeout; a
    batch short of it runs when its oldest request has waited `batch_timeout_micros`."""
    model = StandInServable()
    full = asyncio.run(asyncio.wait_for(together(
        batcher(max_batch_size=3, batch_timeout_micros=60_000_000), model,
        rows(1), rows(2, 3)), timeout=10))
    assert [a["y"].tolist() for a in full] == [[3.0], [5.0, 7.0]]
    assert model.calls[0]["x"].shape == (3,)

    async def partial(runner: Batcher):
        first = asyncio.ensure_future(runner.run(model, "serving_default", rows(4)))
        await asyncio.sleep(0.05)  # the second arrives while the first one's batch waits
        second = await runner.run(model, "serving_default", rows(5))
        return await first, second

    runner = batcher(batch_timeout_micros=300_000)
    first, second = asyncio.run(partial(runner))
    assert (first["y"].tolist(), second["y"].tolist()) == ([9.0], [11.0])
    assert runner.batches_run == 1 and model.calls[-1]["x"].shape == (2,)


class Reports:
    """Stands in for a rollout's monitor: what `on_answered` was told, batch by batch."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[tuple[int, list[float], list[tuple[str, int, int]]]] = []
        self.fail = fail

    def __call__(self, servable, outputs, measured) -> None:
        self.batches.append((servable.version, outputs["y"].tolist(), measured))
        if self.fail:
            raise RuntimeError("the monitor broke")


def test_a_batch_reports_its_measured_requests_once_with_their_rows_and_no_padding():
    reports = Reports()
    model, runner = StandInServable(), batcher(reports, allowed_batch_sizes=(8,))

    async def requests():
        return await asyncio.gather(runner.run(model, "serving_default", rows(1), "a"),
                                    runner.run(model, "serving_default", rows(2, 3)),
                                    runner.run(model, "serving_default", rows(4), "c"))

    answers = asyncio.run(requests())
    assert [a["y"].tolist() for a in answers] == [[3.0], [5.0, 7.0], [9.0]]
    assert model.calls[0]["x"].shape == (8,)  # 4 rows padded to 8 for the model
    # one report: the unmeasured request's rows are in the outputs, the padding is not
    assert reports.batches == [(model.version, [3.0, 5.0, 7.0, 9.0], [("a", 0, 1), ("c", 3, 1)])]


def test_a_failing_report_fails_no_request_and_a_failed_batch_reports_nothing():
    reports = Reports(fail=True)
    model, runner = StandInServable(), batcher(reports)

    async def measured(servable):
        return await runner.run(servable, "serving_default", rows(5), "m")

    assert asyncio.run(measured(model))["y"].tolist() == [11.0]  # though the report broke
    assert len(reports.batches) == 1
    without_rows = StandInServable(outputs=lambda inputs: {"y": np.float32(1.0)})
    with pytest.raises(ServingError):
        asyncio.run(measured(without_rows))
    assert len(reports.batches) == 1  # a failed batch's requests are their callers' to count
