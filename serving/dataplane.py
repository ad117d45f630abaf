"""The data plane: one implementation of every serving API, which REST and gRPC adapt.

It resolves a request's model spec (name, version or label, signature) through the
repository, checks the signature fits the API (TF Serving's method names for classify and
regress), runs the model (through the batcher when batching is on) and returns numpy
arrays and protos. Errors are ``ServingError``s; the adapters only translate.

Where the model runs: on a thread of the executor, so the event loop keeps reading,
parsing and answering other requests meanwhile; except for a request that is alone (see
``InlineCalls``), which runs on the event loop itself. Handing a call to a thread and its
result back costs thread wake-ups and GIL hand-overs, a fifth of a one-client request's
time; at 32 connections no request is ever alone, so throughput does not change (measured
by bench/serving --latency-only; see docs/performance.md).
"""
from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import math
import time
import weakref
from concurrent.futures import Executor, Future
from typing import Awaitable, Callable, Mapping, NamedTuple, Optional

import numpy as np
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import get_model_status_pb2, model_pb2, status_pb2
from tensorflow_serving.apis.get_model_metadata_pb2 import SignatureDefMap

from serving import servable as servable_lib
from serving.batching import Batcher
from serving.errors import ServingError, failed_precondition, invalid_argument, not_found
from serving.labels import LabelFolder, parse_label_lines
from serving.repository import ModelRepository
from serving.request_log import RequestLogs
from serving.rollout.window import Measurement, Monitor, Watch
from serving.traffic import Router

# A request's inputs as arrays, typed by the signature that will run them.
InputDecoder = Callable[[servable_lib.Signature], Mapping[str, np.ndarray]]
_ERROR_CODES = status_pb2.StatusProto.DESCRIPTOR.fields_by_name["error_code"].enum_type

# The version the current request was resolved to (None until it is): the adapters read it
# after the call, for the X-Model-Version header and the per-version metrics, whether the
# call then succeeded or failed. Each request runs in its own task, so its own context.
answering_version: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar(
    "answering_version", default=None)


# Set in a shadow call's own task: its request is the client's already logged one.
_shadowing: contextvars.ContextVar[bool] = contextvars.ContextVar("shadowing", default=False)
# While a bare-URL request measured for a rollout runs: its measurement, which `_call` hands
# to the batcher so that its batch records it (`Monitor.answered_batch`).
_measuring: contextvars.ContextVar[Optional[Measurement]] = contextvars.ContextVar(
    "measuring", default=None)
MAX_SHADOW_CALLS = 64  # shadow calls in flight at most; more are not mirrored (load shed)

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
        """Until when (perf_counter) the signature stays off the event loop after a slow call."""
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
        """Whether this call may run on the event loop: it is alone, nothing runs on the
        executor, and the signature's last call, with as many rows or more, was under
        budget and not in a cooldown (see the class)."""
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
    """What a request names, from the REST path or the gRPC ModelSpec: the model, at most
    one of version and label (neither: the canary split's choice or the newest), and the
    signature ("" = serving_default)."""

    name: str
    version: Optional[int] = None
    label: Optional[str] = None
    signature_name: str = ""
    request_key: Optional[str] = None  # makes the canary split sticky (serving.traffic)

    @classmethod
    def from_proto(cls, spec: model_pb2.ModelSpec,
                   request_key: Optional[str] = None) -> "ModelSpec":
        """A gRPC request's spec; an unset version wrapper means no version (not 0)."""
        return cls(spec.name, spec.version.value if spec.HasField("version") else None,
                   spec.version_label or None, spec.signature_name, request_key)


@dataclasses.dataclass(frozen=True)
class Result:
    """What a model call answered, and which version and signature answered it."""

    servable: servable_lib.Servable
    signature: servable_lib.Signature
    outputs: dict[str, np.ndarray]

    def model_spec(self) -> model_pb2.ModelSpec:
        """The version and signature that answered, for the gRPC response's model_spec."""
        return model_pb2.ModelSpec(name=self.servable.name,
                                   version=wrappers_pb2.Int64Value(value=self.servable.version),
                                   signature_name=self.signature.name)


