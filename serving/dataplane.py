"""The data plane: one implementation of every serving API, which REST and gRPC adapt.

It resolves a request's model spec (name, version or label, signature) through the
repository, checks the signature fits the API (TF Serving's method names for classify and
regress), runs the model off the event loop (through the batcher when batching is on) and
returns numpy arrays and protos. Errors are ``ServingError``s; the adapters only translate.
"""
from __future__ import annotations

import asyncio
import contextvars
import dataclasses
from concurrent.futures import Executor
from typing import Callable, Mapping, Optional

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

    Model calls run on `executor`'s threads (through `batcher` when batching is on), never
    on the event loop. Every error is a `ServingError` with TF Serving's code and text.
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
                    key: Optional[str] = None) -> dict:
        if self.request_logs is not None:
            self.request_logs.sample(servable, signature, inputs, key)
        if self._batcher is not None:
            return await self._batcher.run(servable, signature.name, inputs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, servable.run, signature.name,
                                          inputs)

    async def predict(self, spec: ModelSpec, decode_inputs: InputDecoder,
                      output_filter: tuple[str, ...] = ()) -> Result:
        """Runs ``spec``'s signature on the request's inputs, decoded for that signature.

        The decoder gets the signature resolved here, so the version whose dtypes typed
        the inputs is the one that runs them, resolved once per request.

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
        outputs = await self._call(servable, signature, inputs, spec.request_key)
        if output_filter:
            outputs = {key: outputs[key] for key in output_filter}
        return Result(servable, signature, outputs)

    async def classify(self, spec: ModelSpec, examples: list[bytes]) -> Result:
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
        return await self._run_examples(servable, signature, examples, spec.request_key)

    async def regress(self, spec: ModelSpec, examples: list[bytes]) -> Result:
        """TF Serving's Regress: serialized tf.Examples through a regress signature.

        Raises:
            ServingError: as `classify`, for `tensorflow/serving/regress` and `outputs`.
        """
        servable, signature = self._examples_signature(spec, servable_lib.REGRESS_METHOD,
                                                       "regression")
        if "outputs" not in signature.outputs:
            raise invalid_argument("Expected regression signature outputs to contain outputs")
        return await self._run_examples(servable, signature, examples, spec.request_key)

    def _examples_signature(self, spec: ModelSpec, method: str, kind: str):
        servable, signature = self.signature(spec)
        if signature.method_name != method:
            raise invalid_argument(f"Expected {kind} signature method_name to be {method}. "
                                   f"Was: {signature.method_name}")
        if len(signature.inputs) != 1:
            raise invalid_argument(f"Expected one input Tensor in the {kind} signature.")
        return servable, signature

    async def _run_examples(self, servable, signature, examples: list[bytes],
                            key: Optional[str] = None) -> Result:
        (name,) = signature.inputs
        outputs = await self._call(servable, signature,
                                   {name: examples_lib.as_batch(examples)}, key)
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
