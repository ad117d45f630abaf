"""Model calls on the event loop for a request that is alone (``serving.dataplane.InlineCalls``).

With stand-in models (no server): which calls run inline and which on the executor's
threads, that both answer and fail alike, and how long a slow call keeps its signature off
the loop. On a real server: a lone REST or gRPC client is answered inline with the
model's answers (the pipeline's model, marked slow), and with a
model as slow as a request asks, a slow call blocks the loop at most once, after which
requests sent while one is in the model are answered at once, not behind it.
"""
from __future__ import annotations

import asyncio
import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Mapping

import httpx
import numpy as np
import pytest

from serving.config_files import single_model_config
from serving.dataplane import DataPlane, ModelSpec
from serving.errors import Code, ServingError, invalid_argument
from serving.repository import ModelRepository
from tests.serving.conftest import MODEL_NAME, ROWS, arrays, servable, wait_for
from tests.serving.stand_ins import StandInServable

PREDICT = f"/v1/models/{MODEL_NAME}:predict"


SLOW_X = 99.0  # an input the stand-in takes 50 ms for, ten times the inline budget


def doubling(inputs: Mapping[str, np.ndarray]) -> dict:
    """y = 2x, and the thread that computed it; negative inputs are refused."""
    x = np.asarray(inputs["x"], np.float32)
    if (x < 0).any():
        raise invalid_argument("negative x")
    if (x == SLOW_X).any():
        time.sleep(0.05)
    return {"y": x * 2, "thread": np.array([threading.current_thread().name])}


@pytest.fixture
def plane(tmp_path: Path) -> DataPlane:
    (tmp_path / "m" / "1").mkdir(parents=True)
    repository = ModelRepository(
        lambda name, version, path: StandInServable(name, version, path, outputs=doubling))
    repository.apply_config(single_model_config("m", str(tmp_path / "m")))
    repository.poll()
    return DataPlane(repository, ThreadPoolExecutor(2, thread_name_prefix="model"))


async def call(plane: DataPlane, x: list[float], counted: bool = True) -> tuple[list, str]:
    """(y, the thread that ran the model) for one predict request."""
    arrays_in = {"x": np.asarray(x, np.float32)}
    result = await plane.predict(ModelSpec("m"), lambda signature: arrays_in, counted=counted)
    return result.outputs["y"].tolist(), str(result.outputs["thread"][0])


def test_a_lone_counted_request_runs_inline_once_its_signature_is_known_fast(plane):
    async def scenario():
        first = await call(plane, [1.0])  # nothing known of the signature yet: a thread
        second = await call(plane, [2.0])
        return first, second

    (y1, thread1), (y2, thread2) = asyncio.run(scenario())
    assert (y1, y2) == ([2.0], [4.0])
    assert thread1.startswith("model") and thread2 == threading.current_thread().name
    assert plane.inline.inline_calls == 1


def test_uncounted_concurrent_larger_or_slow_calls_go_to_the_threads(plane):
    async def scenario() -> list[str]:
        await call(plane, [1.0])  # known fast at one row
        threads = [(await call(plane, [1.0], counted=False))[1]]  # e.g. gRPC: not counted
        plane.inline.in_flight.count = 2  # another request is in flight
        threads.append((await call(plane, [1.0]))[1])
        plane.inline.in_flight.count = 0
        threads.append((await call(plane, [1.0, 2.0, 3.0]))[1])  # more rows than seen fast
        plane.inline.budget = 0.0  # every call is over the budget
        threads.append((await call(plane, [1.0]))[1])
        return threads

    threads = asyncio.run(scenario())
    assert all(name.startswith("model") for name in threads), threads
    assert plane.inline.inline_calls == 0


