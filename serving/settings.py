"""What serving needs from `pipeline_config.yaml`, declared where serving can import it.

The `serving:` section's schema lives here, not in the pipeline's config module, so the
serving package (the embedded server, the operations, the deployment files) imports
nothing of `pipeline/`, `components/` or TFX: `pipeline.config` includes these sections
in the whole config, and the CLI hands serving a `ServingSettings`.
"""
from __future__ import annotations

import dataclasses
import re
import ssl
from pathlib import Path
from typing import Callable, ClassVar, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from serving.errors import ServingError
from serving.options import MAX_REST_API_WORKERS
from serving.rollout.policy import RolloutPolicy

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"  # Kubernetes and Kubeflow v2 names
_DNS_NAME = r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$"  # Secret and IngressClass names, host names
_URI_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://")


def is_remote(path: str) -> bool:
    """A URI (gs://, s3://...), which local file checks and paths leave alone."""
    return bool(_URI_SCHEME.match(path))


def join_path(base: str, *parts: str) -> str:
    """`base`/`parts`, for a local folder or a URI (gs://...) alike."""
    if is_remote(base):
        return "/".join([base.rstrip("/"), *parts])
    return str(Path(base, *parts))


class StrictSection(BaseModel):
    """Strict base: unknown keys are errors, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class BatchingSection(StrictSection):
    """TF Serving's BatchingParameters, written to the file both servers read."""

    enabled: bool = True
    max_batch_size: int = Field(32, gt=0)
    batch_timeout_micros: int = Field(1000, ge=0)
    num_batch_threads: int = Field(2, gt=0)
    max_enqueued_batches: int = Field(100, gt=0)


