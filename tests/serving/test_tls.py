"""TLS on both ports, on loopback, with a test CA made in the test (`tests/serving/pki.py`).

gRPC takes TF Serving's ``--ssl_config_file`` (an ``SSLConfig`` text proto holding the PEM
texts); the REST port takes ``--rest_ssl_config_file`` in the same format. Clients are the
official ``tensorflow_serving.apis`` stubs over ``grpc.ssl_channel_credentials`` and httpx
with an ``ssl.SSLContext``. Checked: both APIs answer over TLS; a client trusting another
CA is refused; with ``client_verify`` a client certificate from ``custom_ca`` is required;
a wrong, missing or mismatched key or certificate is one start-up error (exit 2, one line).
"""
from __future__ import annotations

import ssl
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest
from tensorflow_serving.apis import (get_model_status_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc)

from serving import tls
from serving.config_files import ssl_config_text
from serving.errors import ServingError
from serving.operations import OperationError, server_status
from tests.conftest import REPO
from tests.serving.conftest import MODEL_NAME, ROWS, RunningServer
from tests.serving.pki import Pair, Pki, https_context, make_pki, write_ssl_config

TIMEOUT = 30


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


# --- clients ---------------------------------------------------------------------------------

def model_status(rest_port: int, context: ssl.SSLContext) -> str:
    response = httpx.get(f"https://localhost:{rest_port}/v1/models/{MODEL_NAME}",
                         verify=context, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()["model_version_status"][0]["state"]


def grpc_channel(target: str, ca_pem: str, client: Pair | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca_pem.encode(),
        private_key=client.key.encode() if client else None,
        certificate_chain=client.cert.encode() if client else None)
    return grpc.secure_channel(target, credentials,
                               options=[("grpc.ssl_target_name_override", "localhost")])


def grpc_status(target: str, ca_pem: str, client: Pair | None = None) -> int:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    with grpc_channel(target, ca_pem, client) as channel:
        response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(
            request, timeout=TIMEOUT)
    return response.model_version_status[0].state


def grpc_refused(target: str, ca_pem: str, client: Pair | None = None) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        grpc_status(target, ca_pem, client)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value


def rest_refused(rest_port: int, context: ssl.SSLContext) -> httpx.TransportError:
    with pytest.raises(httpx.TransportError) as caught:
        model_status(rest_port, context)
    return caught.value


AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


# --- servers ---------------------------------------------------------------------------------

@pytest.fixture
def tls_server(pki, base_path: Path, tmp_path: Path, start_server):
    def start(client_verify: bool) -> RunningServer:
        config = write_ssl_config(tmp_path / "ssl.config", pki, client_verify)
        return start_server(model_name=MODEL_NAME, model_base_path=str(base_path),
                            file_system_poll_wait_seconds=0, ssl_config_file=str(config),
                            rest_ssl_config_file=str(config))
    return start


@pytest.mark.slow
def test_rest_and_grpc_over_tls_and_a_client_trusting_another_ca_is_refused(
        pki, tls_server, tmp_path: Path) -> None:
    from tests.serving.test_grpc_api import predict_request

    running = tls_server(client_verify=False)
    rest, target = running.server.rest_port, running.grpc_target
    trusted = https_context(pki.ca.pem)
    assert model_status(rest, trusted) == "AVAILABLE"
    predicted = httpx.post(f"https://127.0.0.1:{rest}/v1/models/{MODEL_NAME}:predict",
                           json={"instances": ROWS}, verify=trusted, timeout=TIMEOUT)
    assert predicted.status_code == 200 and len(predicted.json()["predictions"]) == len(ROWS)
    assert grpc_status(target, pki.ca.pem) == AVAILABLE
    with grpc_channel(target, pki.ca.pem) as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            predict_request(), timeout=TIMEOUT)
    assert response.model_spec.version.value == 1 and response.outputs

    unknown_ca = rest_refused(rest, https_context(pki.other_ca.pem))  # server cert: unknown CA
    assert "set serving.tls.ca_cert to that CA" in tls.client_failure(unknown_ca)
    with pytest.raises(OperationError, match=r"TLS failed \(CERTIFICATE_VERIFY_FAILED\): the "
                       r"server's certificate is not signed by a CA the commands trust"):
        server_status(f"https://localhost:{rest}", MODEL_NAME, verify=https_context(
            pki.other_ca.pem))  # what `mlops versions` says, instead of "no server answers"
    grpc_refused(target, pki.other_ca.pem)
    with pytest.raises(httpx.TransportError) as plain_http:  # plain HTTP on the HTTPS port
        httpx.get(f"http://127.0.0.1:{rest}/v1/models/{MODEL_NAME}", timeout=TIMEOUT)
    assert tls.client_failure(plain_http.value) is None  # no TLS on the client's side
    with grpc.insecure_channel(target) as plain:  # plaintext gRPC on the TLS port
        with pytest.raises(grpc.RpcError):
            model_service_pb2_grpc.ModelServiceStub(plain).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(), timeout=TIMEOUT)
    assert model_status(rest, trusted) == "AVAILABLE"  # refusals leave the server serving


