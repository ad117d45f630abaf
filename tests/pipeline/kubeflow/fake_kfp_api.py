"""A loopback Kubeflow Pipelines API server (the v2beta1 REST API, as published) for tests.

It holds pipelines, versions, experiments, runs and recurring runs in memory, records every
request (method, path, query, JSON body, headers) so a test can assert what the kfp SDK
sent, and can act as the backends whose differences the client must handle.

Paths, request and response fields, and error bodies come from:
- the `kfp_server_api` 2.0.5 package installed with kfp 2.5.0 (the SDK's generated client):
  `api/pipeline_upload_service_api.py` (POST /apis/v2beta1/pipelines/upload, multipart
  `uploadfile`, query `name`, `description`, `namespace`; POST .../upload_version, query
  `name`, `pipelineid`, `description`), `api/pipeline_service_api.py`,
  `api/experiment_service_api.py`, `api/run_service_api.py`,
  `api/recurring_run_service_api.py` (`:enable`, `:disable`), `api/healthz_service_api.py`;
  `models/v2beta1_*.py` `attribute_map` for JSON names (`recurringRuns` in
  `V2beta1ListRecurringRunsResponse`; `max_concurrency` is int64, so a string);
- kubeflow/pipelines `backend/api/v2beta1/swagger/{pipeline.upload,pipeline,run,
  recurring_run,experiment,healthz}.swagger.json` at tag 2.0.5 (HEAD adds `display_name`
  to the upload queries, honoured here too) and `backend/api/v2beta1/filter.proto`;
- the 2.0.5 backend: `src/apiserver/main.go` (healthz body `{commit_sha, tag_name,
  multi_user}`; grpc-gateway v1.16, so proto field names, no default values, errors as
  `{error, code, message, details}`); `server/pipeline_upload_server.go` (upload errors
  as `{error_message, error_details}`, status 500 for a duplicate name and a refused spec
  alike; 2.1.0's version answers 409 for AlreadyExists); `template/template.go` and
  `template/v2_template.go` (YAML documents, one a PipelineSpec that parses strictly, so a
  PipelineJob wrapper is none, with schemaVersion 2.1.0, pipelineInfo.name and root);
  `storage/pipeline_store.go` (pipeline names unique per namespace, version names per
  pipeline; the "already exist" messages); `model/*.go` `APIToModelFieldMap` (filter and
  sort keys); `list/list.go` (page size 20 by default, 200 at most; `sort_by` is
  "field [asc|desc]"); `server/api_converter.go` `toApiRecurringRun` and the recurring run
  checks (max_concurrency 1..10, cron parsed by robfig/cron, 5 or 6 fields), runs' unset
  `finished_at` sent as 1970-01-01.

Not modelled: the v1beta1 API, archiving, terminating, run details, artifacts. The bearer
token check is what an auth proxy in front of the API server does in multi-user
deployments (the API server checks none): 401 without a token, 403 with a wrong one.
"""
from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
import itertools
import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

API = "/apis/v2beta1"
_EPOCH = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
_UNSET_TIME = "1970-01-01T00:00:00Z"
_OPERATIONS = {1: "EQUALS", 2: "NOT_EQUALS", 9: "IS_SUBSTRING"}  # filter.proto numbers
_FINAL = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")
# grpc codes (google.rpc.Code) and the HTTP status grpc-gateway gives them
INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS, INTERNAL = 3, 5, 6, 13
_HTTP = {INVALID_ARGUMENT: 400, NOT_FOUND: 404, ALREADY_EXISTS: 409, INTERNAL: 500}


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any  # decoded JSON; for an upload {"uploadfile": filename, "bytes": n}
    headers: dict[str, str]


class ApiError(Exception):
    """An error response: status, and the body the real server would send."""

    def __init__(self, status: int, body: Any):
        super().__init__(status)
        self.status = status
        self.body = body


def grpc_error(code: int, message: str) -> ApiError:
    return ApiError(_HTTP[code], {"error": message, "code": code, "message": message,
                                  "details": []})


def upload_error(status: int, message: str) -> ApiError:
    return ApiError(status, {"error_message": message, "error_details": message})