def test_a_call_running_on_a_thread_keeps_the_next_one_off_the_loop(plane):
    """Inline, the second call would block the loop at the gate until the timer opens it."""
    async def scenario() -> str:
        await call(plane, [1.0])
        gate = plane.repository.resolve("m", None, None).gate = threading.Event()
        held = asyncio.ensure_future(call(plane, [1.0], counted=False))
        while plane.inline.threaded_calls == 0:
            await asyncio.sleep(0.001)
        threading.Timer(0.2, gate.set).start()
        alone = await call(plane, [5.0])  # its request is alone, but a call is running
        await held
        return alone[1]

    assert asyncio.run(scenario()).startswith("model")
    assert plane.inline.inline_calls == 0


def test_a_call_over_the_budget_sends_its_signature_to_the_threads_for_the_cooldown(plane):
    plane.inline.cooldown = 0.3

    async def scenario() -> list[str]:
        await call(plane, [1.0])
        threads = [(await call(plane, [SLOW_X]))[1]]  # alone, known fast: inline, but slow
        threads.append((await call(plane, [1.0]))[1])  # fast, but the cooldown runs
        await asyncio.sleep(0.35)
        threads.append((await call(plane, [1.0]))[1])
        return threads

    on_loop = threading.current_thread().name
    slow, during_cooldown, after = asyncio.run(scenario())
    assert slow == on_loop and during_cooldown.startswith("model") and after == on_loop


def last_timing(plane: DataPlane):
    (timings,) = plane.inline._last.values()
    (timing,) = timings.values()
    return timings, timing


def test_slow_calls_that_recur_double_the_cooldown_and_a_lone_stall_does_not(plane):
    """A machine's stall now and then costs one base cooldown; inputs that keep making the
    model slow keep its signature off the loop longer and longer, up to the maximum."""
    plane.inline.cooldown, plane.inline.max_cooldown = 0.2, 0.8

    async def scenario() -> list[float]:
        await call(plane, [1.0])
        cooldowns = []
        for _ in range(4):  # each slow again within a cooldown of the last one's end
            await call(plane, [SLOW_X])
            cooldowns.append(last_timing(plane)[1].cooldown)
        timings, timing = last_timing(plane)
        (name,) = timings
        timings[name] = timing._replace(slow_end=timing.slow_end - 100)  # long ago
        await call(plane, [SLOW_X])  # a stall after a long quiet time: the base again
        cooldowns.append(last_timing(plane)[1].cooldown)
        return cooldowns

    assert asyncio.run(scenario()) == [0.2, 0.4, 0.8, 0.8, 0.2]
    assert plane.inline.inline_calls == 1  # only the first slow call ran on the loop


def test_inline_and_threaded_calls_fail_alike(plane):
    async def scenario() -> list[ServingError]:
        await call(plane, [1.0])
        errors = []
        for counted in (False, True):
            with pytest.raises(ServingError) as caught:
                await call(plane, [-1.0], counted=counted)
            errors.append(caught.value)
        return errors

    threaded, inline = asyncio.run(scenario())
    assert (threaded.code, threaded.message) == (inline.code, inline.message) == \
        (Code.INVALID_ARGUMENT, "negative x")
    assert plane.inline.inline_calls == 1


def test_timings_do_not_keep_an_unloaded_version_in_memory(plane):
    asyncio.run(call(plane, [1.0]))
    assert len(plane.inline._last) == 1
    plane.repository.apply_config(single_model_config("other", "/nonexistent"))
    plane.repository.poll()
    gc.collect()
    assert len(plane.inline._last) == 0


# --- a real server -----------------------------------------------------------------------------

@pytest.mark.slow
def test_a_lone_rest_client_is_answered_inline_with_the_models_answers(start_server, base_path):
    running = start_server(model_name=MODEL_NAME, model_base_path=str(base_path))
    inline = running.server.dataplane.inline
    inline.budget = 10.0  # the protocol's path is the point, not a stalled call
    expected = servable(running, 1).run("serving_default", arrays(ROWS[:1]))["scores"]
    with httpx.Client(base_url=running.rest_url, timeout=60) as client:
        for _ in range(5):
            answer = client.post(PREDICT, json={"instances": ROWS[:1]})
            assert answer.status_code == 200, answer.text
            scores = [p["scores"] for p in answer.json()["predictions"]]
            np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert inline.inline_calls >= 4  # every call after the first one


