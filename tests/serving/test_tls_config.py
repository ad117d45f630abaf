"""TLS from `pipeline_config.yaml` (`serving.tls`): the keys are checked on load, `mlops
serve` passes them to the servers, and `mlops predict / versions / restore` reach the REST
port over HTTPS with the configured CA and client certificate (a test CA made with
``cryptography``, `tests/serving/pki.py`)."""
from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from pipeline.definition.config import ConfigError, load_config
from serving import flags, server_files
from serving.config_files import ssl_config_text
from tests.conftest import MLOPS, REPO, TAXI_DATA, mlops, write_config
from tests.serving.conftest import MODEL_NAME, add_version, fake_real_server, wait_until_serving
from tests.serving.pki import Pki, make_pki, write_ssl_config
from tests.serving.test_server_process import free_port, run, stop_with_ctrl_c, terminal_signals

TLS_KEYS = ("ssl_config_file", "rest_ssl_config_file", "ca_cert", "client_cert", "client_key")


@pytest.fixture(scope="module")
def pki() -> Pki:
    return make_pki()


def tls_files(folder: Path, pki: Pki, client_verify: bool = True) -> dict[str, str]:
    """The five files in ``folder/tls`` and their ``serving.tls`` keys, relative to the
    config file's folder (``folder``)."""
    tls = folder / "tls"
    tls.mkdir(exist_ok=True)
    write_ssl_config(tls / "ssl.config", pki, client_verify)
    (tls / "ca.pem").write_text(pki.ca.pem)
    pki.client.write(tls, "client")
    return {"serving.tls.ssl_config_file": "tls/ssl.config",
            "serving.tls.rest_ssl_config_file": "tls/ssl.config",
            "serving.tls.ca_cert": "tls/ca.pem", "serving.tls.client_cert": "tls/client.pem",
            "serving.tls.client_key": "tls/client.key"}


