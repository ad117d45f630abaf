"""TF Serving's own configuration files, read and written in its text-proto formats.

- ``models.config`` (``--model_config_file``): ``ModelServerConfig`` from the
  tensorflow-serving-api package, so a file written here is read unchanged by
  ``tensorflow_model_server`` and the other way round.
- ``--batching_parameters_file`` (``BatchingParameters``), ``--monitoring_config_file``
  (``MonitoringConfig``) and ``--ssl_config_file`` (``SSLConfig``): their protos are not
  shipped in the API package, so the few messages are declared here with TF Serving's
  field names and numbers (``session_bundle_config.proto``, ``monitoring_config.proto``,
  ``ssl_config.proto``); text files written for the real server parse the same way.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from google.protobuf import descriptor_pb2, descriptor_pool, text_format, wrappers_pb2
from google.protobuf import message_factory
from tensorflow_serving.config import model_server_config_pb2

from serving.errors import invalid_argument

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig


def _declare_messages() -> tuple[type, type, type]:
    """BatchingParameters, MonitoringConfig and SSLConfig, with TF Serving's numbering."""
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="mlops_serving/tf_serving_server_files.proto", package="tensorflow.serving",
        syntax="proto3", dependency=["google/protobuf/wrappers.proto"])

    def add(message, name, number, kind, type_name=None, repeated=False):
        field = message.field.add(name=name, number=number, type=kind,
                                  label=f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name

    batching = file.message_type.add(name="BatchingParameters")
    for name, number in (("max_batch_size", 1), ("batch_timeout_micros", 2),
                         ("max_enqueued_batches", 3), ("num_batch_threads", 4),
                         ("max_execution_batch_size", 9)):
        add(batching, name, number, f.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add(batching, "thread_pool_name", 5, f.TYPE_MESSAGE, ".google.protobuf.StringValue")
    add(batching, "enable_large_batch_splitting", 8, f.TYPE_MESSAGE,
        ".google.protobuf.BoolValue")
    add(batching, "allowed_batch_sizes", 6, f.TYPE_INT64, repeated=True)
    add(batching, "pad_variable_length_inputs", 7, f.TYPE_BOOL)

    prometheus = file.message_type.add(name="PrometheusConfig")
    add(prometheus, "enable", 1, f.TYPE_BOOL)
    add(prometheus, "path", 2, f.TYPE_STRING)
    monitoring = file.message_type.add(name="MonitoringConfig")
    add(monitoring, "prometheus_config", 1, f.TYPE_MESSAGE,
        ".tensorflow.serving.PrometheusConfig")
    ssl = file.message_type.add(name="SSLConfig")  # the PEM texts themselves, not paths
    for name, number in (("server_key", 1), ("server_cert", 2), ("custom_ca", 3)):
        add(ssl, name, number, f.TYPE_STRING)
    add(ssl, "client_verify", 4, f.TYPE_BOOL)

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.AddSerializedFile(file.SerializeToString())
    factory = message_factory.MessageFactory(pool)
    return tuple(factory.GetPrototype(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
                 for name in ("BatchingParameters", "MonitoringConfig", "SSLConfig"))


BatchingParametersProto, MonitoringConfigProto, SSLConfigProto = _declare_messages()


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as err:
        raise invalid_argument(f"cannot read {path}: {err.strerror}") from None


def _parse_text(text: str, message, source: str):
    try:
        return text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise invalid_argument(f"{source}: {err}") from None


def _parse(path: str | Path, message):
    return _parse_text(_read(path), message, str(path))


# --- models.config -------------------------------------------------------------------

def read_model_server_config(path: str | Path) -> ModelServerConfig:
    """Reads and checks a models.config as tensorflow_model_server would.

    Raises:
        ServingError: INVALID_ARGUMENT when the file cannot be read, or for any of
            `parse_model_server_config`'s reasons; the message names the file.
    """
    return parse_model_server_config(_read(path), str(path))


def parse_model_server_config(text: str, path: str) -> ModelServerConfig:
    """A ModelServerConfig from its text, refused where tensorflow_model_server would
    refuse it, so a file that works with one server works with the other.

    Raises:
        ServingError: INVALID_ARGUMENT, naming `path`, when the text is not a
            ModelServerConfig in text format, holds a custom_model_config instead of a
            model_config_list, or a model lacks a name or base_path, has a platform other
            than tensorflow, has a relative base_path, or is configured twice.
    """
    config = _parse_text(text, ModelServerConfig(), path)
    if config.WhichOneof("config") != "model_config_list":
        raise invalid_argument(f"{path}: expected a model_config_list "
                               "(custom_model_config is not supported)")
    names = [model.name for model in config.model_config_list.config]
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise invalid_argument(f"{path}: every config needs a name and a base_path")
        if model.model_platform not in ("", "tensorflow"):
            raise invalid_argument(f"{path}: model {model.name!r}: platform "
                                   f"{model.model_platform!r} is not supported (tensorflow)")
        if not (model.base_path.startswith("/") or "://" in model.base_path):
            raise invalid_argument(f"{path}: model {model.name!r}: base_path must be absolute "
                                   f"(as tensorflow_model_server requires), got "
                                   f"{model.base_path!r}")
        if names.count(model.name) > 1:
            raise invalid_argument(f"{path}: model {model.name!r} is configured twice")
    return config


def model_server_config_text(config: ModelServerConfig) -> str:
    """The models.config text, in the format both servers read (and deploy files embed)."""
    return text_format.MessageToString(config)


def write_model_server_config(config: ModelServerConfig, path: str | Path) -> None:
    """Replaces the file atomically, so a server polling it never reads half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.writing")
    staging.write_text(model_server_config_text(config))
    staging.replace(path)


def single_model_config(name: str, base_path: str) -> ModelServerConfig:
    """What ``--model_name`` / ``--model_base_path`` mean: one model, latest version."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = "tensorflow"
    return config


# --- batching parameters -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's batching knobs, with its defaults for fields the file leaves out."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 2
    allowed_batch_sizes: tuple[int, ...] = ()
    enable_large_batch_splitting: bool = False

    @classmethod
    def from_file(cls, path: Optional[str]) -> "BatchingParameters":
        """The `--batching_parameters_file` as the embedded server uses it; TF Serving's
        defaults when `path` is empty or leaves a field out.

        Raises:
            ServingError: INVALID_ARGUMENT when the file cannot be read, is not a
                BatchingParameters text proto, or fails `check`.
        """
        if not path:
            return cls()
        proto = _parse(path, BatchingParametersProto())
        values = {}
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches",
                     "num_batch_threads", "enable_large_batch_splitting"):
            if proto.HasField(name):
                values[name] = getattr(proto, name).value
        if proto.allowed_batch_sizes:
            values["allowed_batch_sizes"] = tuple(proto.allowed_batch_sizes)
        params = cls(**values)
        params.check(path)
        return params

    def check(self, source: str) -> None:
        """Refuses values the batcher cannot run with, naming `source` (the file).

        Raises:
            ServingError: INVALID_ARGUMENT when max_batch_size, max_enqueued_batches or
                num_batch_threads is not positive, batch_timeout_micros is negative, or
                allowed_batch_sizes does not increase strictly and end at max_batch_size.
        """
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) <= 0:
                raise invalid_argument(f"{source}: {name} must be positive")
        if self.batch_timeout_micros < 0:
            raise invalid_argument(f"{source}: batch_timeout_micros must not be negative")
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise invalid_argument(f"{source}: allowed_batch_sizes must increase and end "
                                   "with max_batch_size")


# --- monitoring ----------------------------------------------------------------------

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def prometheus_path(monitoring_config_file: Optional[str]) -> Optional[str]:
    """The metrics path when the monitoring file enables Prometheus, else None.

    Raises:
        ServingError: INVALID_ARGUMENT when the file cannot be read or is not a
            MonitoringConfig text proto.
    """
    if not monitoring_config_file:
        return None
    proto = _parse(monitoring_config_file, MonitoringConfigProto())
    if not proto.prometheus_config.enable:
        return None
    return proto.prometheus_config.path or DEFAULT_PROMETHEUS_PATH


# --- TLS (checked further by serving.tls) ------------------------------------------------

def parse_ssl_config(text: str, source: str):
    """An SSLConfig from its text (``--ssl_config_file``): the PEM texts and client_verify.

    Raises:
        ServingError: INVALID_ARGUMENT, naming `source`, when the text is not an SSLConfig
            text proto (`serving.tls.read` checks the PEM texts themselves).
    """
    return _parse_text(text, SSLConfigProto(), source)


def ssl_config_text(server_key: str, server_cert: str, custom_ca: str = "",
                    client_verify: bool = False) -> str:
    """An SSLConfig file's text from PEM texts, as both servers read it (tests and setup)."""
    return text_format.MessageToString(SSLConfigProto(
        server_key=server_key, server_cert=server_cert, custom_ca=custom_ca,
        client_verify=client_verify))


__all__ = ["BatchingParameters", "ModelConfig", "ModelServerConfig",
           "parse_ssl_config", "ssl_config_text", "prometheus_path", "read_model_server_config",
           "single_model_config",
           "write_model_server_config", "model_server_config_text"]