class DataPlane:
    """Every serving API once, over the model repository; REST and gRPC only adapt.

    Model calls run on `executor`'s threads (through `batcher` when batching is on), or
    on the event loop for a request that is alone (`inline`, which the HTTP layer counts
    REST requests in). Every error is a `ServingError` with TF Serving's code and text.
    Requests naming neither a version nor a label follow `router`'s canary split, if any,
    and, during an automatic rollout, are measured for it (`monitor`; see `_answer`).
    """

    def __init__(self, repository: ModelRepository, executor: Executor,
                 batcher: Optional[Batcher] = None, router: Optional[Router] = None,
                 request_logs: Optional[RequestLogs] = None,
                 monitor: Optional[Monitor] = None,
                 labels: Optional[LabelFolder] = None) -> None:
        self.repository = repository
        self._executor = executor
        self._batcher = batcher
        self.router = router if router is not None else Router()
        self.request_logs = request_logs  # a sample of what is asked, for `mlops skew`
        self.monitor = monitor  # the rollout's windows (None: no automatic rollout)
        self.labels = labels  # where posted labels are kept (None: no request log)
        self._shadow_calls: set[asyncio.Task] = set()  # shadow mode's calls in flight
        self.inline = InlineCalls()

    # --- lookups ---------------------------------------------------------------------------

    def servable(self, spec: ModelSpec) -> servable_lib.Servable:
        """The version `spec` names (a version, a label, or, for neither, the canary
        split's choice or else the newest served).

        Also sets `answering_version`, which the adapters report whether the call then
        succeeds or fails.

        Args:
            spec: the model, and at most one of version and label.

        Returns:
            The loaded servable; it stays usable until the request is done, even if the
            version is unloaded meanwhile.

        Raises:
            ServingError: INVALID_ARGUMENT without a model name, with both a version and a
                label, or for a label not on a loaded version; NOT_FOUND for a model with
                no loaded version, or a version that is not loaded.
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

        Args:
            spec: the model, version or label, and signature name.

        Returns:
            The servable and its callable signature, resolved together so the signature
            belongs to the version that will run it.

        Raises:
            ServingError: as `servable`, and FAILED_PRECONDITION for a signature the
                version does not have (TF Serving's code for it, HTTP 400).
        """
        servable = self.servable(spec)
        return servable, servable.signature(spec.signature_name)

    # --- model calls ------------------------------------------------------------------------

    async def _answer(self, spec: ModelSpec,
                      attempt: Callable[[ModelSpec], Awaitable[Result]]) -> Result:
        """Runs one API call; in a rollout, measures it and keeps the candidate from the
        client.

        A bare-URL request that the rollout's candidate fails (any `ServingError`: a graph
        that refuses an input fails with INVALID_ARGUMENT) is answered by the champion, and
        counted against the candidate; if the champion fails it too, the client gets the
        champion's error and the request counts against neither (it was the client's).
        In shadow mode the champion answers, and a share of its requests is also run on
        the candidate in the background (`_shadow`), only measured. Requests naming a
        version or a label bypass the split and are not measured. A request answered by
        a batch was measured with its batch (`Measurement`); others are measured here.
        In a busy window only a share of the requests is measured, the rest counted
        (`Monitor.measures`); every one falls back to the champion alike.
        """
        if self.monitor is None or spec.version is not None or spec.label or \
                not self.monitor.watching(spec.name) or _shadowing.get():
            return await attempt(spec)
        answering_version.set(None)
        measurement = (Measurement(time.perf_counter(), spec.request_key)
                       if self.monitor.measures(spec.name, spec.request_key) else None)
        measuring = _measuring.set(measurement) if measurement is not None else None
        try:
            try:
                result = await attempt(spec)
            finally:
                if measuring is not None:
                    _measuring.reset(measuring)  # a retry on the champion is not measured
        except ServingError:
            version = answering_version.get()
            watch = self.monitor.watch(spec.name, version) if version is not None else None
            if watch is None:
                raise
            if version == watch.champion:
                self.monitor.failed(watch, version, by_client=True)
                self._shadow(spec, attempt, watch, champion_failed=True)
                raise
            try:
                result = await attempt(dataclasses.replace(spec, version=watch.champion))
            except ServingError:
                self.monitor.failed(watch, version, by_client=True)
                raise
            self.monitor.failed(watch, version, by_client=False)
            return result
        if measurement is None:
            watch = self.monitor.counted(spec.name, result.servable.version)
        elif measurement.recorded:
            watch = measurement.watch
        else:
            watch = self.monitor.watch(spec.name, result.servable.version)
            if watch is not None:
                self.monitor.answered(watch, result.servable.version,
                                      time.perf_counter() - measurement.started,
                                      result.outputs, spec.request_key)
        if watch is not None and watch.mirror and result.servable.version == watch.champion:
            self._shadow(spec, attempt, watch, champion_failed=False)
        return result

    def _shadow(self, spec: ModelSpec, attempt: Callable[[ModelSpec], Awaitable[Result]],
                watch: Watch, champion_failed: bool) -> None:
        """Shadow mode: also runs a champion's request on the candidate, in the background
        (the client's answer does not wait for it), when the mirror share picks it and
        fewer than `MAX_SHADOW_CALLS` are in flight."""
        if not watch.mirrors(spec.request_key) or len(self._shadow_calls) >= MAX_SHADOW_CALLS:
            return
        task = asyncio.get_running_loop().create_task(
            self._run_shadow(dataclasses.replace(spec, version=watch.candidate), attempt,
                             watch, champion_failed))
        self._shadow_calls.add(task)
        task.add_done_callback(self._shadow_calls.discard)

    async def shadow_calls_done(self) -> None:
        """Waits for the shadow calls in flight (a clean stop measures what it started)."""
        while self._shadow_calls:
            await asyncio.gather(*list(self._shadow_calls), return_exceptions=True)

    async def _run_shadow(self, spec: ModelSpec,
                          attempt: Callable[[ModelSpec], Awaitable[Result]], watch: Watch,
                          champion_failed: bool) -> None:
        _shadowing.set(True)  # this task's own context: not sampled into the request log
        _measuring.set(None)  # measured here, not with the batch
        started = time.perf_counter()
        try:
            result = await attempt(spec)
        except ServingError:
            self.monitor.failed(watch, watch.candidate, by_client=champion_failed)
            return
        self.monitor.answered(watch, watch.candidate, time.perf_counter() - started,
                              result.outputs, spec.request_key)

    async def _call(self, servable, signature, inputs: Mapping[str, np.ndarray],
                    key: Optional[str] = None, counted: bool = False) -> dict:
        """The model's outputs: batched, inline (``counted``: the request is in
        ``inline.in_flight``, so whether it is alone is known) or on a worker thread."""
        if self.request_logs is not None and not _shadowing.get():
            self.request_logs.sample(servable, signature, inputs, key)
        if self._batcher is not None:
            return await self._batcher.run(servable, signature.name, inputs, _measuring.get())
        inline, rows = self.inline, _batch_rows(inputs)
        timings = inline.timings(servable)
        if counted and not _shadowing.get() and inline.allows(timings, signature.name, rows):
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

        Args:
            spec: the model, version or label, signature, and request key (canary split).
            decode_inputs: the adapter's decoder, from the resolved signature to its input
                arrays (REST JSON or gRPC TensorProtos).
            output_filter: output aliases to return (gRPC's `output_filter`); () = all.
            counted: the request is counted in `inline.in_flight`.

        Returns:
            The outputs (only `output_filter`'s, when given) and who answered.

        Raises:
            ServingError: as `signature`; INVALID_ARGUMENT for inputs that are not exactly
                the signature's, or an unknown output alias; whatever `decode_inputs`
                raises (the adapters' decoders raise INVALID_ARGUMENT for a malformed body).
            The model call's: INVALID_ARGUMENT for a value that cannot take the input's
                dtype or shape (or the model rejects: a failed check, a vocabulary miss),
                other TensorFlow errors by their code (OUT_OF_RANGE, RESOURCE_EXHAUSTED,
                ...; INTERNAL for the rest); with batching on, also INVALID_ARGUMENT for
                more rows than `max_batch_size`, UNAVAILABLE when the batch queue is full.
        """
        return await self._answer(spec, lambda chosen: self._predict(
            chosen, decode_inputs, output_filter, counted))

    async def _predict(self, spec: ModelSpec, decode_inputs: InputDecoder,
                       output_filter: tuple[str, ...], counted: bool) -> Result:
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

        Args:
            spec: the model, version or label, signature, and request key (canary split).
            examples: serialized tf.Examples, one per row (REST's `examples` built into
                protos by the adapter, or gRPC's Input).
            counted: the request is counted in `inline.in_flight`.

        Returns:
            The signature's outputs (`classes` and/or `scores`) and who answered.

        Raises:
            ServingError: as `signature`; INVALID_ARGUMENT when the signature's method is
                not `tensorflow/serving/classify`, it has other than one input, or neither
                `classes` nor `scores` among its outputs.
            The model call's: INVALID_ARGUMENT for a value that cannot take the input's
                dtype or shape (or the model rejects: a failed check, a vocabulary miss),
                other TensorFlow errors by their code (OUT_OF_RANGE, RESOURCE_EXHAUSTED,
                ...; INTERNAL for the rest); with batching on, also INVALID_ARGUMENT for
                more rows than `max_batch_size`, UNAVAILABLE when the batch queue is full.
        """
        return await self._answer(spec, lambda chosen: self._classify(chosen, examples,
                                                                      counted))

    async def _classify(self, spec: ModelSpec, examples: list[bytes], counted: bool) -> Result:
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

        Args:
            spec: the model, version or label, signature, and request key (canary split).
            examples: serialized tf.Examples, one per row.
            counted: the request is counted in `inline.in_flight`.

        Returns:
            The signature's outputs (`outputs`) and who answered.

        Raises:
            ServingError: as `classify`, for `tensorflow/serving/regress` and `outputs`.
        """
        return await self._answer(spec, lambda chosen: self._regress(chosen, examples,
                                                                     counted))

    async def _regress(self, spec: ModelSpec, examples: list[bytes], counted: bool) -> Result:
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
                                   {name: example_batch(examples)}, key, counted)
        return Result(servable, signature, outputs)

    # --- labels known later -----------------------------------------------------------------

    async def record_labels(self, model_name: str, body: bytes) -> dict:
        """`POST /v1/models/<name>/labels`: keeps the labels beside the request log and
        joins them to the rollout's keyed answers (`serving.labels`).

        Args:
            model_name: the model the labelled requests were sent to.
            body: JSON lines of `{"key": <request key>, "label": <label>}`.

        Returns:
            `{"labels": received, "joined": labels matched to an answer of the running
            rollout, "kept": the CSV file written, or null without a request log}`.

        Raises:
            ServingError: NOT_FOUND for a model this server does not serve; INVALID_ARGUMENT
                for a body that is not such lines (naming the line); FAILED_PRECONDITION
                when the server has neither a request log nor a rollout to take them.
        """
        if self.repository.view(model_name) is None:
            raise not_found(f"Servable not found for request: Latest({model_name})")
        if self.labels is None and self.monitor is None:
            raise failed_precondition("labels are kept beside the request log "
                                      "(--request_log_dir) and joined during a rollout "
                                      "(--rollout); this server has neither")
        pairs = parse_label_lines(body)
        kept = None
        if self.labels is not None:
            kept = await asyncio.get_running_loop().run_in_executor(
                self._executor, self.labels.keep, model_name, pairs)
        joined = (sum(self.monitor.label(model_name, key, label) for key, label in pairs)
                  if self.monitor is not None else 0)
        return {"labels": len(pairs), "joined": joined, "kept": kept}

    # --- model information ---------------------------------------------------------------------

    def metadata(self, spec: ModelSpec) -> tuple[model_pb2.ModelSpec, SignatureDefMap]:
        """The version's spec and every SignatureDef (GetModelMetadata).

        Args:
            spec: the model, and at most one of version and label.

        Returns:
            The answering version's spec, and all its SignatureDefs as written in the
            SavedModel (including ones without inputs, which requests cannot call).

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

        Unlike `servable`, versions that are loading, failed or unloaded count: the status
        API is how an operator sees why a version does not answer.

        Args:
            spec: the model, and optionally a version or a label (the label wins).

        Returns:
            One entry per version, newest first, with its state and load error, if any.

        Raises:
            ServingError: INVALID_ARGUMENT without a model name, or for a label not on a
                loaded version; NOT_FOUND for a model with no versions known, or a version
                the model does not have.
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
    """Exactly the signature's inputs, or TF Serving's message naming what is extra or missing.

    Raises:
        ServingError: INVALID_ARGUMENT when the input names differ from the signature's.
    """
    expected, sent = set(signature.inputs), set(inputs)
    if expected != sent:
        raise invalid_argument(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({{{','.join(sorted(sent))}}}) != len({{{','.join(sorted(expected))}}})."
            f" Sent extra: {{{','.join(sorted(sent - expected))}}}. Missing but "
            f"required: {{{','.join(sorted(expected - sent))}}}.")


def example_batch(serialized: list[bytes]) -> np.ndarray:
    """The ``[batch]`` string tensor a classify / regress signature takes."""
    batch = np.empty(len(serialized), dtype=object)
    batch[:] = serialized  # element-wise: np.array would make fixed-width bytes
    return batch