@pytest.mark.slow
def test_a_lone_grpc_client_is_answered_inline_with_the_models_answers(start_server, base_path):
    """The official stub, one call at a time: each call is the only one in flight."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from tests.serving.conftest import dtype_of

    running = start_server(model_name=MODEL_NAME, model_base_path=str(base_path))
    inline = running.server.dataplane.inline
    inline.budget = 10.0  # the protocol's path is the point, not a stalled call
    expected = servable(running, 1).run("serving_default", arrays(ROWS[:1]))["scores"]
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    for key, array in arrays(ROWS[:1]).items():
        request.inputs[key].CopyFrom(tf.make_tensor_proto(array, dtype=dtype_of(key)))
    with grpc.insecure_channel(running.grpc_target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for _ in range(5):
            response = stub.Predict(request, timeout=60)
            np.testing.assert_allclose(tf.make_ndarray(response.outputs["scores"]), expected,
                                       rtol=1e-5)
    assert inline.inline_calls >= 4  # every call after the first one
    assert inline.in_flight.count == 0  # each call counted out when answered


@pytest.fixture(scope="module")
def spinning_model(tmp_path_factory) -> Path:
    """A base path whose version 1 spins ``spins`` graph loop iterations per call (a few
    µs each): a model exactly as slow as a request asks, with tiny requests."""
    import tensorflow as tf

    class Spin(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="spins")])
        def serve(self, spins):
            (count,) = tf.while_loop(lambda i: i < tf.reduce_max(spins), lambda i: (i + 1,),
                                     (tf.constant(0, tf.int64),))
            return {"y": tf.cast(spins, tf.float32) * 2.0,
                    "spun": tf.fill(tf.shape(spins), count)}

    base = tmp_path_factory.mktemp("spin") / "spin"
    module = Spin()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.serve})
    return base


def spin(client: httpx.Client, spins: int) -> dict:
    answer = client.post("/v1/models/spin:predict", json={"instances": [{"spins": spins}]})
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"][0]


def test_a_slow_call_blocks_the_loop_once_then_never_holds_requests_behind_it(
        start_server, spinning_model):
    slow = 400_000  # about a second on this 2-core machine
    running = start_server(model_name="spin", model_base_path=str(spinning_model))
    inline = running.server.dataplane.inline
    with httpx.Client(base_url=running.rest_url, timeout=60) as client:
        assert [spin(client, 0), spin(client, 3)] == [{"spun": 0, "y": 0.0},
                                                      {"spun": 3, "y": 6.0}]
        assert inline.inline_calls == 1  # the second: alone and known fast
        # Alone and fast so far: nothing foresees this one is slow, it runs on the loop.
        assert spin(client, slow) == {"spun": slow, "y": 2.0 * slow}
        assert inline.inline_calls == 2
        slow_answer: list[dict] = []
        sender = threading.Thread(target=lambda: slow_answer.append(spin(client, slow)))
        sender.start()  # alone too, but within the cooldown: on a thread
        wait_for(lambda: inline.threaded_calls > 0, "the slow call to reach a thread")
        with httpx.Client(base_url=running.rest_url, timeout=60) as other:
            started = time.monotonic()
            answers = [spin(other, n) for n in (1, 2, 3)]
            fast_seconds = time.monotonic() - started
        still_running = sender.is_alive()
        sender.join(60)
    assert answers == [{"spun": n, "y": 2.0 * n} for n in (1, 2, 3)]
    assert still_running, f"the slow call finished first; the fast ones took {fast_seconds:.2f} s"
    assert slow_answer == [{"spun": slow, "y": 2.0 * slow}]
    assert inline.inline_calls == 2
