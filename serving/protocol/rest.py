"""The REST adapter: TF Serving's HTTP API over the data plane, served over ``serving.http``.

Paths are matched with TF Serving's own patterns (case-insensitive):
``GET /v1/models/{name}[/versions/{v} | /labels/{l}][/metadata]`` and
``POST /v1/models/{name}[/versions/{v} | /labels/{l}]:(predict|classify|regress)``, and
ours: ``POST /v1/models/{name}/labels`` (labels known later, `serving.labels`).
Anything else under ``/v1/`` is a 400 "Malformed request", anything outside it a 404.
Every error leaves as ``{"error": "..."}`` with the status of its canonical code.

Beyond TF Serving (the bodies stay exactly its own): every answer from a model version
carries the header ``X-Model-Version`` naming it, and a request's ``X-Request-Key``
header keeps it on one side of a canary split (``serving.traffic``).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
import urllib.parse
from typing import Optional

from google.protobuf import json_format

from serving.dataplane import DataPlane, ModelSpec, answering_version
from serving.errors import Code, ServingError, invalid_argument
from serving.metrics import Metrics
from serving.protocol import examples, json_codec
from serving.protocol.http import HttpServer, Limits
from serving.traffic import REQUEST_KEY_HEADER

log = logging.getLogger("serving.protocol.rest")

_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE)
_LABELS_PATH = re.compile(r"/v1/models/([^/:]+)/labels", re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
_JSON_TYPE = "application/json"
VERSION_HEADER = "X-Model-Version"
_PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_JSON_OPTIONS = dict(including_default_value_fields=True, preserving_proto_field_name=True,
                     indent=1)


class RestApi:
    """TF Serving's REST API over the data plane, framework-free:
    (method, path, body) -> (status, JSON bytes).

    Never raises for a request: every error becomes TF Serving's `{"error": ...}` body with
    its status code (`serving/errors.py`: 400 for a client's mistake, 404 for an unknown
    model or version, 503 for a full batch queue, 504 for a timeout, 500 only for a server
    fault), counted in the metrics per model and API.
    """

    def __init__(self, dataplane: DataPlane, metrics: Optional[Metrics] = None,
                 timeout_s: Optional[float] = None) -> None:
        self.dataplane = dataplane
        self.metrics = metrics
        self.timeout_s = timeout_s

    async def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        """Answers one request: `/v1/models/<name>[/versions/<v>|/labels/<l>][/metadata]`
        (GET) and `...:predict|:classify|:regress` (POST).

        Raises:
            asyncio.CancelledError: the task running it was cancelled;
                a request's own errors are never raised, they are the answer.
        """
        status, payload, _ = await self.answer(method, path, body)
        return status, payload

    async def answer(self, method: str, path: str, body: bytes,
                     request_key: Optional[str] = None, counted: bool = False
                     ) -> tuple[int, bytes, Optional[int]]:
        """As `handle`, with the request's canary key, and the version that answered (None
        when the request reached no version). ``counted``: the HTTP layer counts the
        request in the data plane's in-flight requests, so its model call may run inline.

        Returns:
            The HTTP status, the JSON body (`{"error": ...}` for a refused request: 400 for
            an unknown path under /v1/ or a client's mistake, 404 for one outside /v1/ or an
            unknown model or version, 504 past the REST timeout, 500 for a server fault),
            and the answering version.

        Raises:
            asyncio.CancelledError: the task was cancelled other than by the REST timeout;
                a request's own errors are never raised, they are the answer.
        """
        started = time.perf_counter()
        model_name, api = "", "unknown"
        answering_version.set(None)
        try:
            route = self._route(method, path)
            if route is None:
                if path.startswith("/v1/"):
                    raise invalid_argument(f"Malformed request: {method} {path}")
                return 404, json_codec.error_body(f"Not found: {method} {path}"), None
            model_name, api, spec, action = route
            if request_key:
                spec = dataclasses.replace(spec, request_key=request_key)
            document = await self._answer(api, spec, action, body, counted)
            status, payload = 200, document
        except ServingError as err:
            status, payload = err.http_status, json_codec.error_body(err.message)
            code = err.code.value
        except Exception:  # a fault of the server, never of the client: logged, 500
            log.exception("REST request %s %s failed", method, path)
            status, payload, code = 500, json_codec.error_body("Internal error"), "INTERNAL"
        else:
            code = "OK"
        version = answering_version.get()  # (the status API lists versions: none)
        if self.metrics is not None and model_name:
            self.metrics.observe(model_name, api, "REST", code, time.perf_counter() - started,
                                 version)
        return status, payload, version

    def _route(self, method: str, path: str):
        if method == "POST":
            match = _PREDICTION_PATH.fullmatch(path)
            if match:
                name, version, label, action = match.groups()
                spec = self._spec(name, version, label)
                return spec.name, action.capitalize(), spec, action.lower()
            match = _LABELS_PATH.fullmatch(path)
            if match:
                spec = self._spec(match.group(1), None, None)
                return spec.name, "Labels", spec, "labels"
        elif method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if match:
                name, version, label, metadata = match.groups()
                spec = self._spec(name or "", version, label)
                api = "GetModelMetadata" if metadata else "GetModelStatus"
                return spec.name, api, spec, api
        return None

    @staticmethod
    def _spec(name: str, version: Optional[str], label: Optional[str]) -> ModelSpec:
        return ModelSpec(urllib.parse.unquote(name), int(version) if version else None,
                         urllib.parse.unquote(label) if label else None)

    async def _answer(self, api: str, spec: ModelSpec, action: str, body: bytes,
                      counted: bool) -> bytes:
        if action == "GetModelStatus":
            return json_format.MessageToJson(self.dataplane.status(spec),
                                             **_JSON_OPTIONS).encode()
        if action == "GetModelMetadata":
            return self._metadata(spec)
        if action == "labels":
            return json.dumps(await self.dataplane.record_labels(spec.name, body)).encode()
        call = {"predict": self._predict, "classify": self._classify,
                "regress": self._regress}[action]
        if self.timeout_s:
            task = asyncio.current_task()
            expired = []
            timer = asyncio.get_running_loop().call_later(
                self.timeout_s, lambda: (expired.append(True), task.cancel()))
            try:
                return await call(spec, body, counted)
            except asyncio.CancelledError:
                if expired:
                    raise ServingError(Code.DEADLINE_EXCEEDED, "Deadline exceeded") from None
                raise
            finally:
                timer.cancel()
        return await call(spec, body, counted)

    def _metadata(self, spec: ModelSpec) -> bytes:
        model_spec, signatures = self.dataplane.metadata(spec)
        model_spec_json = json_format.MessageToJson(model_spec, **_JSON_OPTIONS)
        signatures_json = json_format.MessageToJson(signatures, **_JSON_OPTIONS)
        return (f'{{\n"model_spec":{model_spec_json},\n"metadata": {{"signature_def": '
                f'{signatures_json}}}\n}}\n').encode()

    async def _predict(self, spec: ModelSpec, body: bytes, counted: bool) -> bytes:
        request = json_codec.read_predict(body)
        spec = dataclasses.replace(spec, signature_name=request.signature_name)
        result = await self.dataplane.predict(
            spec, lambda signature: json_codec.predict_inputs(request, signature.input_dtypes),
            counted=counted)
        return json_codec.dumps(json_codec.predict_response(result.outputs, request.format))

    async def _classify(self, spec: ModelSpec, body: bytes, counted: bool) -> bytes:
        signature_name, items, context = json_codec.read_examples(body, "classify")
        spec = dataclasses.replace(spec, signature_name=signature_name)
        result = await self.dataplane.classify(spec, examples.from_json(items, context),
                                               counted)
        return json_codec.dumps(json_codec.classify_response(result.outputs.get("classes"),
                                                             result.outputs.get("scores")))

    async def _regress(self, spec: ModelSpec, body: bytes, counted: bool) -> bytes:
        signature_name, items, context = json_codec.read_examples(body, "regress")
        spec = dataclasses.replace(spec, signature_name=signature_name)
        result = await self.dataplane.regress(spec, examples.from_json(items, context),
                                              counted)
        return json_codec.dumps(json_codec.regress_response(result.outputs["outputs"]))


class RestHandler:
    """The HTTP handler of the REST port: the metrics page, the 413 answer, else the API.

    Served by ``make_http_server``'s server, which counts every request in the data plane's
    in-flight requests from its arrival: so the API is told its requests are ``counted``.
    """

    def __init__(self, api: RestApi, metrics_path: Optional[str], max_body_bytes: int) -> None:
        self.api = api
        self.metrics_path = metrics_path
        self.max_body_bytes = max_body_bytes

    async def __call__(self, method: str, path: str, body: Optional[bytes],
                       headers: Optional[dict[str, str]] = None) -> tuple:
        if body is None:  # read and dropped: a clear answer, and the connection lives on
            return 413, _JSON_TYPE, json_codec.error_body(
                f"Request body is larger than the server's limit of {self.max_body_bytes} "
                "bytes (--max_request_bytes)")
        if self.metrics_path and path == self.metrics_path and method == "GET" and \
                self.api.metrics is not None:
            return 200, _PROMETHEUS_TYPE, self.api.metrics.exposition()
        status, payload, version = await self.api.answer(
            method, path, body, headers.get(REQUEST_KEY_HEADER) if headers else None,
            counted=True)
        if version is None:
            return status, _JSON_TYPE, payload
        return status, _JSON_TYPE, payload, ((VERSION_HEADER, str(version)),)


def make_http_server(api: RestApi, metrics_path: Optional[str], limits: Limits) -> HttpServer:
    """The REST port: `api` behind the HTTP layer, which reads each request's canary key
    header and counts requests in flight for the data plane's inline decision."""
    return HttpServer(RestHandler(api, metrics_path, limits.max_body_bytes), limits,
                      request_headers=(REQUEST_KEY_HEADER,),
                      in_flight=api.dataplane.inline.in_flight)