@pytest.mark.slow
def test_client_certificates_are_enforced_when_required(pki, tls_server,
                                                        tmp_path: Path) -> None:
    running = tls_server(client_verify=True)
    rest, target = running.server.rest_port, running.grpc_target
    assert model_status(rest, https_context(pki.ca.pem, pki.client, tmp_path)) == "AVAILABLE"
    assert grpc_status(target, pki.ca.pem, pki.client) == AVAILABLE

    missing = rest_refused(rest, https_context(pki.ca.pem))  # no client certificate
    assert "may require a client certificate" in tls.client_failure(missing)  # TLS 1.3: the
    # refusal comes after the handshake, as a closed connection
    rest_refused(rest, https_context(pki.ca.pem, pki.stranger, tmp_path))  # another CA's
    grpc_refused(target, pki.ca.pem)
    grpc_refused(target, pki.ca.pem, pki.stranger)
    assert grpc_status(target, pki.ca.pem, pki.client) == AVAILABLE


# --- start-up errors ---------------------------------------------------------------------------

def _broken_configs(pki: Pki, folder: Path) -> dict[str, tuple[Path, str]]:
    """file -> the message it must produce."""
    mismatched = pki.ca.issue("localhost")
    cases = {
        "missing": (None, "cannot read it: No such file or directory"),
        "not_a_proto": ("server_key: ", "ssl_config_file"),
        "empty_key": (ssl_config_text("", pki.server.cert), "server_key is empty"),
        "bad_cert": (ssl_config_text(pki.server.key, "-----BEGIN CERTIFICATE-----\nnope\n"
                                     "-----END CERTIFICATE-----\n"),
                     "server_cert is not a PEM certificate"),
        "cert_for_key": (ssl_config_text(pki.server.cert, pki.server.cert),
                         "server_key is not an unencrypted PEM private key"),
        "mismatched": (ssl_config_text(mismatched.key, pki.server.cert),
                       "server_key does not match server_cert"),
        "bad_ca": (ssl_config_text(pki.server.key, pki.server.cert, "garbage", True),
                   "custom_ca is not a PEM certificate"),
        "verify_without_ca": (ssl_config_text(pki.server.key, pki.server.cert, "", True),
                              "client_verify needs custom_ca"),
    }
    result = {}
    for name, (text, message) in cases.items():
        path = folder / f"{name}.config"
        if text is not None:
            path.write_text(text)
        result[name] = (path, message)
    return result


def test_a_wrong_missing_or_mismatched_key_or_certificate_is_one_clear_error(
        pki, tmp_path: Path) -> None:
    for name, (path, message) in _broken_configs(pki, tmp_path).items():
        with pytest.raises(ServingError) as caught:
            tls.read(str(path), "ssl_config_file")
        text = caught.value.message
        assert text.startswith(f"--ssl_config_file={path}: ") and message in text, (name, text)
        assert "\n" not in text, (name, text)
    good = tls.read(str(write_ssl_config(tmp_path / "good.config", pki, True)),
                    "rest_ssl_config_file")
    assert good.client_verify and good.custom_ca == pki.ca.pem


@pytest.mark.parametrize("flag", ["ssl_config_file", "rest_ssl_config_file"])
def test_python_m_serving_exits_2_with_one_line_on_a_bad_certificate(
        pki, tmp_path: Path, flag: str) -> None:
    path, message = _broken_configs(pki, tmp_path)["mismatched"]
    models = tmp_path / "models"
    models.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "serving", f"--model_base_path={models}", "--port=0",
         "--rest_api_port=0", f"--{flag}={path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"error: --{flag}={path}: {message}"


def test_the_same_file_parses_as_tf_serving_writes_it(pki, tmp_path: Path) -> None:
    """TF Serving's docs write the PEM texts as multi-line concatenated strings."""
    def lines(pem: str) -> str:
        return "\n".join(f'  "{line}\\n"' for line in pem.strip().splitlines())

    path = tmp_path / "ssl.config"
    path.write_text(f"server_key:\n{lines(pki.server.key)}\nserver_cert:\n"
                    f"{lines(pki.server.cert)}\ncustom_ca:\n{lines(pki.ca.pem)}\n"
                    "client_verify: true\n")
    config = tls.read(str(path), "ssl_config_file")
    assert (config.server_key, config.server_cert, config.client_verify) == \
        (pki.server.key, pki.server.cert, True)
