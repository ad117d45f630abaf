"""The model checks of a Kubernetes rollout, as a Flagger webhook (`mlops rollout webhook`).

With the real tensorflow_model_server, Flagger runs the rollout (`serving.deployment`'s
Canary) and its Prometheus checks see only what TF Serving counts: requests, statuses,
latencies. Whether the candidate *predicts* like the champion is a model check, which
Flagger offers to outside code as a webhook: at every analysis interval it POSTs
``{"name", "namespace", "phase", "checksum", "metadata"}`` (JSON) to each ``rollout`` hook
and counts any answer above 202 as a failed check (``pkg/controller/webhook.go``).

This handler answers one such call by sending the same probe request (a TF Serving
``:predict`` body from a file) to the primary's and the canary's REST URLs, and judging
the two answers with the embedded server's own divergence check
(`serving.rollout.checks`: Jensen-Shannon between the output histograms, failing only
over `max_divergence` *and* significant), so both servers judge a candidate alike:

- 200 and the check as JSON: the canary predicts like the primary;
- 412 and a JSON reason: it does not, or it failed the probe the primary answered, or
  nothing could be compared (the primary failed the probe or answered no number: an
  unmeasurable candidate must not pass). 4xx, not 5xx: Flagger's client
  (go-retryablehttp) gives a 5xx's body up for "giving up after N attempts", while a 4xx
  body reaches the canary's events, where `kubectl describe canary` shows the reason;
- 400 to a body that is not Flagger's payload.

The probe is the same rows to both, chosen by whoever runs the hook (a few hundred rows
laid out like served requests give the chi-square test its power). Stdlib HTTP server,
one thread per call: Flagger calls once per interval.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Mapping, Optional

import httpx
import numpy as np

from serving.rollout import checks
from serving.rollout.policy import RolloutPolicy
from serving.rollout.window import VersionWindow, divergence_values

MAX_PAYLOAD_BYTES = 1 << 20  # Flagger's payload is a few hundred bytes
PROBE_TIMEOUT_S = 10.0  # per server: both fit in the Canary's webhook timeout (30 s)


class ProbeError(ValueError):
    """A probe file that is not a TF Serving predict body; the message names the file."""


def read_probe(path: Path | str) -> dict:
    """The probe: a JSON `:predict` body with `instances` (row format) or `inputs`
    (columnar), as `mlops predict --json` takes one; sent as it is to both servers.

    Raises:
        ProbeError: the file cannot be read, is not JSON, or is not such a body.
    """
    try:
        body = json.loads(Path(path).read_text())
    except OSError as err:
        raise ProbeError(f"{path}: {err.strerror}") from None
    except ValueError as err:
        raise ProbeError(f"{path}: not valid JSON: {err}") from None
    if not isinstance(body, dict) or not ({"instances", "inputs"} & set(body)):
        raise ProbeError(f"{path}: not a TF Serving predict body: it needs \"instances\" "
                         "(a list of rows) or \"inputs\"")
    return body


def prediction_outputs(answer: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A `:predict` answer as {output name: array}, whichever format TF Serving used:
    `predictions` (row format: a list of values, or of {output: value} when the
    signature has several outputs) or `outputs` (columnar: an array, or {output: array}).
    Outputs that are not rectangular arrays are left out."""
    if "predictions" in answer:
        rows = answer["predictions"]
        if isinstance(rows, list) and rows and all(isinstance(row, dict) for row in rows):
            columns = {name: [row.get(name) for row in rows] for name in rows[0]}
        else:
            columns = {"predictions": rows}
    elif isinstance(answer.get("outputs"), dict):
        columns = dict(answer["outputs"])
    elif "outputs" in answer:
        columns = {"outputs": answer["outputs"]}
    else:
        columns = {}
    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = np.asarray(values)
        except ValueError:  # ragged
            continue
    return arrays


@dataclasses.dataclass(frozen=True)
class Verdict:
    """An answer to Flagger: the HTTP status (200 passes) and the JSON body."""

    status: int
    body: dict


def _fail(check: str, reason: str, **more: Any) -> Verdict:
    return Verdict(HTTPStatus.PRECONDITION_FAILED,
                   {"verdict": checks.FAIL, "check": check, "reason": reason, **more})