class FakeKfpApi:
    """`with FakeKfpApi() as api:` serves on `api.url` until the block ends.

    Modes: `token` (require `Authorization: Bearer <token>`), `duplicate_status` (409 as
    backends from 2.1 answer a duplicate upload name, 500 as 2.0.x does), `refuse_specs`
    (a message: uploads and run creations are refused with it, status 500), `multi_user`
    (healthz says so; namespaces separate resources). `run_states`: the states a new run
    reports, one more each time it is fetched.
    """

    def __init__(self, *, token: Optional[str] = None, duplicate_status: int = 409,
                 multi_user: bool = False):
        self.token = token
        self.duplicate_status = duplicate_status
        self.multi_user = multi_user
        self.refuse_specs: Optional[str] = None
        self.run_states: list[str] = []
        self.requests: list[Recorded] = []
        self.pipelines: dict[str, dict] = {}
        self.versions: dict[str, dict] = {}
        self.experiments: dict[str, dict] = {}
        self.runs: dict[str, dict] = {}
        self.recurring_runs: dict[str, dict] = {}
        self._progress: dict[str, list[str]] = {}
        self._clock = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)  # polls often: shutdown is quick

    # -- lifecycle and inspection ------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeKfpApi":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def sent(self, method: str, path: str) -> list[Recorded]:
        """The requests with that method and path (path without the /apis/v2beta1)."""
        return [r for r in self.requests if r.method == method and r.path == API + path]

    def changes(self) -> list[Recorded]:
        """Every request that could change state (all but GET)."""
        return [r for r in self.requests if r.method != "GET"]

    def set_run_state(self, run_id: str, state: str) -> None:
        with self._lock:
            self._set_state(self.runs[run_id], state)

    # -- dispatch ----------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict[str, str], body: Any,
               headers: dict[str, str]) -> tuple[int, Any]:
        self.requests.append(Recorded(method, path, query, body, headers))
        try:
            self._authorize(headers)
            for route_method, pattern, action in self._routes():
                match = re.fullmatch(pattern, path)
                if match and route_method == method:
                    with self._lock:
                        return 200, action(query, body, *match.groups())
            raise ApiError(404, "Not Found")
        except ApiError as err:
            return err.status, err.body

    def _routes(self) -> list[tuple[str, str, Callable[..., Any]]]:
        one = r"/([^/:]+)"
        return [
            ("GET", API + "/healthz", self._healthz),
            ("POST", API + "/pipelines/upload", self._upload),
            ("POST", API + "/pipelines/upload_version", self._upload_version),
            ("GET", API + "/pipelines", self._list_pipelines),
            ("GET", API + "/pipelines" + one, self._get_pipeline),
            ("GET", API + "/pipelines" + one + "/versions", self._list_versions),
            ("GET", API + "/pipelines" + one + "/versions" + one, self._get_version),
            ("POST", API + "/experiments", self._create_experiment),
            ("GET", API + "/experiments", self._list_experiments),
            ("GET", API + "/experiments" + one, self._get_experiment),
            ("POST", API + "/runs", self._create_run),
            ("GET", API + "/runs", self._list_runs),
            ("GET", API + "/runs" + one, self._get_run),
            ("POST", API + "/recurringruns", self._create_recurring_run),
            ("GET", API + "/recurringruns", self._list_recurring_runs),
            ("GET", API + "/recurringruns" + one, self._get_recurring_run),
            ("DELETE", API + "/recurringruns" + one, self._delete_recurring_run),
            ("POST", API + "/recurringruns" + one + ":enable",
             lambda q, b, rid: self._set_recurring_mode(rid, True)),
            ("POST", API + "/recurringruns" + one + ":disable",
             lambda q, b, rid: self._set_recurring_mode(rid, False)),
        ]

    def _authorize(self, headers: dict[str, str]) -> None:
        if self.token is None:
            return
        sent = headers.get("authorization")
        if not sent:
            raise ApiError(401, "Jwt is missing")
        if sent != f"Bearer {self.token}":
            raise ApiError(403, "RBAC: access denied")

    # -- healthz and pipelines -----------------------------------------------------------
    def _healthz(self, query: dict, body: Any) -> dict:
        return {"commit_sha": "fake", "tag_name": "2.0.5-fake", "multi_user": self.multi_user}

    def _upload(self, query: dict, body: Any) -> dict:
        _require_file(body)
        name = query.get("display_name") or query.get("name") or _stem(body["uploadfile"])
        namespace = self._namespace(query)
        spec = self._package(body, "Failed to create a pipeline and a pipeline version")
        if any(p["display_name"] == name and p.get("namespace", "") == namespace
               for p in self.pipelines.values()):
            raise self._duplicate("Failed to create a pipeline and a pipeline version",
                                  f"Failed to create a new pipeline. The name {name} already "
                                  "exists. Please specify a new name")
        pipeline = _without_empty({"pipeline_id": str(uuid.uuid4()), "display_name": name,
                                   "description": query.get("description"),
                                   "created_at": self._tick(), "namespace": namespace})
        self.pipelines[pipeline["pipeline_id"]] = pipeline
        self._add_version(pipeline, name, query.get("description"), spec)
        return pipeline

    def _upload_version(self, query: dict, body: Any) -> dict:
        pipeline_id = query.get("pipelineid")
        if not pipeline_id:
            raise upload_error(400, "Failed to create a pipeline version due to error "
                                    "reading pipeline id")
        _require_file(body)
        spec = self._package(body, "Failed to create a pipeline version")
        pipeline = self.pipelines.get(pipeline_id)
        if pipeline is None:
            raise upload_error(500, "Failed to create a pipeline version: Failed to get "
                                    f"pipeline {pipeline_id}: Pipeline not found")
        name = query.get("display_name") or query.get("name") or _stem(body["uploadfile"])
        if any(v["pipeline_id"] == pipeline_id and v["display_name"] == name
               for v in self.versions.values()):
            raise self._duplicate("Failed to create a pipeline version",
                                  f"Failed to create a new pipeline version. The name {name} "
                                  "already exist. Specify a new name")
        return self._add_version(pipeline, name, query.get("description"), spec)

    def _add_version(self, pipeline: dict, name: str, description: Optional[str],
                     spec: dict) -> dict:
        version = _without_empty({"pipeline_id": pipeline["pipeline_id"],
                                  "pipeline_version_id": str(uuid.uuid4()),
                                  "display_name": name, "description": description,
                                  "created_at": self._tick(), "pipeline_spec": spec})
        self.versions[version["pipeline_version_id"]] = version
        return version

    def _package(self, body: Any, failure: str) -> dict:
        """The stored spec, parsed as `template.New` does, or the refusal 2.0.5 sends."""
        if self.refuse_specs:
            raise upload_error(500, f"{failure}: {self.refuse_specs}")
        try:
            return parse_package(body["content"])
        except ValueError as err:
            raise upload_error(500, f"{failure}: Invalid input error: {err}: pipeline spec "
                                    "is invalid") from None

    def _duplicate(self, failure: str, detail: str) -> ApiError:
        if self.duplicate_status == 409:
            return upload_error(409, f"{failure}. The pipeline already exists.: Already "
                                     f"exist error: {detail}")
        return upload_error(500, f"{failure}: Already exist error: {detail}")

    def _list_pipelines(self, query: dict, body: Any) -> dict:
        namespace = self._namespace(query)
        found = [p for p in self.pipelines.values() if p.get("namespace", "") == namespace]
        return _page(found, query, "pipelines")

    def _get_pipeline(self, query: dict, body: Any, pipeline_id: str) -> dict:
        return _get(self.pipelines, pipeline_id, "Pipeline")

    def _list_versions(self, query: dict, body: Any, pipeline_id: str) -> dict:
        _get(self.pipelines, pipeline_id, "Pipeline")
        found = [v for v in self.versions.values() if v["pipeline_id"] == pipeline_id]
        return _page(found, query, "pipeline_versions")

    def _get_version(self, query: dict, body: Any, pipeline_id: str, version_id: str) -> dict:
        return _get(self.versions, version_id, "PipelineVersion")

    # -- experiments -----------------------------------------------------------------
    def _create_experiment(self, query: dict, body: Any) -> dict:
        name = (body or {}).get("display_name")
        if not name:
            raise grpc_error(INVALID_ARGUMENT, "Invalid input error: Experiment name is empty")
        namespace = self._namespace(body)
        if any(e["display_name"] == name and e.get("namespace", "") == namespace
               for e in self.experiments.values()):
            raise grpc_error(ALREADY_EXISTS, "Failed to create a new experiment. The name "
                                             f"{name} already exists. Please specify a new name")
        experiment = _without_empty({"experiment_id": str(uuid.uuid4()), "display_name": name,
                                     "description": body.get("description"),
                                     "created_at": self._tick(), "namespace": namespace,
                                     "storage_state": "AVAILABLE"})
        self.experiments[experiment["experiment_id"]] = experiment
        return experiment

    def _list_experiments(self, query: dict, body: Any) -> dict:
        namespace = self._namespace(query)
        found = [e for e in self.experiments.values() if e.get("namespace", "") == namespace]
        return _page(found, query, "experiments")

    def _get_experiment(self, query: dict, body: Any, experiment_id: str) -> dict:
        return _get(self.experiments, experiment_id, "Experiment")

    # -- runs --------------------------------------------------------------------------
    def _create_run(self, query: dict, body: Any) -> dict:
        body = body or {}
        if not body.get("display_name"):
            raise grpc_error(INVALID_ARGUMENT, "Invalid input error: The run name is empty")
        source = self._pipeline_source(body)
        experiment = _get(self.experiments, body.get("experiment_id", ""), "Experiment")
        created = self._tick()
        run = _without_empty({
            "experiment_id": experiment["experiment_id"], "run_id": str(uuid.uuid4()),
            "display_name": body["display_name"], "storage_state": "AVAILABLE",
            "description": body.get("description"), **source,
            "runtime_config": _without_empty(body.get("runtime_config") or {}) or None,
            "service_account": body.get("service_account"), "created_at": created,
            "scheduled_at": created, "finished_at": _UNSET_TIME})
        self.runs[run["run_id"]] = run
        self._set_state(run, "PENDING")
        self._progress[run["run_id"]] = list(self.run_states)
        return run

    def _get_run(self, query: dict, body: Any, run_id: str) -> dict:
        run = _get(self.runs, run_id, "Run")
        if self._progress.get(run_id):
            self._set_state(run, self._progress[run_id].pop(0))
        return run

    def _list_runs(self, query: dict, body: Any) -> dict:
        if query.get("experiment_id"):
            found = [r for r in self.runs.values()
                     if r["experiment_id"] == query["experiment_id"]]
        else:
            namespace = self._namespace(query)
            found = [r for r in self.runs.values()
                     if self.experiments[r["experiment_id"]].get("namespace", "") == namespace]
        return _page(found, query, "runs")

    def _set_state(self, run: dict, state: str) -> None:
        now = self._tick()
        run["state"] = state
        run.setdefault("state_history", []).append({"update_time": now, "state": state})
        if state in _FINAL:
            run["finished_at"] = now
        if state == "FAILED":
            run["error"] = {"code": 2, "message": "task 'say' failed: exit status 1"}

    # -- recurring runs ----------------------------------------------------------------
    def _create_recurring_run(self, query: dict, body: Any) -> dict:
        body = body or {}
        concurrency = int(body.get("max_concurrency") or 0)
        if not 1 <= concurrency <= 10:
            raise grpc_error(INVALID_ARGUMENT, "Invalid input error: Max concurrency of a "
                                               "recurring run must be at least 1 and at most "
                                               f"10. Received {concurrency}")
        cron = ((body.get("trigger") or {}).get("cron_schedule") or {}).get("cron")
        if cron is not None and not 5 <= len(cron.split()) <= 6:
            raise grpc_error(INVALID_ARGUMENT, "Invalid input error: Schedule cron is not a "
                                               "supported format(https://godoc.org/github.com/"
                                               "robfig/cron). Error: Expected 5 to 6 fields, "
                                               f"found {len(cron.split())}: {cron}")
        source = self._pipeline_source(body)
        experiment = _get(self.experiments, body.get("experiment_id", ""), "Experiment")
        enabled = body.get("mode", "ENABLE") != "DISABLE"
        created = self._tick()
        recurring_run = _without_empty({
            "recurring_run_id": str(uuid.uuid4()), "display_name": body.get("display_name"),
            "description": body.get("description"), **source,
            "runtime_config": _without_empty(body.get("runtime_config") or {}) or None,
            "service_account": body.get("service_account"),
            "max_concurrency": str(concurrency), "trigger": body.get("trigger"),
            "mode": "ENABLE" if enabled else "DISABLE",
            "status": "ENABLED" if enabled else "DISABLED",
            "created_at": created, "updated_at": created,
            "no_catchup": bool(body.get("no_catchup")) or None,  # false is left out
            "namespace": experiment.get("namespace"),
            "experiment_id": experiment["experiment_id"]})
        self.recurring_runs[recurring_run["recurring_run_id"]] = recurring_run
        return recurring_run

    def _get_recurring_run(self, query: dict, body: Any, recurring_run_id: str) -> dict:
        return _get(self.recurring_runs, recurring_run_id, "RecurringRun")

    def _list_recurring_runs(self, query: dict, body: Any) -> dict:
        found = list(self.recurring_runs.values())
        if query.get("experiment_id"):
            found = [r for r in found if r["experiment_id"] == query["experiment_id"]]
        elif self.multi_user:
            found = [r for r in found if r.get("namespace", "") == query.get("namespace", "")]
        return _page(found, query, "recurringRuns")

    def _delete_recurring_run(self, query: dict, body: Any, recurring_run_id: str) -> dict:
        _get(self.recurring_runs, recurring_run_id, "RecurringRun")
        del self.recurring_runs[recurring_run_id]
        return {}

    def _set_recurring_mode(self, recurring_run_id: str, enabled: bool) -> dict:
        recurring_run = _get(self.recurring_runs, recurring_run_id, "RecurringRun")
        recurring_run.update(mode="ENABLE" if enabled else "DISABLE",
                             status="ENABLED" if enabled else "DISABLED",
                             updated_at=self._tick())
        return {}

    # -- shared ------------------------------------------------------------------------
    def _pipeline_source(self, body: dict) -> dict:
        """A run's pipeline: an inline spec (parsed like an upload) or a version."""
        if self.refuse_specs:
            raise grpc_error(INTERNAL, f"Failed to create a run: {self.refuse_specs}")
        if body.get("pipeline_spec"):
            try:
                parse_package(_struct_to_yaml(body["pipeline_spec"]))
            except ValueError as err:
                raise grpc_error(INVALID_ARGUMENT, f"Invalid input error: {err}") from None
            return {"pipeline_spec": body["pipeline_spec"]}
        reference = body.get("pipeline_version_reference") or {}
        version_id = reference.get("pipeline_version_id")
        if not version_id:
            raise grpc_error(INVALID_ARGUMENT, "Invalid input error: a pipeline spec or a "
                                               "pipeline version reference is required")
        version = _get(self.versions, version_id, "PipelineVersion")
        return {"pipeline_version_reference": {"pipeline_id": version["pipeline_id"],
                                               "pipeline_version_id": version_id}}

    def _namespace(self, source: Optional[dict]) -> str:
        """Single-user backends keep every resource in the one (empty) namespace."""
        if not self.multi_user:
            return ""
        return (source or {}).get("namespace") or ""

    def _tick(self) -> str:
        moment = _EPOCH + dt.timedelta(seconds=next(self._clock))
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_package(content: bytes) -> dict:
    """The pipeline spec as the server stores it, or ValueError with its complaint."""
    try:
        documents = [d for d in yaml.safe_load_all(content.decode()) if d is not None]
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"unable to decode yaml document: {err}") from None
    specs = [d for d in documents if isinstance(d, dict) and _is_pipeline_spec(d)]
    if not specs:
        raise ValueError("unknown template format")
    if len(specs) > 1:
        raise ValueError("multiple pipeline specs provided")
    spec = specs[0]
    if spec.get("schemaVersion") != "2.1.0":
        raise ValueError("KFP only supports schema version 2.1.0, but the pipeline spec has "
                         f"version {spec.get('schemaVersion', '')}")
    others = [d for d in documents if d is not spec]
    if others:
        return {"pipeline_spec": spec, "platform_spec": others[0]}
    return spec


