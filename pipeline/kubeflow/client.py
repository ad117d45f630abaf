"""A KFP API server, reached through the kfp SDK (`kfp.Client`, kfp 2.5), with every
failure turned into one line a person can act on.

Why a wrapper rather than `kfp.Client` as it is:
- kfp 2.5 prints links on stdout (`Experiment details: ...`), warns (FutureWarning) on
  every construction and logs through the root logger; `sdk_output` keeps all of it away
  unless `--verbose`, where it goes to stderr (stdout stays the command's own).
- Its constructor asks `/healthz` (to detect multi-user mode) and retries a failure five
  times, five seconds apart (`Client.get_kfp_healthz`): a wrong token would cost 25 s.
  `_Sdk` asks once.
- Errors arrive as `kfp_server_api.ApiException` (status, body) or as urllib3 errors
  (host unreachable); `_problem` names what failed, the server's own message and the fix.
- `enable_caching` is never passed: kfp 2.5 applies it only when a package file is
  submitted and silently ignores it for a pipeline version, so caching is decided in the
  compiled package, the same for `run` and `schedule`.
- The namespace (multi-user KFP) is passed explicitly on every call that takes one.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import socket
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar

import kfp
import kfp_server_api
import urllib3
from google.protobuf import json_format
from kfp.client.client import KF_PIPELINES_ENDPOINT_ENV, KF_PIPELINES_UI_ENDPOINT_ENV

from pipeline import errors
from pipeline.definition.config import PipelineConfig
from pipeline.kubeflow.schedule import Schedule

REQUEST_TIMEOUT_SECONDS = 60  # urllib3 waits forever by default (kfp passes no timeout)
FINAL_STATES = ("SUCCEEDED", "SKIPPED", "FAILED", "CANCELED")  # V2beta1RuntimeState
_EQUALS = 1  # filter.proto Predicate.Operation EQUALS, encoded as kfp's client.py does
_PAGE_SIZE = 100
T = TypeVar("T")


class UsageError(errors.UsageError):
    """The command line or config cannot name a server to talk to (exit code 2)."""


class KfpError(errors.UserError):
    """The server could not be reached or refused a request; the message is one line."""


@dataclass(frozen=True)
class Endpoint:
    """Where the KFP API is and how to authenticate to it."""

    host: str
    token: Optional[str]
    token_env: str
    namespace: Optional[str]

    @property
    def ui(self) -> str:
        """Base of the UI links, as kfp builds them (`Client._get_url_prefix`)."""
        return os.environ.get(KF_PIPELINES_UI_ENDPOINT_ENV, self.host).rstrip("/")


def endpoint(config: PipelineConfig, host: Optional[str] = None, token: Optional[str] = None,
             environ: Optional[Mapping[str, str]] = None) -> Endpoint:
    """`--host`, else `kubeflow.host`, else $KF_PIPELINES_ENDPOINT (the kfp SDK's own
    variable); the token from `--token`, else the variable `kubeflow.token_env` names.

    Raises:
        UsageError: no endpoint is given anywhere, or it lacks an http:// or https://
            scheme (exit code 2: the command line or config must change).
    """
    environ = os.environ if environ is None else environ
    chosen = host or config.kubeflow.host or environ.get(KF_PIPELINES_ENDPOINT_ENV)
    if not chosen:
        raise UsageError("no KFP endpoint: set kubeflow.host in the config, pass --host, or "
                         f"set ${KF_PIPELINES_ENDPOINT_ENV} (e.g. http://localhost:8080 "
                         "through `kubectl port-forward -n kubeflow svc/ml-pipeline-ui "
                         "8080:80`)")
    if not re.match(r"^https?://", chosen):
        raise UsageError(f"KFP endpoint '{chosen}' needs a scheme: http://{chosen} or "
                         f"https://{chosen}")
    token_env = config.kubeflow.token_env
    return Endpoint(host=chosen.rstrip("/"), token=token or environ.get(token_env) or None,
                    token_env=token_env, namespace=config.kubeflow.namespace)


@contextlib.contextmanager
def sdk_output(verbose: bool) -> Iterator[None]:
    """While the SDK runs: its prints go to stderr (verbose) or nowhere, its warnings and
    logs show only when verbose, and no request waits longer than the timeout (urllib3
    1.26 sockets take Python's default timeout when kfp gives none)."""
    previous_timeout = socket.getdefaulttimeout()
    previous_disable = logging.root.manager.disable
    socket.setdefaulttimeout(REQUEST_TIMEOUT_SECONDS)
    try:
        if verbose:
            with contextlib.redirect_stdout(sys.stderr):
                yield
        else:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                logging.disable(logging.CRITICAL)
                yield
    finally:
        logging.disable(previous_disable)
        socket.setdefaulttimeout(previous_timeout)


class _Sdk(kfp.Client):
    """`kfp.Client` asking `/healthz` once instead of five times, 5 s apart, so that an
    unreachable host or a refused token is reported at once."""

    def get_kfp_healthz(self, sleep_duration: int = 5) -> Any:
        del sleep_duration  # kept for the signature: nothing is retried
        return self._healthz_api.get_healthz()


@dataclass(frozen=True)
class Uploaded:
    """What an upload made: the ids a run or schedule needs, and whether the pipeline was
    new (else a new version of an existing one)."""

    pipeline_id: str
    version_id: str
    version_name: str
    new_pipeline: bool


class KfpClient:
    """The calls the `mlops kfp` verbs make, each named for its error message."""

    def __init__(self, where: Endpoint, verbose: bool = False):
        self.endpoint = where
        self._verbose = verbose
        self._sdk = self._call(
            "connect", lambda: _Sdk(host=where.host, existing_token=where.token,
                                    namespace=where.namespace or "kubeflow"))
        # kfp reads a default namespace from ~/.config/kfp/context.json; the config wins.
        self.namespace = where.namespace or self._sdk.get_user_namespace() or None

    # -- pipelines ---------------------------------------------------------------------
    def find_pipeline(self, name: str) -> Any:
        """The pipeline of that name (`V2beta1Pipeline`), or None.

        Raises:
            KfpError: the server cannot be reached (or TLS fails), or refuses the request
                (a token missing, expired or not allowed; not found; a server error);
                one line naming the action and what to check.
        """
        found = self._call(f"look up pipeline '{name}'", self._sdk.list_pipelines,
                           filter=_name_filter(name), namespace=self.namespace, page_size=10)
        return next((p for p in found.pipelines or [] if p.display_name == name), None)

    def require_pipeline(self, name: str) -> Any:
        """The pipeline of that name, for verbs that run an uploaded version.

        Raises:
            KfpError: no pipeline has that name (in the namespace): upload it first; or
                as `find_pipeline`.
        """
        pipeline = self.find_pipeline(name)
        if pipeline is None:
            raise KfpError(f"no pipeline named '{name}' on {self.endpoint.host}"
                           + (f" in namespace {self.namespace}" if self.namespace else "")
                           + ": run `mlops kfp upload` first")
        return pipeline

    def latest_version(self, pipeline: Any) -> Any:
        """The newest version (`V2beta1PipelineVersion`, with its `pipeline_spec`).

        Raises:
            KfpError: the pipeline has no version; or the server cannot be reached or
                refuses the request (as `find_pipeline`).
        """
        found = self._call(f"list the versions of pipeline '{pipeline.display_name}'",
                           self._sdk.list_pipeline_versions, pipeline_id=pipeline.pipeline_id,
                           page_size=1, sort_by="created_at desc")
        if not found.pipeline_versions:
            raise KfpError(f"pipeline '{pipeline.display_name}' has no version on "
                           f"{self.endpoint.host}: run `mlops kfp upload`")
        return found.pipeline_versions[0]

    def upload(self, package: Path, name: str, version_name: str) -> Uploaded:
        """A new pipeline, or a new version of the pipeline that has the name already.

        Raises:
            KfpError: the SDK cannot read the package, the name or version name is taken,
                or the server cannot be reached or refuses the request (as
                `find_pipeline`).
        """
        existing = self.find_pipeline(name)
        if existing is None:
            pipeline = self._call(f"upload {package} as pipeline '{name}'",
                                  self._sdk.upload_pipeline, str(package),
                                  pipeline_name=name, namespace=self.namespace)
            version = self.latest_version(pipeline)
            return Uploaded(pipeline.pipeline_id, version.pipeline_version_id,
                            version.display_name, new_pipeline=True)
        version = self._call(f"upload {package} as version '{version_name}' of pipeline "
                             f"'{name}'", self._sdk.upload_pipeline_version, str(package),
                             pipeline_version_name=version_name,
                             pipeline_id=existing.pipeline_id)
        return Uploaded(existing.pipeline_id, version.pipeline_version_id,
                        version.display_name, new_pipeline=False)

    # -- experiments and runs ----------------------------------------------------------
    def find_experiment(self, name: str) -> Any:
        """The experiment of that name, or None (listing runs must not create one).

        Raises:
            KfpError: the server cannot be reached (or TLS fails), or refuses the request
                (a token missing, expired or not allowed; not found; a server error);
                one line naming the action and what to check.
        """
        found = self._call(f"look up experiment '{name}'", self._sdk.list_experiments,
                           filter=_name_filter(name), namespace=self.namespace, page_size=10)
        return next((e for e in found.experiments or [] if e.display_name == name), None)

    def ensure_experiment(self, name: str) -> Any:
        """The experiment of that name, created when missing (the SDK's get-or-create).

        Raises:
            KfpError: the server cannot be reached (or TLS fails), or refuses the request
                (a token missing, expired or not allowed; not found; a server error);
                one line naming the action and what to check.
        """
        return self._call(f"create experiment '{name}'", self._sdk.create_experiment,
                          name=name, namespace=self.namespace)

    def start_run(self, *, experiment_id: str, run_name: str, pipeline_root: str,
                  parameters: dict[str, Any], package: Optional[Path] = None,
                  version: Any = None) -> Any:
        """A run of the package, or else of the pipeline version; the root is given here
        because a bare PipelineSpec carries none.

        Raises:
            KfpError: the SDK cannot read the package, the server refuses the run (a
                parameter it does not take, say), or cannot be reached or refuses the
                request (as `find_pipeline`).
        """
        source: dict[str, Any] = (
            {"pipeline_package_path": str(package)} if package is not None else
            {"pipeline_id": version.pipeline_id, "version_id": version.pipeline_version_id})
        return self._call(f"create run '{run_name}'", self._sdk.run_pipeline,
                          experiment_id=experiment_id, job_name=run_name, params=parameters,
                          pipeline_root=pipeline_root, **source)

    def get_run(self, run_id: str) -> Any:
        """The run as the server has it now: state, error, timings.

        Raises:
            KfpError: the server cannot be reached (or TLS fails), or refuses the request
                (a token missing, expired or not allowed; not found; a server error);
                one line naming the action and what to check.
        """
        return self._call(f"get run {run_id}", self._sdk.get_run, run_id)

    def wait(self, run_id: str, poll_seconds: float,
             on_state: Callable[[str], None] = lambda state: None) -> Any:
        """Polls the run until a final state; `on_state` hears each new state.

        Returns:
            The run in its final state (SUCCEEDED, SKIPPED, FAILED or CANCELED): a failed
            run is returned, not raised, so the caller words the outcome.

        Raises:
            KfpError: as `get_run`, on any poll.
        """
        last = None
        while True:
            run = self.get_run(run_id)
            state = str(run.state or "RUNTIME_STATE_UNSPECIFIED")
            if state != last:
                on_state(state)
                last = state
            if state in FINAL_STATES:
                return run
            time.sleep(poll_seconds)

    def list_runs(self, experiment_id: str, limit: int) -> list[Any]:
        """The experiment's newest runs first.

        Raises:
            KfpError: the server cannot be reached (or TLS fails), or refuses the request
                (a token missing, expired or not allowed; not found; a server error);
                one line naming the action and what to check.
        """
        found = self._call("list runs", self._sdk.list_runs, experiment_id=experiment_id,
                           page_size=limit, sort_by="created_at desc")
        return list(found.runs or [])

    # -- recurring runs ----------------------------------------------------------------
    def recurring_runs(self, name: Optional[str] = None) -> list[Any]:
        """Every recurring run (of that name) in the namespace, all pages.

        Raises:
            KfpError: the server cannot be reached (or TLS fails), or refuses the request
                (a token missing, expired or not allowed; not found; a server error);
                one line naming the action and what to check.
        """
        runs: list[Any] = []
        token = ""
        while True:
            page = self._call("list recurring runs", self._sdk.list_recurring_runs,
                              page_token=token, page_size=_PAGE_SIZE,
                              namespace=self.namespace,
                              filter=_name_filter(name) if name else None)
            runs += [r for r in page.recurring_runs or []
                     if name is None or r.display_name == name]
            token = page.next_page_token
            if not token:
                return runs

    def create_recurring_run(self, schedule: Schedule, description: str) -> Any:
        """Creates `schedule` enabled, on its pipeline version (KFP cannot edit one: a
        change is a delete and a create).

        Raises:
            KfpError: the server cannot be reached (or TLS fails), or refuses the request
                (a token missing, expired or not allowed; not found; a server error);
                one line naming the action and what to check.
        """
        return self._call(
            f"create recurring run '{schedule.name}'", self._sdk.create_recurring_run,
            experiment_id=schedule.experiment_id, job_name=schedule.name,
            description=description, cron_expression=schedule.cron,
            max_concurrency=schedule.max_concurrency, no_catchup=schedule.no_catchup,
            params=schedule.parameters, pipeline_id=schedule.pipeline_id,
            version_id=schedule.pipeline_version_id, enabled=True,
            pipeline_root=schedule.pipeline_root)

    def delete_recurring_run(self, recurring_run: Any) -> None:
        """Deletes the recurring run; the runs it started are kept.

        Raises:
            KfpError: the server cannot be reached (or TLS fails), or refuses the request
                (a token missing, expired or not allowed; not found; a server error);
                one line naming the action and what to check.
        """
        self._call(f"delete recurring run '{recurring_run.display_name}'",
                   self._sdk.delete_recurring_run, recurring_run.recurring_run_id)

    def enable_recurring_run(self, recurring_run: Any) -> None:
        """Re-enables a disabled recurring run that otherwise matches what is wanted.

        Raises:
            KfpError: the server cannot be reached (or TLS fails), or refuses the request
                (a token missing, expired or not allowed; not found; a server error);
                one line naming the action and what to check.
        """
        self._call(f"enable recurring run '{recurring_run.display_name}'",
                   self._sdk.enable_recurring_run, recurring_run.recurring_run_id)

    # -- links and errors --------------------------------------------------------------
    def link(self, kind: str, *ids: str) -> str:
        """The UI page of a run, recurring run, experiment or pipeline version."""
        paths = {"run": "runs/details/{}", "recurring_run": "recurringrun/details/{}",
                 "experiment": "experiments/details/{}",
                 "version": "pipelines/details/{}/version/{}"}
        return f"{self.endpoint.ui}/#/" + paths[kind].format(*ids)

    def _call(self, action: str, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with sdk_output(self._verbose):
            try:
                return function(*args, **kwargs)
            except kfp_server_api.ApiException as err:
                raise KfpError(_problem(err, action, self.endpoint)) from None
            except urllib3.exceptions.HTTPError as err:
                raise KfpError(_unreachable(err, self.endpoint)) from None
            except (json_format.ParseError, ValueError) as err:  # the SDK reading a package
                raise KfpError(f"cannot {action}: {_one_line(str(err))}") from None


def _name_filter(name: str) -> str:
    """A `filter` query as kfp's client.py writes it (`get_pipeline_id`): JSON of a
    filter.proto Filter with one `display_name` EQUALS predicate."""
    return json.dumps({"predicates": [{"operation": _EQUALS, "key": "display_name",
                                       "stringValue": name}]})


def _problem(err: kfp_server_api.ApiException, action: str, where: Endpoint) -> str:
    """One line for an HTTP error: what failed, why (the server's words), what to do."""
    status = int(err.status or 0)
    message = _server_message(err)
    said = f": {message}" if message else ""
    if status == 0:  # kfp_server_api's wrapper of urllib3's SSLError
        return f"cannot {action}: TLS failed with {where.host}{said}"
    if status in (401, 403) and not where.token:
        return (f"{where.host} answered {status} to `{action}`: no bearer token was sent; "
                f"put one in ${where.token_env} (kubeflow.token_env) or pass --token")
    if status == 401:
        return (f"{where.host} did not accept the bearer token (401){said}; it may have "
                f"expired: renew ${where.token_env} or --token")
    if status == 403:
        namespace = where.namespace or "not set"
        return (f"{where.host} refused to let this token {action} (403){said}; check "
                f"${where.token_env} and kubeflow.namespace ({namespace})")
    if status == 409 or (status == 500 and re.search(r"already exist|duplicate", message,
                                                        re.IGNORECASE)):
        return f"cannot {action}: the name is already taken on {where.host} ({status}{said})"
    if status == 404:
        return f"cannot {action}: not found on {where.host} (404{said})"
    return f"cannot {action}: {where.host} answered {status}{said}"


def _server_message(err: kfp_server_api.ApiException) -> str:
    """The server's message: `error_message` (upload handler, apiv1beta1.Error), or
    `message`/`error` (grpc-gateway status), or the body's text (an auth proxy's)."""
    body = err.body.decode("utf-8", "replace") if isinstance(err.body, bytes) else err.body
    message: Any = body or ""
    try:
        data = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        message = data.get("error_message") or data.get("message") or data.get("error") or ""
    return _one_line(str(message or ""))


def _unreachable(err: Exception, where: Endpoint) -> str:
    reason = str(getattr(err, "reason", None) or err)
    reason = re.sub(r"^<[^>]*>: ", "", reason)  # "<...HTTPConnection object at 0x..>: "
    return (f"cannot reach the KFP API at {where.host}: {_one_line(reason)} (check "
            "kubeflow.host or --host, and that the endpoint or its port-forward is up)")


def _one_line(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."