class ModelChecks:
    """The check one webhook call runs: the probe on both sides, their outputs compared."""

    def __init__(self, model_name: str, primary_url: str, canary_url: str, probe: dict,
                 policy: RolloutPolicy, timeout_s: float = PROBE_TIMEOUT_S,
                 verify: Any = True) -> None:
        """`primary_url`, `canary_url`: REST base URLs (`http://host:8501`); `policy`:
        `max_divergence` is its threshold; `verify`: httpx's, for https URLs."""
        self.model_name = model_name
        self.urls = {"primary": primary_url.rstrip("/"), "canary": canary_url.rstrip("/")}
        self.probe = probe
        self.policy = policy
        self.timeout_s = timeout_s
        self.verify = verify

    def _predict(self, role: str) -> tuple[Optional[dict], str]:
        """(the answer, "") when `role`'s server answers the probe with 200, else (None,
        what went wrong)."""
        url = f"{self.urls[role]}/v1/models/{self.model_name}:predict"
        try:
            response = httpx.post(url, json=self.probe, timeout=self.timeout_s,
                                  verify=self.verify)
        except httpx.HTTPError as err:
            return None, f"{url}: {type(err).__name__}: {err}"
        if response.status_code != HTTPStatus.OK:
            return None, f"{url}: HTTP {response.status_code}: {response.text.strip()[:500]}"
        try:
            answer = response.json()
        except ValueError:
            return None, f"{url}: the answer is not JSON"
        if not isinstance(answer, dict):
            return None, f"{url}: the answer is not a JSON object"
        return answer, ""

    def judge(self) -> Verdict:
        """Probe both sides and compare (see the module for each answer)."""
        primary, problem = self._predict("primary")
        if primary is None:
            return _fail("probe", "the primary did not answer the probe, so the canary "
                         f"cannot be compared with it: {problem}")
        canary, problem = self._predict("canary")
        if canary is None:
            return _fail("probe", f"the canary failed the probe the primary answered: "
                         f"{problem}")
        rows = {}
        for role, answer in (("primary", primary), ("canary", canary)):
            values = divergence_values(prediction_outputs(answer))
            if values is None:
                return _fail("divergence", f"the {role}'s answer to the probe has no "
                             "numeric output to compare")
            rows[role] = values
        if rows["primary"].shape[1] != rows["canary"].shape[1]:
            return _fail("divergence", f"the canary answers {rows['canary'].shape[1]} "
                         f"output column(s), the primary {rows['primary'].shape[1]}")
        # The embedded server's own check on the two samples, so both servers judge a
        # candidate by the same rule.
        windows = {role: VersionWindow() for role in rows}
        for role, window in windows.items():
            window.add_outputs({"rows": rows[role]})
        check = checks.divergence_check(windows["primary"], windows["canary"], self.policy)
        measured = {"value": check.value, "threshold": check.threshold,
                    "detail": check.detail, "rows": len(rows["canary"])}
        if check.verdict == checks.FAIL:
            return _fail(check.name, f"the canary's outputs diverge from the primary's: "
                         f"Jensen-Shannon {check.value:.3f} > {check.threshold:g} "
                         f"({check.detail})", **measured)
        return Verdict(HTTPStatus.OK, {"verdict": check.verdict, "check": check.name,
                                       **measured})

    def handle(self, body: bytes) -> Verdict:
        """One webhook call: `body` must be Flagger's payload (a JSON object naming the
        canary and its namespace)."""
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict) or not all(
                isinstance(payload.get(key), str) for key in ("name", "namespace")):
            return Verdict(HTTPStatus.BAD_REQUEST, {
                "error": "expected Flagger's webhook payload: a JSON object with the "
                         "canary's \"name\" and \"namespace\""})
        verdict = self.judge()
        return dataclasses.replace(verdict, body={
            "canary": f"{payload['name']}.{payload['namespace']}",
            "phase": payload.get("phase"), **verdict.body})


def make_server(model_checks: ModelChecks, host: str, port: int) -> ThreadingHTTPServer:
    """An HTTP server answering Flagger's POSTs (any path: the URL is the Canary's to
    choose) and `GET /healthz` (for a pod's probes); `port` 0 picks a free one
    (`server.server_address`). Call `serve_forever()` on it."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "mlops-rollout-webhook"

        def _answer(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            if self.path.split("?")[0] == "/healthz":
                self._answer(HTTPStatus.OK, {"status": "ok"})
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": "POST Flagger's payload"})

        def do_POST(self) -> None:  # noqa: N802
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_PAYLOAD_BYTES:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": "bad Content-Length"})
                return
            verdict = model_checks.handle(self.rfile.read(length))
            self._answer(verdict.status, verdict.body)
            print(f"{verdict.body.get('canary', '-')}: {verdict.status} "
                  f"{verdict.body.get('verdict', '')} {verdict.body.get('reason', '')}"
                  .rstrip(), file=sys.stderr, flush=True)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            """Silent: do_POST prints one line per verdict instead of the access log."""

    return ThreadingHTTPServer((host, port), Handler)