def _struct_to_yaml(struct: dict) -> bytes:
    """`pipelineSpecStructToYamlString` (server/api_util.go): the spec alone, or
    `{pipeline_spec, platform_spec}` as two YAML documents (how kfp sends a package with a
    platform spec)."""
    if "pipeline_spec" in struct:
        documents = [struct["pipeline_spec"]] + (
            [struct["platform_spec"]] if "platform_spec" in struct else [])
        return yaml.safe_dump_all(documents).encode()
    return yaml.safe_dump(struct).encode()


def _is_pipeline_spec(document: dict) -> bool:
    """`isPipelineSpec`: parses strictly as a PipelineSpec, with a name and a root."""
    spec = pipeline_spec_pb2.PipelineSpec()
    try:
        json_format.ParseDict(json.loads(json.dumps(document, default=str)), spec)
    except (json_format.ParseError, TypeError, ValueError):
        return False
    return bool(spec.pipeline_info.name) and spec.HasField("root")


def _page(items: list[dict], query: dict, key: str) -> dict:
    """Filter, sort and one page, as `list.go` does; empty fields left out (proto3 JSON)."""
    items = [i for i in items if _matches(i, query.get("filter"))]
    field, _, order = (query.get("sort_by") or "created_at").partition(" ")
    if field not in ("created_at", "display_name") or order not in ("", "asc", "desc"):
        raise grpc_error(INVALID_ARGUMENT, f"Invalid input error: Received invalid sort by "
                                           f"format {query.get('sort_by')!r}")
    items = sorted(items, key=lambda i: i.get(field, ""), reverse=order == "desc")
    size = min(int(query.get("page_size") or 20) or 20, 200)
    start = int(query.get("page_token") or 0)
    page = items[start:start + size]
    more = start + size < len(items)
    return _without_empty({key: page, "total_size": len(items),
                           "next_page_token": str(start + size) if more else None})


