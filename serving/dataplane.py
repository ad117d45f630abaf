"""The data plane: one implementation of every serving API, which REST and gRPC adapt.

It resolves a request's model spec (name, version or label, signature) through the
repository, checks the signature fits the API (TF Serving's method names for classify and
regress), runs the model (through the batcher when batching is on) and returns numpy
arrays and protos. Errors are ``ServingError``s; the adapters only translate.

Where the model runs: on a thread of the executor, so the event loop keeps reading,
parsing and answering other requests meanwhile; except for a request that is alone (see
``InlineCalls``), which runs on the event loop itself. Handing a call to a thread and its
result back costs thread wake-ups and GIL hand-overs: on the pipeline's model (2 cores,
batching off, one wrk connection, one server switching between the two every 3 s, 5
rounds) REST predict p50 was 0.735 ms through the threads and 0.592 ms inline; the loop
blocking on the thread's future instead (no wake-up of the loop) gave 0.741 ms, so the
thread hand-over itself is the cost. At 32 connections no request was ever alone (0
inline calls) and throughput did not move (1738 vs 1732 req/s).
"""
from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import math
import time
import weakref
from concurrent.futures import Executor, Future
from typing import Callable, Mapping, NamedTuple, Optional

import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_pb2, status_pb2
from tensorflow_serving.apis.get_model_metadata_pb2 import SignatureDefMap

from serving import examples as examples_lib, servable as servable_lib
from serving.batching import Batcher
from serving.request_log import RequestLogs
from serving.errors import invalid_argument
from serving.repository import ModelRepository
from serving.traffic import Router

# A request's inputs as arrays, typed by the signature that will run them.
InputDecoder = Callable[[servable_lib.Signature], Mapping[str, np.ndarray]]
_ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type

# The version the current request was resolved to (None until it is): the adapters read it
# after the call, for the X-Model-Version header and the per-version metrics, whether the
# call then succeeded or failed. Each request runs in its own task, so its own context.
answering_version: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar(
    "answering_version", default=None)


INLINE_BUDGET_S = 0.005  # the longest a model call should block the event loop (InlineCalls)
INLINE_COOLDOWN_S = 1.0  # after a call over the budget, its signature runs on threads...
INLINE_MAX_COOLDOWN_S = 30.0  # ...this long at most, doubling while such calls recur