def problems(config_file: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(config_file, use_env=False, check_files=False)
    return caught.value.problems


# --- the config ---------------------------------------------------------------------------

def test_tls_is_off_by_default_and_the_urls_stay_http(workspace: Path):
    settings = load_config(write_config(workspace), check_files=False).serving_settings()
    assert all(getattr(settings.serving.tls, key) is None for key in TLS_KEYS)
    assert server_files.rest_url(settings) == "http://127.0.0.1:8501"
    assert server_files.rest_verify(settings) is True


def test_the_tls_keys_resolve_against_the_config_and_make_the_url_https(workspace: Path,
                                                                       pki: Pki):
    settings = load_config(write_config(workspace, tls_files(workspace, pki)),
                           check_files=False).serving_settings()
    tls = settings.serving.tls
    assert tls.rest_ssl_config_file == str(workspace / "tls" / "ssl.config")
    assert tls.client_key == str(workspace / "tls" / "client.key")
    assert server_files.rest_url(settings) == "https://127.0.0.1:8501"
    context = server_files.rest_verify(settings)
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_each_tls_problem_is_one_line_naming_its_key(workspace: Path, pki: Pki):
    names = tls_files(workspace, pki)
    missing = {key: f"gone/{Path(value).name}" for key, value in names.items()}
    lines = problems(write_config(workspace, missing))
    assert lines == [f"serving.tls.{key}: file not found: {workspace / 'gone' / name}"
                     for key, name in zip(TLS_KEYS, ("ssl.config", "ssl.config", "ca.pem",
                                                     "client.pem", "client.key"))]

    tls = workspace / "tls"
    (tls / "mismatched.config").write_text(ssl_config_text(pki.ca.issue("x").key,
                                                           pki.server.cert))
    (tls / "not-a-ca.pem").write_text("hello\n")
    lines = problems(write_config(workspace, {
        **names, "serving.tls.ssl_config_file": "tls/mismatched.config",
        "serving.tls.ca_cert": "tls/not-a-ca.pem"}))
    assert lines[0] == "serving.tls.ssl_config_file: server_key does not match server_cert"
    assert lines[1].startswith("serving.tls.ca_cert: not a PEM certificate: ")
    assert len(lines) == 2

    (tls / "wrong.key").write_text(pki.ca.issue("x", client=True).key)
    assert problems(write_config(workspace, {**names, "serving.tls.client_key":
                                             "tls/wrong.key"}))[0].startswith(
        "serving.tls.client_cert: client_cert and client_key are not a PEM certificate and "
        "its unencrypted key")

    no_client = {k: v for k, v in names.items() if "client_" not in k}
    assert problems(write_config(workspace, no_client)) == [
        "serving.tls.client_cert: the REST port requires a client certificate (client_verify "
        "in rest_ssl_config_file): set client_cert and client_key"]

    half = {**names, "serving.tls.client_key": None}
    assert problems(write_config(workspace, half)) == [
        "serving.tls: client_cert and client_key go together"]
    unused = {"serving.tls.ca_cert": "tls/ca.pem"}
    assert problems(write_config(workspace, unused)) == [
        "serving.tls: ca_cert set without rest_ssl_config_file: the mlops commands use them "
        "to reach the REST port over HTTPS only"]
    assert problems(write_config(workspace, {"serving.tls.certfile": "x"}))[0].startswith(
        "serving.tls.certfile: ")


def test_check_config_lists_the_tls_problems(config_file: Path):
    result = mlops("check-config", "--config", str(config_file),
                   "--set", "serving.tls.ssl_config_file=nope.config",
                   "--set", "serving.tls.rest_ssl_config_file=nope.config")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    for key in ("ssl_config_file", "rest_ssl_config_file"):
        assert f"serving.tls.{key}: file not found: {config_file.parent / 'nope.config'}" \
            in result.stderr


# --- mlops serve --------------------------------------------------------------------------

def test_serve_passes_grpc_tls_to_both_servers_and_rest_tls_to_the_embedded_one(
        workspace: Path, pki: Pki):
    settings = load_config(write_config(workspace, tls_files(workspace, pki)),
                           check_files=False).serving_settings()
    files = server_files.write_server_files(settings)
    embedded = server_files.server_command(settings, files, "python")
    options, _ = flags.parse(embedded[3:])
    assert options.ssl_config_file == options.rest_ssl_config_file == \
        str(workspace / "tls" / "ssl.config")
    real = server_files.server_command(settings, files, "python",
                                       "/bin/tensorflow_model_server")
    assert f"--ssl_config_file={workspace / 'tls' / 'ssl.config'}" in real
    assert not [flag for flag in real if flag.startswith("--rest_ssl")]


def test_serve_refuses_rest_tls_with_a_server_that_has_none(workspace: Path, pki: Pki):
    config_file = write_config(workspace, tls_files(workspace, pki))
    fake, env = fake_real_server(workspace)
    result = mlops("serve", "--config", str(config_file), env=env)
    assert result.returncode == 2 and "started" not in result.stdout
    assert result.stderr.strip() == (
        f"error: serving.tls.rest_ssl_config_file is set, but {fake} serves REST over plain "
        "HTTP only: use `mlops serve --embedded`, or unset it (gRPC over TLS, "
        "serving.tls.ssl_config_file, works with both)")
    result = mlops("serve", "--docker", "--config", str(config_file))
    assert result.returncode == 2
    assert ("error: serving.tls.rest_ssl_config_file is set, but the tensorflow/serving image "
            "serves REST over plain HTTP only") in result.stderr


# --- the commands over HTTPS, against `mlops serve --embedded` -----------------------------

@pytest.mark.slow
def test_mlops_predict_versions_and_restore_over_https_with_a_client_certificate(
        workspace: Path, pipeline_model: Path, pki: Pki):
    from tests.serving.test_tls import AVAILABLE, grpc_status

    rest, grpc_port = free_port(), free_port()
    names = tls_files(workspace, pki, client_verify=True)
    config_file = write_config(workspace, {**names, "serving.rest_api_port": rest,
                                           "serving.grpc_port": grpc_port})
    settings = load_config(config_file, check_files=False).serving_settings()
    base = Path(settings.serving_model_dir)
    base.mkdir(parents=True)
    add_version(base, pipeline_model, 1)
    server = subprocess.Popen([MLOPS, "serve", "--embedded", "--config", str(config_file)],
                              preexec_fn=terminal_signals, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        wait_until_serving(f"https://127.0.0.1:{rest}/v1/models/{MODEL_NAME}", server,
                           server_files.rest_verify(settings))
        assert grpc_status(f"127.0.0.1:{grpc_port}", pki.ca.pem, pki.client) == AVAILABLE

        csv_file = TAXI_DATA / "span-1" / "trips.csv"  # the metadata GET, then the POST
        result = run(MLOPS, "predict", "--csv", str(csv_file), "--row", "2",
                     "--config", str(config_file))
        assert result.returncode == 0, result.stderr
        assert '"predictions"' in result.stdout and '"scores"' in result.stdout

        result = run(MLOPS, "versions", "--config", str(config_file))
        assert result.returncode == 0, result.stderr
        assert "AVAILABLE" in result.stdout and "no server answers" not in result.stdout

        result = run(MLOPS, "restore", "--config", str(config_file))  # polls the status
        assert result.returncode == 0, result.stderr
        assert "The server now serves version 1." in result.stdout

        # Trusting another CA: the server is not believed, and the commands say so.
        (workspace / "tls" / "other.pem").write_text(pki.other_ca.pem)
        other = ("--set", "serving.tls.ca_cert=tls/other.pem")
        result = run(MLOPS, "predict", "--csv", str(csv_file), *other,
                     "--config", str(config_file))
        assert result.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in result.stderr
        assert "Traceback" not in result.stderr
        result = run(MLOPS, "versions", *other, "--config", str(config_file))
        # not "no server answers": the server is there, the CA setting is wrong
        assert result.returncode == 1 and "no server answers" not in result.stdout
        assert result.stderr.strip().endswith(
            "TLS failed (CERTIFICATE_VERIFY_FAILED): the server's certificate is not signed "
            "by a CA the commands trust: set serving.tls.ca_cert to that CA")
        assert "Traceback" not in result.stderr
    finally:
        stop_with_ctrl_c(server)
