"""The files a model server reads, derived from ``pipeline_config.yaml``.

``mlops serve`` writes them into the serving directory, beside the versions, so the real
``tensorflow_model_server`` and the embedded server start from the same three files:

- ``models.config``: the model, its base path, version policy and labels. Written once and
  then only edited (by ``mlops rollback`` / ``restore`` / ``label``): it is where a rollback
  lives, so a restart does not undo it;
- ``batching_parameters.txt`` and ``monitoring.config``: rewritten from the config each time.
"""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Optional

from serving.settings import ServingSection, ServingSettings
from serving import config_files
from serving.config_files import ModelServerConfig

MODELS_CONFIG = "models.config"
BATCHING_FILE = "batching_parameters.txt"
MONITORING_FILE = "monitoring.config"
REAL_SERVER = "tensorflow_model_server"


@dataclasses.dataclass(frozen=True)
class ServerFiles:
    """The files `write_server_files` wrote, for the server's command line (None: that
    feature is off in the config)."""

    models_config: Path
    batching_parameters: Optional[Path]
    monitoring_config: Optional[Path]


def models_config_path(settings: ServingSettings) -> Path:
    """`<base_directory>/models.config`: the file every operation edits."""
    return Path(settings.serving.base_directory) / MODELS_CONFIG


def settings_for(models_config_file: str | Path, model_name: str) -> ServingSettings:
    """The settings through which `serving.operations` edits one model of a running
    server's models.config (its folder is the serving directory); the server's own
    rollout controller edits the files this way, as `mlops canary` does."""
    return ServingSettings(ServingSection(model_name=model_name,
                                          base_directory=str(Path(models_config_file).parent)),
                           pipeline_name="")


def default_models_config(settings: ServingSettings, base_path: Optional[str] = None
                          ) -> ModelServerConfig:
    """One model, serving its newest version (TF Serving's default policy)."""
    models = config_files.single_model_config(settings.serving.model_name,
                                              base_path or settings.serving_model_dir)
    models.model_config_list.config[0].model_version_policy.latest.num_versions = 1
    return models


def batching_parameters_text(settings: ServingSettings) -> str:
    """`serving.batching` as TF Serving's BatchingParameters text (both servers read it)."""
    b = settings.serving.batching
    return "".join(f"{name} {{ value: {getattr(b, name)} }}\n" for name in (
        "max_batch_size", "batch_timeout_micros", "num_batch_threads",
        "max_enqueued_batches"))


def monitoring_config_text() -> str:
    """A MonitoringConfig enabling Prometheus at TF Serving's default path."""
    return ('prometheus_config {\n  enable: true\n'
            f'  path: "{config_files.DEFAULT_PROMETHEUS_PATH}"\n}}\n')


def read_models_config(settings: ServingSettings) -> ModelServerConfig:
    """The serving directory's models.config, or the default (the configured model, its
    newest version) before `mlops serve` has written one.

    Raises:
        ServingError: INVALID_ARGUMENT when the file exists but cannot be read or is not a
            models.config tensorflow_model_server would accept.
    """
    path = models_config_path(settings)
    if path.exists():
        return config_files.read_model_server_config(path)
    return default_models_config(settings)


def write_server_files(settings: ServingSettings) -> ServerFiles:
    """Creates the serving directory's server files; keeps an existing models.config's policy
    and labels, adding the configured model to it if it is missing."""
    base = Path(settings.serving.base_directory)
    Path(settings.serving_model_dir).mkdir(parents=True, exist_ok=True)
    models = read_models_config(settings)
    names = [m.name for m in models.model_config_list.config]
    if settings.serving.model_name not in names:
        models.model_config_list.config.append(default_models_config(settings)
                                               .model_config_list.config[0])
    config_files.write_model_server_config(models, models_config_path(settings))
    batching = monitoring = None
    if settings.serving.batching.enabled:
        batching = base / BATCHING_FILE
        batching.write_text(batching_parameters_text(settings))
    if settings.serving.monitoring:
        monitoring = base / MONITORING_FILE
        monitoring.write_text(monitoring_config_text())
    return ServerFiles(models_config_path(settings), batching, monitoring)


def real_server_binary() -> Optional[str]:
    """tensorflow_model_server's path when it is on PATH (then `mlops serve` runs it)."""
    return shutil.which(REAL_SERVER)


def server_command(settings: ServingSettings, files: ServerFiles, python: str,
                   real_binary: Optional[str] = None, extra: tuple[str, ...] = ()) -> list[str]:
    """The command line: TF Serving's flags, for the real binary or the embedded server."""
    s = settings.serving
    argv = [real_binary] if real_binary else [python, "-m", "serving"]
    argv += [f"--port={s.grpc_port}", f"--rest_api_port={s.rest_api_port}",
             f"--model_config_file={files.models_config}",
             f"--model_config_file_poll_wait_seconds={s.model_config_file_poll_wait_seconds}",
             f"--file_system_poll_wait_seconds={s.file_system_poll_wait_seconds}"]
    if files.batching_parameters:
        argv += ["--enable_batching=true",
                 f"--batching_parameters_file={files.batching_parameters}"]
    if files.monitoring_config:
        argv += [f"--monitoring_config_file={files.monitoring_config}"]
    if s.tls.ssl_config_file:  # TF Serving's flag: gRPC over TLS, in both servers
        argv += [f"--ssl_config_file={s.tls.ssl_config_file}"]
    argv += s.session_thread_flags()  # TF Serving's too, in both
    if not real_binary:  # the embedded server's own flags; the real one refuses them
        argv += [f"--host={s.host}", f"--max_request_bytes={s.max_request_bytes}",
                 f"--rest_read_timeout_seconds={s.rest_read_timeout_seconds:g}",
                 f"--rest_idle_timeout_seconds={s.rest_idle_timeout_seconds:g}",
                 f"--rest_max_connections={s.rest_max_connections}",
                 f"--rest_api_workers={s.rest_api_workers}"]
        if s.tls.rest_ssl_config_file:
            argv += [f"--rest_ssl_config_file={s.tls.rest_ssl_config_file}"]
        if s.request_log.sample_rate:
            argv += [f"--request_log_sample_rate={s.request_log.sample_rate:g}",
                     f"--request_log_dir={s.request_log_dir}"]
        argv += s.rollout.policy().flags()
    return argv + list(extra)


def rest_url(settings: ServingSettings) -> str:
    """Where the commands reach the REST port: https when ``serving.tls`` gives it TLS."""
    host = settings.serving.host if settings.serving.host not in ("0.0.0.0", "::") else "127.0.0.1"
    scheme = "https" if settings.serving.tls.rest_ssl_config_file else "http"
    return f"{scheme}://{host}:{settings.serving.rest_api_port}"


def rest_verify(settings: ServingSettings):
    """httpx's ``verify`` for :func:`rest_url`: an ``ssl.SSLContext`` trusting
    ``serving.tls.ca_cert`` (the system's CAs without it) and presenting
    ``client_cert`` when set; True (the default) for plain HTTP."""
    return settings.serving.tls.client_context() or True


__all__ = ["ServerFiles", "write_server_files", "server_command", "real_server_binary",
           "settings_for",
           "models_config_path", "read_models_config", "default_models_config", "rest_url",
           "rest_verify"]