def _matches(item: dict, filter_json: Optional[str]) -> bool:
    """A filter.proto Filter in JSON, with the operation as a number (as kfp's client.py
    sends it) or a name, and `stringValue` or `string_value`."""
    if not filter_json:
        return True
    try:
        predicates = json.loads(filter_json).get("predicates", [])
    except (ValueError, AttributeError):
        raise grpc_error(INVALID_ARGUMENT, "Invalid input error: failed to parse valid "
                                           "filter") from None
    for predicate in predicates:
        operation = predicate.get("operation")
        operation = _OPERATIONS.get(operation, operation)
        key = predicate.get("key")
        value = predicate.get("stringValue", predicate.get("string_value"))
        if key != "display_name" or operation not in _OPERATIONS.values():
            raise grpc_error(INVALID_ARGUMENT, f"Invalid input error: unsupported filter "
                                               f"{predicate}")
        actual = item.get("display_name", "")
        if not {"EQUALS": actual == value, "NOT_EQUALS": actual != value,
                "IS_SUBSTRING": str(value) in actual}[operation]:
            return False
    return True


def _require_file(body: Any) -> None:
    if not isinstance(body, dict) or "content" not in body:
        raise upload_error(400, "Failed to read pipeline from file: http: no such file")


def _get(table: dict[str, dict], key: str, kind: str) -> dict:
    if key not in table:
        raise grpc_error(NOT_FOUND, f"{kind} {key} not found")
    return table[key]


def _without_empty(fields: dict) -> dict:
    return {k: v for k, v in fields.items() if v not in (None, "", [], {})}


def _stem(filename: str) -> str:
    return re.sub(r"\.(ya?ml|json|zip|tar\.gz|tgz)$", "", filename or "pipeline")


def _handler_for(api: FakeKfpApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = _decode_body(headers.get("content-type", ""), raw)
            status, answer = api.handle(self.command, url.path, query, body, headers)
            text = answer if isinstance(answer, str) else json.dumps(answer)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain" if isinstance(answer, str)
                             else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = _serve

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

    return Handler


def _decode_body(content_type: str, raw: bytes) -> Any:
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + raw)
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") == "uploadfile":
                content = part.get_payload(decode=True) or b""
                return {"uploadfile": part.get_filename(), "bytes": len(content),
                        "content": content}
        return {}
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