class KubernetesSection(StrictSection):
    """`serving.kubernetes`: what `mlops deploy-files` writes for a cluster (replicas,
    autoscaling, the models' volume, the optional TLS Ingress and gRPC TLS Secret)."""

    namespace: str = Field("mlops", pattern=NAME_PATTERN)
    replicas: int = Field(2, ge=1)
    max_replicas: int = Field(6, ge=1)
    target_cpu_utilization: int = Field(70, gt=0, le=100)
    volume_claim: str = Field("serving-models", pattern=NAME_PATTERN)
    storage: str = "10Gi"
    # A TLS Ingress for the REST port (ingress.yaml), only when tls_secret is set: the
    # Secret (type kubernetes.io/tls, made with `kubectl create secret tls`) and the host
    # name its certificate is for. TLS ends at the Ingress; the pods serve plain HTTP.
    tls_secret: Optional[str] = Field(None, pattern=_DNS_NAME)
    ingress_host: Optional[str] = Field(None, pattern=r"^(\*\.)?" + _DNS_NAME[1:])
    ingress_class: Optional[str] = Field(None, pattern=_DNS_NAME)  # None: cluster's default
    # gRPC over TLS in the pods: a Secret whose key `ssl_config.txt` is TF Serving's
    # SSLConfig (made with `kubectl create secret generic`), mounted for --ssl_config_file.
    ssl_config_secret: Optional[str] = Field(None, pattern=_DNS_NAME)
    # With serving.rollout.enabled, Flagger rolls each pinned version out (canary.yaml):
    # the mesh that splits the traffic (Flagger needs no other object for these two;
    # mode shadow needs istio, the one that mirrors a share of it)...
    rollout_provider: str = Field("istio", pattern=r"^(istio|linkerd)$")
    # ...the Prometheus its checks query for TF Serving's metrics, and the labels that
    # Prometheus's scrape gives a pod's namespace and name (the prometheus-community
    # chart's kubernetes-pods job, which reads the prometheus.io annotations: namespace,
    # pod; Flagger's bundled Prometheus: kubernetes_namespace, kubernetes_pod_name)...
    prometheus_url: str = Field("http://prometheus.istio-system:9090", pattern=r"^https?://")
    prometheus_namespace_label: str = Field("namespace", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    prometheus_pod_label: str = Field("pod", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$")
    # ...and where Flagger reaches `mlops rollout webhook` (the model checks), if it runs.
    rollout_webhook_url: Optional[str] = Field(None, pattern=r"^https?://[^\s]+$")

    @model_validator(mode="after")
    def _consistent(self) -> "KubernetesSection":
        if self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below replicas "
                             f"({self.replicas})")
        if (self.tls_secret is None) != (self.ingress_host is None):
            raise ValueError("tls_secret and ingress_host go together: the TLS Ingress needs "
                             "the Secret and the host name of its certificate")
        if self.ingress_class and not self.tls_secret:
            raise ValueError("ingress_class is set but no Ingress is made: set tls_secret "
                             "and ingress_host")
        return self


class TlsSection(StrictSection):
    """TLS of the model server, and how the `mlops` commands reach it over HTTPS.

    The server side names TF Serving's ``SSLConfig`` files (the PEM texts inside, not
    paths), as the servers take them; the client side names PEM files, as curl and gRPC
    clients take them. Paths are relative to the config file's folder.
    """

    ssl_config_file: Optional[str] = None  # gRPC over TLS: both servers' --ssl_config_file
    rest_ssl_config_file: Optional[str] = None  # HTTPS on the REST port: embedded server only
    ca_cert: Optional[str] = None  # PEM CA the commands trust for the server (default: system)
    client_cert: Optional[str] = None  # PEM certificate the commands present (client_verify)
    client_key: Optional[str] = None  # its unencrypted PEM key

    FILE_KEYS: ClassVar[tuple[str, ...]] = (
        "ssl_config_file", "rest_ssl_config_file", "ca_cert", "client_cert", "client_key")

    @model_validator(mode="after")
    def _consistent(self) -> "TlsSection":
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key go together")
        if not self.rest_ssl_config_file:
            unused = [key for key in ("ca_cert", "client_cert") if getattr(self, key)]
            if unused:
                raise ValueError(f"{' and '.join(unused)} set without rest_ssl_config_file: "
                                 "the mlops commands use them to reach the REST port over "
                                 "HTTPS only")
        return self

    def resolve(self, absolute: Callable[[Optional[str]], Optional[str]]) -> None:
        """Rewrites every file key through `absolute` (the config's path rule for the
        profile), so the files are found whatever the working directory."""
        for key in self.FILE_KEYS:
            setattr(self, key, absolute(getattr(self, key)))

    def problems(self, prefix: str = "serving.tls") -> list[str]:
        """One line per problem, naming the key: a missing file, an SSLConfig the server
        would refuse (as it would say it), a CA or client certificate Python cannot load,
        a server that requires a client certificate the commands do not have."""
        problems, missing = [], set()
        for key in self.FILE_KEYS:
            path = getattr(self, key)
            if path and not Path(path).is_file():
                problems.append(f"{prefix}.{key}: file not found: {path}")
                missing.add(key)
        from serving import tls  # the server's own checks; protobuf, no TensorFlow
        from serving.errors import ServingError

        for key in ("ssl_config_file", "rest_ssl_config_file"):
            path = getattr(self, key)
            if path and key not in missing:
                try:
                    config = tls.read(path, key)
                except ServingError as err:
                    problems.append(f"{prefix}.{key}: "
                                    + err.message.removeprefix(f"--{key}={path}: "))
                    continue
                if key == "rest_ssl_config_file" and config.client_verify and \
                        not self.client_cert:
                    problems.append(f"{prefix}.client_cert: the REST port requires a client "
                                    "certificate (client_verify in rest_ssl_config_file): set "
                                    "client_cert and client_key")
        if not missing & {"ca_cert", "client_cert", "client_key"}:
            try:
                self.client_context()
            except TlsFileError as err:
                problems.append(f"{prefix}.{err.key}: {err}")
        return problems

    def client_context(self) -> Optional[ssl.SSLContext]:
        """What the commands verify the REST port with (None: it is plain HTTP).

        Raises:
            TlsFileError: the CA, or the client certificate and key, cannot be loaded.
        """
        if not self.rest_ssl_config_file:
            return None
        try:
            context = ssl.create_default_context(cafile=self.ca_cert)
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            raise TlsFileError("ca_cert", f"not a PEM certificate: {self.ca_cert} "
                               f"({_reason(err)})") from None
        if self.client_cert:
            try:
                context.load_cert_chain(self.client_cert, self.client_key,
                                        password=_no_password)
            except (OSError, ValueError) as err:
                raise TlsFileError("client_cert", "client_cert and client_key are not a "
                                   "PEM certificate and its unencrypted key "
                                   f"({_reason(err)})") from None
        return context


class TlsFileError(ValueError):
    """A TLS file of the config that Python's ssl cannot load; ``key`` names the key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _no_password() -> bytes:
    raise ValueError("the key is encrypted")


def _reason(err: BaseException) -> str:
    return getattr(err, "reason", None) or str(err)


class CanarySection(StrictSection):
    """The canary split of the embedded server (`mlops canary / promote / abort`)."""

    # Per cent of bare-URL requests `mlops canary VERSION` sends to the canary when no
    # --weight is given (0: load the canary, reachable by its label, with no traffic yet).
    weight: float = Field(10, ge=0, le=100)


_ROLLOUT = RolloutPolicy()


class RolloutSection(StrictSection):
    """`serving.rollout`: every push rolled out as a canary that live checks promote or
    abort (embedded server). The keys are the server's `--rollout_<key>` flags and
    `serving.rollout.policy.RolloutPolicy`'s fields, which documents each."""

    enabled: bool = _ROLLOUT.enabled
    mode: str = _ROLLOUT.mode
    steps: tuple[float, ...] = _ROLLOUT.steps
    interval_seconds: float = _ROLLOUT.interval_seconds
    threshold: int = _ROLLOUT.threshold
    min_requests: int = _ROLLOUT.min_requests
    max_error_rate: float = _ROLLOUT.max_error_rate
    max_p99_ms: float = _ROLLOUT.max_p99_ms
    max_p99_ratio: float = _ROLLOUT.max_p99_ratio
    p99_slack_ms: float = _ROLLOUT.p99_slack_ms
    max_divergence: float = _ROLLOUT.max_divergence
    min_labelled: int = _ROLLOUT.min_labelled
    max_accuracy_drop: float = _ROLLOUT.max_accuracy_drop
    confidence: float = _ROLLOUT.confidence

    @model_validator(mode="after")
    def _possible(self) -> "RolloutSection":
        self.policy()
        return self

    def policy(self) -> RolloutPolicy:
        """The policy these keys describe.

        Raises:
            ValueError: a value the policy refuses, named by its key.
        """
        try:
            return RolloutPolicy(**self.model_dump())
        except ServingError as err:
            raise ValueError(err.message) from None


class RequestLogSection(StrictSection):
    """The embedded server's sample of requests, as tf.Examples, for `mlops skew`."""

    sample_rate: float = Field(0.0, ge=0, le=1, description="share of requests logged "
                                                            "(0: off)")
    directory: Optional[str] = Field(None, description="default: <base_directory>/"
                                                       "request_logs (a folder per model)")


class ServingSection(StrictSection):
    """`serving:`: where versions are pushed and served from, the ports and limits of the
    servers, and the batching, canary, request log, rollout, TLS and Kubernetes settings."""

    model_name: str = Field(pattern=NAME_PATTERN)
    base_directory: str = "serving_models"
    host: str = "127.0.0.1"
    grpc_port: int = Field(8500, ge=0, le=65535)
    rest_api_port: int = Field(8501, ge=0, le=65535)
    file_system_poll_wait_seconds: int = Field(1, ge=0)
    model_config_file_poll_wait_seconds: int = Field(1, ge=0)
    monitoring: bool = True
    # TF Serving's: the model sessions' thread pools, passed to both servers (0: auto;
    # `ServerOptions.session_threads`, and the pod's CPU limit on Kubernetes).
    tensorflow_intra_op_parallelism: int = Field(0, ge=0)
    tensorflow_inter_op_parallelism: int = Field(0, ge=0)
    # The embedded server's REST port (tensorflow_model_server has none of these).
    max_request_bytes: int = Field(64 * 1024 * 1024, gt=0)
    rest_read_timeout_seconds: float = Field(30.0, ge=0)
    rest_idle_timeout_seconds: float = Field(60.0, ge=0)
    rest_max_connections: int = Field(1024, ge=0)
    # Processes answering the REST port (serving.workers); each loads every model.
    rest_api_workers: int = Field(1, ge=1, le=MAX_REST_API_WORKERS)
    batching: BatchingSection = Field(default_factory=BatchingSection)
    canary: CanarySection = Field(default_factory=CanarySection)
    request_log: RequestLogSection = Field(default_factory=lambda: RequestLogSection())
    rollout: RolloutSection = Field(default_factory=RolloutSection)
    tls: TlsSection = Field(default_factory=TlsSection)
    image: str = "tensorflow/serving:2.16.1"
    kubernetes: KubernetesSection = Field(default_factory=KubernetesSection)

    def session_thread_flags(self, cores: Optional[int] = None) -> list[str]:
        """tensorflow_model_server's two thread flags, for either server: the configured
        numbers when either is set (0 leaves the other to the server), else both at
        ``cores`` (a container's CPU limit) when given, else none (the server decides)."""
        intra, inter = self.tensorflow_intra_op_parallelism, self.tensorflow_inter_op_parallelism
        if not (intra or inter):
            if cores is None:
                return []
            intra = inter = cores
        return [f"--tensorflow_intra_op_parallelism={intra}",
                f"--tensorflow_inter_op_parallelism={inter}"]

    @model_validator(mode="after")
    def _distinct_ports(self) -> "ServingSection":
        if self.grpc_port and self.grpc_port == self.rest_api_port:
            raise ValueError(f"grpc_port and rest_api_port are both {self.grpc_port}: the "
                             "two APIs need a port each")
        return self

    @model_validator(mode="after")
    def _one_process_for_a_rollout(self) -> "ServingSection":
        if self.rollout.enabled and self.rest_api_workers > 1:
            raise ValueError("rollout.enabled needs rest_api_workers: 1 (a rollout's "
                             "measurements and decisions live in one process)")
        return self

    @property
    def request_log_dir(self) -> str:
        """Where the embedded server logs requests (a folder per model inside)."""
        return self.request_log.directory or join_path(self.base_directory, "request_logs")

    @property
    def model_dir(self) -> str:
        """Where the model's versions are: `<base_directory>/<model_name>`."""
        return join_path(self.base_directory, self.model_name)


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """The `serving` section, and the pipeline that feeds it (a label on the Kubernetes
    objects, so they show which pipeline's models they serve)."""

    serving: ServingSection
    pipeline_name: str

    @property
    def serving_model_dir(self) -> str:
        """Where the model's versions are (`serving.model_dir`)."""
        return self.serving.model_dir