class InFlight:
    """Requests that have arrived whole and are not answered yet, counted by the adapters:
    the HTTP layer on parsing a request, before its task first runs (a burst read in one
    go counts whole before any of it reaches the model); gRPC when a call's handler starts."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


class Timing(NamedTuple):
    """A signature's last call: its rows and seconds; when the last call over the budget
    ended (perf_counter; -inf: never) and the cooldown it started."""

    rows: int
    seconds: float
    slow_end: float
    cooldown: float

    @property
    def cooling_until(self) -> float:
        return self.slow_end + self.cooldown


class InlineCalls:
    """Decides whether a model call runs on the event loop instead of a worker thread.

    A call runs inline when its request is the only one in flight (``in_flight``, counted
    at arrival), no call is running on the executor, and the signature's last call, with
    at least as many rows, took under ``budget`` seconds: then nothing waits on the loop
    while it is blocked, and a request arriving meanwhile waits about that long. Anything
    else (concurrency, a first call, a slow model, a larger batch than seen fast) goes to
    the executor, which keeps the loop free. A call whose inputs make it slow although
    the last was fast cannot be foreseen: it blocks the loop once, and its signature then
    runs on threads for a cooldown, so such calls block the loop at most once per
    cooldown. The cooldown starts at ``cooldown`` seconds and doubles, up to
    ``max_cooldown``, each time a slow call comes again within a cooldown of the last
    one's end: a machine that stalls a call now and then (a busy or virtual machine does,
    every few seconds to minutes) costs a second of threaded calls, not half a minute,
    while inputs that keep making the model slow are soon kept off the loop for
    ``max_cooldown``. The durations are kept per servable, weakly: an unloaded version is
    not held in memory by them.
    """

    def __init__(self, budget: float = INLINE_BUDGET_S, cooldown: float = INLINE_COOLDOWN_S,
                 max_cooldown: float = INLINE_MAX_COOLDOWN_S) -> None:
        self.in_flight = InFlight()
        self.budget = budget
        self.cooldown = cooldown
        self.max_cooldown = max_cooldown
        self.inline_calls = 0  # for tests and benchmarks: how many calls ran on the loop
        self._threaded: set[Future] = set()  # calls running on the executor
        self._last: "weakref.WeakKeyDictionary[object, dict[str, Timing]]" = \
            weakref.WeakKeyDictionary()

    @property
    def threaded_calls(self) -> int:
        """Model calls running on the executor now."""
        return len(self._threaded)

    def timings(self, servable) -> dict[str, "Timing"]:
        """Signature name -> the Timing of its last successful call."""
        timings = self._last.get(servable)
        if timings is None:
            timings = self._last[servable] = {}
        return timings

    def allows(self, timings: dict[str, "Timing"], signature_name: str, rows: int) -> bool:
        if self.in_flight.count > 1 or self._threaded:
            return False
        last = timings.get(signature_name)
        return (last is not None and rows <= last.rows and last.seconds < self.budget
                and time.perf_counter() >= last.cooling_until)

    def run(self, servable, signature_name: str, inputs: Mapping[str, np.ndarray], rows: int,
            timings: dict[str, "Timing"]) -> dict:
        """``servable.run``, its duration noted for the next decision (on any thread)."""
        started = time.perf_counter()
        outputs = servable.run(signature_name, inputs)
        ended = time.perf_counter()
        seconds = ended - started
        previous = timings.get(signature_name)
        if seconds < self.budget:
            slow_end, cooldown = ((previous.slow_end, previous.cooldown) if previous is not None
                                  else (-math.inf, 0.0))
        elif previous is not None and ended <= previous.cooling_until + previous.cooldown:
            slow_end, cooldown = ended, min(self.max_cooldown,
                                            max(self.cooldown, 2 * previous.cooldown))
        else:
            slow_end, cooldown = ended, self.cooldown
        timings[signature_name] = Timing(rows, seconds, slow_end, cooldown)
        return outputs

    def track(self, future: Future) -> Future:
        """Counts ``future`` as running on the executor until it is done (set operations
        are atomic, so the worker thread's discard needs no lock)."""
        self._threaded.add(future)
        future.add_done_callback(self._threaded.discard)
        return future


def _batch_rows(inputs: Mapping[str, np.ndarray]) -> int:
    return max((array.shape[0] if array.ndim else 1 for array in inputs.values()), default=0)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    version: Optional[int] = None
    label: Optional[str] = None
    signature_name: str = ""
    request_key: Optional[str] = None  # makes the canary split sticky (serving.traffic)

    @classmethod
    def from_proto(cls, spec: model_pb2.ModelSpec,
                   request_key: Optional[str] = None) -> "ModelSpec":
        return cls(spec.name, spec.version.value if spec.HasField("version") else None,
                   spec.version_label or None, spec.signature_name, request_key)


@dataclasses.dataclass(frozen=True)
class Result:
    """What a model call answered, and which version and signature answered it."""

    servable: servable_lib.Servable
    signature: servable_lib.Signature
    outputs: dict[str, np.ndarray]

    def model_spec(self) -> model_pb2.ModelSpec:
        return model_pb2.ModelSpec(name=self.servable.name,
                                   version=wrappers_pb2.Int64Value(value=self.servable.version),
                                   signature_name=self.signature.name)


class DataPlane:
    """Every serving API once, over the model repository; REST and gRPC only adapt.

    Model calls run on `executor`'s threads (through `batcher` when batching is on), or
    on the event loop for a request that is alone (`inline`, which the HTTP layer counts
    REST requests in). Every error is a `ServingError` with TF Serving's code and text.
    Requests naming neither a version nor a label follow `router`'s canary split, if any.
    """

    def __init__(self, repository: ModelRepository, executor: Executor,
                 batcher: Optional[Batcher] = None, router: Optional[Router] = None,
                 request_logs: Optional[RequestLogs] = None) -> None:
        self.repository = repository
        self._executor = executor
        self._batcher = batcher
        self.router = router if router is not None else Router()
        self.request_logs = request_logs  # a sample of what is asked, for `mlops skew`
        self.inline = InlineCalls()

    # --- lookups ---------------------------------------------------------------------------

    def servable(self, spec: ModelSpec) -> servable_lib.Servable:
        """The version `spec` names (a version, a label, or, for neither, the canary
        split's choice or else the newest served).

        Raises:
            ServingError: INVALID_ARGUMENT without a model name or for an unknown label,
                NOT_FOUND for an unknown model or version.
        """
        if not spec.name:
            raise invalid_argument("Missing model name in request.")
        servable = None
        if spec.version is None and not spec.label:
            view = self.repository.view(spec.name)  # one snapshot: choice and servable agree
            if view is not None:
                chosen = self.router.choose(spec.name, view.labels, spec.request_key)
                servable = view.servables.get(chosen) if chosen is not None else None
        if servable is None:
            servable = self.repository.resolve(spec.name, spec.version, spec.label)
        answering_version.set(servable.version)
        return servable

    def signature(self, spec: ModelSpec):
        """(servable, signature) for `spec`; `signature_name` "" is serving_default.

        Raises:
            ServingError: as `servable`, and FAILED_PRECONDITION for an unknown signature.
        """
        servable = self.servable(spec)
        return servable, servable.signature(spec.signature_name)

    # --- model calls ------------------------------------------------------------------------

    async def _call(self, servable, signature, inputs: Mapping[str, np.ndarray],
                    key: Optional[str] = None, counted: bool = False) -> dict:
        """The model's outputs: batched, inline (``counted``: the request is in
        ``inline.in_flight``, so whether it is alone is known) or on a worker thread."""
        if self.request_logs is not None:
            self.request_logs.sample(servable, signature, inputs, key)
        if self._batcher is not None:
            return await self._batcher.run(servable, signature.name, inputs)
        inline, rows = self.inline, _batch_rows(inputs)
        timings = inline.timings(servable)
        if counted and inline.allows(timings, signature.name, rows):
            inline.inline_calls += 1
            return inline.run(servable, signature.name, inputs, rows, timings)
        future = inline.track(self._executor.submit(inline.run, servable, signature.name,
                                                    inputs, rows, timings))
        return await asyncio.wrap_future(future)

    async def predict(self, spec: ModelSpec, decode_inputs: InputDecoder,
                      output_filter: tuple[str, ...] = (), counted: bool = False) -> Result:
        """Runs ``spec``'s signature on the request's inputs, decoded for that signature.

        The decoder gets the signature resolved here, so the version whose dtypes typed
        the inputs is the one that runs them, resolved once per request. ``counted``: the
        adapter counts this request in ``inline.in_flight`` (it may then run inline).

        Returns:
            The outputs (only `output_filter`'s, when given) and who answered.
        Raises:
            ServingError: as `signature`; INVALID_ARGUMENT for inputs that are not exactly
                the signature's or an unknown output alias; the decoder's and the model's.
        """
        servable, signature = self.signature(spec)
        inputs = decode_inputs(signature)
        check_inputs(signature, inputs)
        for alias in output_filter:
            if alias not in signature.outputs:
                raise invalid_argument(
                    f"output tensor alias not found in signature: {alias} Outputs expected "
                    f"to be in the set {{{','.join(sorted(signature.outputs))}}}.")
        outputs = await self._call(servable, signature, inputs, spec.request_key, counted)
        if output_filter:
            outputs = {key: outputs[key] for key in output_filter}
        return Result(servable, signature, outputs)

    async def classify(self, spec: ModelSpec, examples: list[bytes],
                       counted: bool = False) -> Result:
        """TF Serving's Classify: serialized tf.Examples through a classify signature.

        Raises:
            ServingError: as `signature`; INVALID_ARGUMENT when the signature's method is
                not `tensorflow/serving/classify`, it has other than one input, or neither
                `classes` nor `scores` among its outputs.
        """
        servable, signature = self._examples_signature(spec, servable_lib.CLASSIFY_METHOD,
                                                       "classification")
        if not ({"classes", "scores"} & set(signature.outputs)):
            raise invalid_argument("Expected classification signature outputs to contain "
                                   "classes or scores")
        return await self._run_examples(servable, signature, examples, spec.request_key,
                                        counted)

    async def regress(self, spec: ModelSpec, examples: list[bytes],
                      counted: bool = False) -> Result:
        """TF Serving's Regress: serialized tf.Examples through a regress signature.

        Raises:
            ServingError: as `classify`, for `tensorflow/serving/regress` and `outputs`.
        """
        servable, signature = self._examples_signature(spec, servable_lib.REGRESS_METHOD,
                                                       "regression")
        if "outputs" not in signature.outputs:
            raise invalid_argument("Expected regression signature outputs to contain outputs")
        return await self._run_examples(servable, signature, examples, spec.request_key,
                                        counted)

    def _examples_signature(self, spec: ModelSpec, method: str, kind: str):
        servable, signature = self.signature(spec)
        if signature.method_name != method:
            raise invalid_argument(f"Expected {kind} signature method_name to be {method}. "
                                   f"Was: {signature.method_name}")
        if len(signature.inputs) != 1:
            raise invalid_argument(f"Expected one input Tensor in the {kind} signature.")
        return servable, signature

    async def _run_examples(self, servable, signature, examples: list[bytes],
                            key: Optional[str] = None, counted: bool = False) -> Result:
        (name,) = signature.inputs
        outputs = await self._call(servable, signature,
                                   {name: examples_lib.as_batch(examples)}, key, counted)
        return Result(servable, signature, outputs)

    # --- model information ---------------------------------------------------------------------

    def metadata(self, spec: ModelSpec) -> tuple[model_pb2.ModelSpec, SignatureDefMap]:
        """The version's spec and every SignatureDef (GetModelMetadata).

        Raises:
            ServingError: as `servable`.
        """
        servable = self.servable(spec)
        signatures = SignatureDefMap()
        for key, signature_def in servable.signature_defs.items():
            signatures.signature_def[key].CopyFrom(signature_def)
        model_spec = model_pb2.ModelSpec(
            name=servable.name, version=wrappers_pb2.Int64Value(value=servable.version))
        return model_spec, signatures

    def status(self, spec: ModelSpec) -> get_model_status_pb2.GetModelStatusResponse:
        """The state of every version of the model, or of the one `spec` names.

        Raises:
            ServingError: INVALID_ARGUMENT without a model name, NOT_FOUND for an unknown
                model or version.
        """
        if not spec.name:
            raise invalid_argument("Missing model name in request.")
        response = get_model_status_pb2.GetModelStatusResponse()
        for status in self.repository.status(spec.name, spec.version, spec.label):
            entry = response.model_version_status.add(version=status.version,
                                                      state=int(status.state))
            entry.status.error_code = _ERROR_CODES.values_by_name[status.error_code].number \
                if status.error_code in _ERROR_CODES.values_by_name else 2  # UNKNOWN
            entry.status.error_message = status.error_message
        return response


def check_inputs(signature, inputs: Mapping[str, np.ndarray]) -> None:
    """Exactly the signature's inputs, or TF Serving's message naming what is extra or missing."""
    expected, sent = set(signature.inputs), set(inputs)
    if expected != sent:
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}})."
            f" Sent extra: {{{','.join(sorted(sent - expected))}}}. Missing but "
            f"required: {{{','.join(sorted(expected - sent))}}}.")
