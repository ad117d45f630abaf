"""What serving needs from `pipeline_config.yaml`, declared where serving can import it.

The `serving:` section's schema lives here, not in the pipeline's config module, so the
serving package (the embedded server, the operations, the deployment files) imports
nothing of `pipeline/`, `components/` or TFX: `pipeline.config` includes these sections
in the whole config, and the CLI hands serving a `ServingSettings`.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"  # Kubernetes and Kubeflow v2 names
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
    namespace: str = Field("mlops", pattern=NAME_PATTERN)
    replicas: int = Field(2, ge=1)
    max_replicas: int = Field(6, ge=1)
    target_cpu_utilization: int = Field(70, gt=0, le=100)
    volume_claim: str = Field("serving-models", pattern=NAME_PATTERN)
    storage: str = "10Gi"

    @model_validator(mode="after")
    def _replica_range(self) -> "KubernetesSection":
        if self.max_replicas < self.replicas:
            raise ValueError(f"max_replicas ({self.max_replicas}) is below replicas "
                             f"({self.replicas})")
        return self


class ServingSection(StrictSection):
    model_name: str = Field(pattern=NAME_PATTERN)
    base_directory: str = "serving_models"
    host: str = "127.0.0.1"
    grpc_port: int = Field(8500, ge=0, le=65535)
    rest_api_port: int = Field(8501, ge=0, le=65535)
    file_system_poll_wait_seconds: int = Field(1, ge=0)
    model_config_file_poll_wait_seconds: int = Field(1, ge=0)
    monitoring: bool = True
    # The embedded server's REST port (tensorflow_model_server has none of these).
    max_request_bytes: int = Field(64 * 1024 * 1024, gt=0)
    rest_read_timeout_seconds: float = Field(30.0, ge=0)
    rest_idle_timeout_seconds: float = Field(60.0, ge=0)
    rest_max_connections: int = Field(1024, ge=0)
    batching: BatchingSection = Field(default_factory=BatchingSection)
    image: str = "tensorflow/serving:2.16.1"
    kubernetes: KubernetesSection = Field(default_factory=KubernetesSection)

    @model_validator(mode="after")
    def _distinct_ports(self) -> "ServingSection":
        if self.grpc_port and self.grpc_port == self.rest_api_port:
            raise ValueError(f"grpc_port and rest_api_port are both {self.grpc_port}: the "
                             "two APIs need a port each")
        return self

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
        return self.serving.model_dir
