"""The gRPC adapter: TF Serving's PredictionService and ModelService over the data plane.

Built on the servicer base classes of the ``tensorflow-serving-api`` package, so the
official client stubs (``prediction_service_pb2_grpc.PredictionServiceStub``...) talk to it
unchanged. ``ServingError`` becomes the matching gRPC status; anything else is INTERNAL.
Responses name the version that answered in ``model_spec.version``, as TF Serving's do;
the metadata ``x-request-key`` keeps a request on one side of a canary split.
"""
from __future__ import annotations

import functools
import logging
import time
from typing import Callable, Optional

import grpc
from google.protobuf import any_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    model_management_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving.dataplane import DataPlane, ModelSpec, answering_version
from serving.errors import ServingError, invalid_argument
from serving.metrics import Metrics
from serving.protocol import examples, tensors
from serving.traffic import REQUEST_KEY_HEADER

log = logging.getLogger("serving.grpc")
SIGNATURE_DEF_FIELD = "signature_def"


def _rpc(api: str) -> Callable:
    """Translates errors to gRPC statuses and counts the call, in one place for all RPCs.

    The call is counted before its answer leaves, as TF Serving does: a client that has its
    answer (or its error) and then reads the metrics sees its own call in them. While it
    runs it is also counted in the data plane's requests in flight, so that a call that is
    the only one runs its model on the event loop (``serving.dataplane.InlineCalls``), as
    a lone REST request does. It is counted when its handler starts, not when gRPC has
    read it: a call that arrives while another runs inline waits for that one, at most
    the inline budget.
    """

    def decorate(method):
        @functools.wraps(method)
        async def wrapper(self, request, context):
            started = time.perf_counter()
            answering_version.set(None)
            in_flight = self.dataplane.inline.in_flight
            in_flight.count += 1
            try:
                response = await method(self, request, context)
            except ServingError as err:
                status, message, code = err.grpc_status, err.message, err.code.value
            except Exception:
                log.exception("gRPC %s failed", api)
                status, message, code = grpc.StatusCode.INTERNAL, "Internal error", "INTERNAL"
            else:
                _observe(self.metrics, request, api, "OK", started)
                return response
            finally:
                in_flight.count -= 1
            _observe(self.metrics, request, api, code, started)
            await context.abort(status, message)
        return wrapper

    return decorate


def _observe(metrics: Optional[Metrics], request, api: str, code: str, started: float) -> None:
    name = request.model_spec.name if request.HasField("model_spec") else ""
    if metrics is not None and name:
        metrics.observe(name, api, "GRPC", code, time.perf_counter() - started,
                        answering_version.get())


def _spec(request, context) -> ModelSpec:
    """The request's model spec, with its canary key from the call's metadata if sent."""
    key = None
    for item in context.invocation_metadata() or ():
        if item[0] == REQUEST_KEY_HEADER:
            key = item[1] if isinstance(item[1], str) else item[1].decode("latin-1")
    return ModelSpec.from_proto(request.model_spec, key)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """TF Serving's PredictionService over the data plane; each RPC's ServingError becomes
    the gRPC status of its code (see `_rpc`)."""

    def __init__(self, dataplane: DataPlane, metrics: Optional[Metrics] = None) -> None:
        self.dataplane = dataplane
        self.metrics = metrics

    @_rpc("Predict")
    async def Predict(self, request: predict_pb2.PredictRequest, context):
        """TensorProtos in, TensorProtos out (only `output_filter`'s, when given)."""
        spec = _spec(request, context)
        result = await self.dataplane.predict(
            spec, lambda signature: tensors.inputs_from_protos(signature, request.inputs),
            tuple(request.output_filter), counted=True)
        response = predict_pb2.PredictResponse(model_spec=result.model_spec())
        for name, array in result.outputs.items():
            response.outputs[name].CopyFrom(tensors.to_proto(array))
        return response

    @_rpc("Classify")
    async def Classify(self, request: classification_pb2.ClassificationRequest, context):
        """tf.Examples through a classify signature, answered as (label, score) rows."""
        result = await self.dataplane.classify(_spec(request, context),
                                               examples.from_input(request.input), counted=True)
        response = classification_pb2.ClassificationResponse(model_spec=result.model_spec())
        classes, scores = result.outputs.get("classes"), result.outputs.get("scores")
        rows, width = (scores if scores is not None else classes).shape[:2]
        for row in range(rows):
            entry = response.result.classifications.add()
            for k in range(width):
                entry.classes.add(label=classes[row, k].decode() if classes is not None else "",
                                  score=float(scores[row, k]) if scores is not None else 0.0)
        return response

    @_rpc("Regress")
    async def Regress(self, request: regression_pb2.RegressionRequest, context):
        """tf.Examples through a regress signature, one value per example."""
        result = await self.dataplane.regress(_spec(request, context),
                                              examples.from_input(request.input), counted=True)
        response = regression_pb2.RegressionResponse(model_spec=result.model_spec())
        for value in result.outputs["outputs"].reshape(-1):
            response.result.regressions.add(value=float(value))
        return response

    @_rpc("GetModelMetadata")
    async def GetModelMetadata(self, request: get_model_metadata_pb2.GetModelMetadataRequest,
                               context):
        """The version's SignatureDefs, packed in an Any under `signature_def`.

        Raises:
            ServingError: INVALID_ARGUMENT when `metadata_field` is empty or names a field
                other than `signature_def` (the only one TF Serving has); as
                `DataPlane.metadata`. `_rpc` turns it into the call's gRPC status.
        """
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise invalid_argument(f"Metadata field {field} is not supported")
        if not request.metadata_field:
            raise invalid_argument("GetModelMetadataRequest must specify at least one "
                                   "metadata_field")
        model_spec, signatures = self.dataplane.metadata(_spec(request, context))
        response = get_model_metadata_pb2.GetModelMetadataResponse(model_spec=model_spec)
        packed = any_pb2.Any()
        packed.Pack(signatures)
        response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(packed)
        return response

    async def MultiInference(self, request, context):
        """Not implemented here: UNIMPLEMENTED, rather than the base class's default."""
        await context.abort(grpc.StatusCode.UNIMPLEMENTED,
                            "MultiInference is not supported by the embedded server")


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """TF Serving's ModelService: version states, and a new models.config pushed over gRPC."""

    def __init__(self, dataplane: DataPlane, reload_config: Callable,
                 metrics: Optional[Metrics] = None) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self._reload_config = reload_config

    @_rpc("GetModelStatus")
    async def GetModelStatus(self, request, context):
        """Every version's state, or the one the request names (see `DataPlane.status`)."""
        return self.dataplane.status(ModelSpec.from_proto(request.model_spec))

    async def HandleReloadConfigRequest(self, request: model_management_pb2.ReloadConfigRequest,
                                        context):
        """Applies a ModelServerConfig sent by a client; a refused one is reported in the
        response's status (INVALID_ARGUMENT), as TF Serving does, not as a failed call."""
        response = model_management_pb2.ReloadConfigResponse()
        try:
            await self._reload_config(request.config)
            response.status.error_code = 0
        except ServingError as err:  # INVALID_ARGUMENT, or INTERNAL from a REST worker
            response.status.error_code = err.grpc_status.value[0]
            response.status.error_message = err.message
        return response


def add_services(server: grpc.aio.Server, dataplane: DataPlane, reload_config: Callable,
                 metrics: Optional[Metrics]) -> None:
    """Registers both services on `server`, over one data plane (the REST port's too)."""
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(dataplane, metrics), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(dataplane, reload_config, metrics), server)
