"""Deployment files for the real ``tensorflow_model_server``, rendered from the config.

``serving/deploy/`` is generated (``mlops deploy-files``) and committed, so a review shows
exactly what a config change does to the deployment, and a test fails when the committed
files and ``pipeline_config.yaml`` disagree (:func:`check`). Everything here is a pure
function of :class:`~serving.settings.ServingSettings` except :func:`write`.

Two targets, two ways of finding the model server's files:

- **docker compose** runs the server on *the* serving directory ``mlops serve`` keeps
  (``<serving.base_directory>``): its ``models.config`` holds absolute host paths and is
  where ``mlops rollback`` / ``label`` act, so compose mounts that directory at the *same*
  absolute path in the container (``$MLOPS_SERVING_DIR``). One runtime models.config then
  serves both the local server and the container, and a rollback reaches either.
- **Kubernetes** has no host path: versions live on a shared volume (the PVC the pipeline
  pushes into) mounted at ``/models``, and the server's files come from a ConfigMap whose
  ``models.config`` names ``/models/<model_name>``. The ConfigMap is mounted as a directory
  (not ``subPath``), so an applied edit reaches the pod and TF Serving re-reads it every
  ``model_config_file_poll_wait_seconds``: that is how a rollback happens there.

With ``serving.rollout.enabled``, Kubernetes gains automatic rollouts by Flagger
(tensorflow_model_server has no traffic split of its own): a ``Canary`` targeting the
Deployment (Flagger then runs a ``-primary`` copy of it for the champion and scales the
Deployment itself up as the canary while a change is analysed), and two ``MetricTemplate``
queries of TF Serving's own Prometheus metrics, the canary's pods against the primary's.
What starts a rollout is a change of the version the pods are pinned to: ``models.config``
moves out of the server-files ConfigMap into ``<model>-version``, applied from
``kubernetes/pin/model-version.yaml`` with the version filled in, outside the
kustomization, so that re-applying the generated files never un-pins it. Flagger creates
the Services itself, so ``service.yaml`` is left out then.

The rendered files hold no absolute host path, so they do not depend on where the repo is
checked out. No TensorFlow is imported: rendering and checking take milliseconds.
"""
from __future__ import annotations

import math
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Optional

import yaml

from serving.errors import invalid_argument
from serving.rollout.policy import SHADOW
from serving.settings import ServingSettings
from serving import config_files, server_files

DEFAULT_OUT_DIR = Path("serving") / "deploy"
"""Where the files live, relative to the folder of ``pipeline_config.yaml``."""

# Ports inside the container; the config's ports are what clients reach (host / Service).
GRPC_PORT = 8500
REST_PORT = 8501
SERVER_CPU_LIMIT = 2  # cores a serving pod may use; its model thread pools are sized to it
CONTAINER_MODELS_DIR = "/models"          # where the model volume is mounted (Kubernetes)
CONTAINER_CONFIG_DIR = "/etc/tfserving"   # where the ConfigMap is mounted (Kubernetes)
SERVING_DIR_VAR = "MLOPS_SERVING_DIR"     # host serving directory, same path in compose
CONTAINER_TLS_DIR = "/etc/tfserving-tls"  # where the SSLConfig is mounted (both targets)
SSL_CONFIG_NAME = "ssl_config.txt"        # its file name there (the Secret's key)
SSL_CONFIG_VAR = "MLOPS_SSL_CONFIG_FILE"  # host SSLConfig file, for compose

MODELS_CONFIG = server_files.MODELS_CONFIG
BATCHING_FILE = server_files.BATCHING_FILE
MONITORING_FILE = server_files.MONITORING_FILE
COMPOSE_FILE = "docker-compose.yaml"
K8S_DIR = "kubernetes"
K8S_FILES = ("namespace.yaml", "pvc.yaml", "configmap.yaml", "deployment.yaml",
             "service.yaml", "hpa.yaml")
INGRESS_FILE = "ingress.yaml"  # only with serving.kubernetes.tls_secret
KUSTOMIZATION = "kustomization.yaml"
SERVICE_FILE = "service.yaml"  # left to Flagger during rollouts
# Only with serving.rollout.enabled: Flagger's resources, and the version pin (outside the
# kustomization: a template with VERSION_PLACEHOLDER, applied once per pushed version).
CANARY_FILE = "canary.yaml"
ERROR_RATE, P99_LATENCY = "error-rate", "p99-latency"  # the two MetricTemplates
METRIC_FILES = {ERROR_RATE: "metric-error-rate.yaml", P99_LATENCY: "metric-p99-latency.yaml"}
ROLLOUT_FILES = (CANARY_FILE, *METRIC_FILES.values())
PIN_FILE = "pin/model-version.yaml"
VERSION_PLACEHOLDER = "MODEL_VERSION"

# Every file this module may write: a file of this list that the config no longer asks for
# (batching, monitoring, the Ingress or rollouts switched off) is removed by write() and
# reported by check().
ALL_FILES = (MODELS_CONFIG, BATCHING_FILE, MONITORING_FILE, COMPOSE_FILE,
             *(f"{K8S_DIR}/{name}" for name in (*K8S_FILES, INGRESS_FILE, *ROLLOUT_FILES,
                                                PIN_FILE, KUSTOMIZATION)))

# Flagger (flagger.app/v1beta1, checked against its CRD of v1.44.0 by the tests).
FLAGGER_API = "flagger.app/v1beta1"
FLAGGER_MIN_INTERVAL_S = 10  # Flagger raises a shorter analysis interval to 10 s
MIN_METRIC_WINDOW_S = 60  # a rate() needs a few scrapes: Flagger's default metric interval
MIRROR_PROVIDERS = ("istio",)  # of the providers allowed here, the one that mirrors a share
WEBHOOK_NAME = "model-checks"  # `mlops rollout webhook`, one of Flagger's `rollout` hooks
WEBHOOK_TIMEOUT = "30s"  # it sends the probe to two servers; Flagger's default is 10 s
# TF Serving's request metrics, as its Prometheus exporter names them ("/tensorflow/
# serving/request_count" with every non-alphanumeric character made ':'): a counter by
# model_name and status (a status code name, "OK" for success), and a histogram of the
# answered requests' wall time in microseconds by model_name, API and entrypoint.
REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
# The two sides' pods, by name (TF Serving's metrics have no version label): Flagger's
# canary is the target Deployment itself (<target>-<hash>-<id>), the primary its copy
# (<target>-primary-<hash>-<id>). PromQL anchors a regex at both ends, so the first one
# does not take the primary's pods in; the form is Flagger's documented one.
CANARY_PODS = "{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
PRIMARY_PODS = "{{ target }}-primary-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
_PIN_SENTINEL = 2_147_483_647  # a version rendered only to be replaced by the placeholder

HEADER = ("Generated by `mlops deploy-files` from pipeline_config.yaml: do not edit by hand.\n"
          "Change the config and re-run `mlops deploy-files` (a test checks they agree).\n")


# --- small helpers -------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    """SafeDumper writing multi-line strings (the ConfigMap's files) as readable blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def _comment(text: str) -> str:
    return "".join(f"# {line}".rstrip() + "\n" for line in text.splitlines())


def _yaml(document: dict[str, Any], note: str = "") -> str:
    """One YAML document with the do-not-edit header (and an optional explanation)."""
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=1000)  # long flags and commands stay on one line
    return _comment(HEADER + note) + body


def _text_proto(text: str) -> str:
    """Text-proto files take ``#`` comments too; TF Serving's parser skips them."""
    return _comment(HEADER) + text


def _name(settings: ServingSettings) -> str:
    return settings.serving.model_name


def _selector(settings: ServingSettings) -> dict[str, str]:
    """The pod labels the Deployment, Service and HPA agree on (selectors are immutable,
    so they stay minimal)."""
    return {"app.kubernetes.io/name": _name(settings),
            "app.kubernetes.io/component": "model-server"}


def _labels(settings: ServingSettings) -> dict[str, str]:
    return {**_selector(settings), "app.kubernetes.io/part-of": settings.pipeline_name,
            "app.kubernetes.io/managed-by": "mlops"}


def _metadata(settings: ServingSettings, name: str, namespaced: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespaced:
        meta["namespace"] = settings.serving.kubernetes.namespace
    meta["labels"] = _labels(settings)
    return meta


def configmap_name(settings: ServingSettings) -> str:
    """The ConfigMap holding the server files, named once for the Deployment's mount."""
    return f"{_name(settings)}-config"


def server_args(settings: ServingSettings, config_dir: str, grpc_tls: bool = False,
                cores: Optional[int] = None) -> list[str]:
    """tensorflow_model_server's flags, ``--flag=value`` (its parser needs the ``=``), with
    the server files read from ``config_dir``; batching and monitoring only when enabled;
    ``--ssl_config_file`` (gRPC over TLS) from the TLS mount when ``grpc_tls``; the model
    sessions' two thread pools as configured, else, with ``cores`` (a container's CPU
    limit), each sized to it.

    Why the pools: left at 0, TensorFlow sizes each pool to the cores it sees, which in a
    container are the node's, not the limit; on a 32-core node a 2-core pod would run
    64 pool threads against a 2-CPU quota, and the kernel's CFS quota then stalls the
    whole pod for most of each 100 ms period once they are busy (the problem KServe
    reports for every framework's servers, kserve/kserve#1031)."""
    s = settings.serving
    args = [f"--port={GRPC_PORT}", f"--rest_api_port={REST_PORT}",
            f"--model_config_file={config_dir}/{MODELS_CONFIG}",
            f"--model_config_file_poll_wait_seconds={s.model_config_file_poll_wait_seconds}",
            f"--file_system_poll_wait_seconds={s.file_system_poll_wait_seconds}"]
    if s.batching.enabled:
        args += ["--enable_batching=true",
                 f"--batching_parameters_file={config_dir}/{BATCHING_FILE}"]
    if s.monitoring:
        args += [f"--monitoring_config_file={config_dir}/{MONITORING_FILE}"]
    if grpc_tls:
        args += [f"--ssl_config_file={CONTAINER_TLS_DIR}/{SSL_CONFIG_NAME}"]
    return args + s.session_thread_flags(cores)


# --- the model server's own files ----------------------------------------------------

def server_file_texts(settings: ServingSettings) -> dict[str, str]:
    """models.config (container path ``/models/<model_name>``, newest version), and the
    batching / monitoring files when the config enables them; no header, as mounted."""
    base_path = f"{CONTAINER_MODELS_DIR}/{_name(settings)}"
    models = server_files.default_models_config(settings, base_path=base_path)
    texts = {MODELS_CONFIG: config_files.model_server_config_text(models)}
    if settings.serving.batching.enabled:
        texts[BATCHING_FILE] = server_files.batching_parameters_text(settings)
    if settings.serving.monitoring:
        texts[MONITORING_FILE] = server_files.monitoring_config_text()
    return texts


# --- docker compose ------------------------------------------------------------------

_COMPOSE_NOTE = f"""
Start: {SERVING_DIR_VAR}=$PWD/serving_models docker compose -f serving/deploy/{COMPOSE_FILE} up
The serving directory (versions + the models.config `mlops serve` keeps, with absolute host
paths) is mounted at the same absolute path, so rollbacks and labels apply here too.
The entrypoint is the server binary itself: the image's default entrypoint script adds
--model_name/--model_base_path flags that a models.config makes meaningless.
Healthcheck: the image has no curl or wget, so bash's /dev/tcp sends the GET to the model
status endpoint and grep looks for a version in state AVAILABLE.
"""


def _healthcheck_command(settings: ServingSettings) -> str:
    request = (f"GET /v1/models/{_name(settings)} HTTP/1.1\\r\\nHost: localhost\\r\\n"
               "Connection: close\\r\\n\\r\\n")
    # -w: "UNAVAILABLE" (an error code) is not the word AVAILABLE (a version state).
    return (f'exec 3<>/dev/tcp/127.0.0.1/{REST_PORT} && printf "{request}" >&3 '
            "&& grep -qw AVAILABLE <&3")


def compose(settings: ServingSettings) -> dict[str, Any]:
    """The compose service; with ``serving.tls.ssl_config_file``, gRPC over TLS from that
    file, mounted from ``$MLOPS_SSL_CONFIG_FILE`` (which ``mlops serve --docker`` sets)."""
    s = settings.serving
    serving_dir = f"${{{SERVING_DIR_VAR}}}"
    grpc_tls = bool(s.tls.ssl_config_file)
    # No '$' or ':' in the messages: compose would read them as syntax.
    volumes = [f"${{{SERVING_DIR_VAR}:?set it to the absolute serving directory "
               f"(mlops serve --docker does)}}:{serving_dir}:ro"]
    if grpc_tls:
        volumes.append(f"${{{SSL_CONFIG_VAR}:?set it to serving.tls.ssl_config_file "
                       f"(mlops serve --docker does)}}:{CONTAINER_TLS_DIR}/{SSL_CONFIG_NAME}:ro")
    return {
        "name": _name(settings),
        "services": {_name(settings): {
            "image": s.image,
            "entrypoint": [server_files.REAL_SERVER],
            "command": server_args(settings, serving_dir, grpc_tls=grpc_tls),
            "ports": [f"{s.grpc_port}:{GRPC_PORT}", f"{s.rest_api_port}:{REST_PORT}"],
            "volumes": volumes,
            "healthcheck": {"test": ["CMD", "bash", "-c", _healthcheck_command(settings)],
                            "interval": "10s", "timeout": "5s", "retries": 3,
                            "start_period": "60s"},
            "restart": "unless-stopped",
        }},
    }


# --- Kubernetes ----------------------------------------------------------------------

def k8s_namespace(settings: ServingSettings) -> dict[str, Any]:
    """The Namespace; only the pipeline and manager labels, since it may hold more than
    the model server."""
    meta = _metadata(settings, settings.serving.kubernetes.namespace, namespaced=False)
    meta["labels"] = {k: v for k, v in meta["labels"].items()
                      if k in ("app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}


def k8s_pvc(settings: ServingSettings) -> dict[str, Any]:
    """The claim the pipeline pushes versions into and the pods read: ReadWriteMany, since
    both sides mount it at once."""
    k = settings.serving.kubernetes
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": _metadata(settings, k.volume_claim),
            "spec": {"accessModes": ["ReadWriteMany"],
                     "resources": {"requests": {"storage": k.storage}}}}


def k8s_configmap(settings: ServingSettings) -> dict[str, Any]:
    """The server files (`server_file_texts`), mounted read-only into every pod; during
    rollouts without models.config, which the version pin holds (`k8s_version_configmap`)."""
    data = server_file_texts(settings)
    if rollouts(settings):
        del data[MODELS_CONFIG]
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(settings, configmap_name(settings)), "data": data}


def k8s_deployment(settings: ServingSettings) -> dict[str, Any]:
    """The model server pods: probes that allow for model loading, rolling updates that
    never drop below `replicas`, the models and config mounts, and gRPC TLS when
    `ssl_config_secret` is set."""
    s, k = settings.serving, settings.serving.kubernetes
    template_meta: dict[str, Any] = {"labels": _labels(settings)}
    if s.monitoring:
        template_meta["annotations"] = {
            "prometheus.io/scrape": "true",
            "prometheus.io/path": config_files.DEFAULT_PROMETHEUS_PATH,
            "prometheus.io/port": str(REST_PORT)}
    container = {
        "name": "tensorflow-serving",
        "image": s.image,
        "command": [server_files.REAL_SERVER],
        "args": server_args(settings, CONTAINER_CONFIG_DIR,
                            grpc_tls=bool(k.ssl_config_secret), cores=SERVER_CPU_LIMIT),
        "ports": [{"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                  {"name": "http", "containerPort": REST_PORT, "protocol": "TCP"}],
        # The server opens its ports only once the models have loaded: the startup probe
        # gives loading up to 5 minutes before liveness may restart the container.
        "startupProbe": {"tcpSocket": {"port": GRPC_PORT},
                         "periodSeconds": 10, "failureThreshold": 30},
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{_name(settings)}",
                                       "port": REST_PORT},
                           "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": GRPC_PORT},
                          "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
        "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                      "limits": {"cpu": str(SERVER_CPU_LIMIT), "memory": "2Gi"}},
        "volumeMounts": [
            {"name": "models", "mountPath": CONTAINER_MODELS_DIR, "readOnly": True},
            {"name": "server-config", "mountPath": CONTAINER_CONFIG_DIR, "readOnly": True}],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    # During rollouts models.config comes from the version pin: both ConfigMaps are
    # projected into the one folder the flags name, and Flagger copies both for the primary.
    server_config = ({"projected": {"sources": [
        {"configMap": {"name": configmap_name(settings)}},
        {"configMap": {"name": version_configmap_name(settings)}}]}}
        if rollouts(settings) else {"configMap": {"name": configmap_name(settings)}})
    volumes: list[dict[str, Any]] = [
        {"name": "models", "persistentVolumeClaim": {
            "claimName": k.volume_claim, "readOnly": True}},
        {"name": "server-config", **server_config}]
    if k.ssl_config_secret:
        container["volumeMounts"].append(
            {"name": "grpc-tls", "mountPath": CONTAINER_TLS_DIR, "readOnly": True})
        volumes.append({"name": "grpc-tls", "secret": {
            "secretName": k.ssl_config_secret,
            "items": [{"key": SSL_CONFIG_NAME, "path": SSL_CONFIG_NAME}]}})
    # During rollouts Flagger scales this Deployment (the canary) to 0 between analyses:
    # a `replicas` here would scale it up again at every `kubectl apply` (the HPA, whose
    # minimum is `replicas`, sizes it while it runs).
    replicas = {} if rollouts(settings) else {"replicas": k.replicas}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(settings, _name(settings)),
        "spec": {
            **replicas,
            "selector": {"matchLabels": _selector(settings)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": template_meta, "spec": {
                "containers": [container],
                "volumes": volumes,
            }},
        },
    }


def k8s_service(settings: ServingSettings) -> dict[str, Any]:
    """A ClusterIP Service for both ports, at the configured port numbers."""
    s = settings.serving
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _metadata(settings, _name(settings)),
            "spec": {"type": "ClusterIP", "selector": _selector(settings), "ports": [
                {"name": "grpc", "port": s.grpc_port, "targetPort": "grpc",
                 "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "http", "port": s.rest_api_port, "targetPort": "http",
                 "protocol": "TCP", "appProtocol": "http"}]}}


def k8s_hpa(settings: ServingSettings) -> dict[str, Any]:
    """Scales the Deployment between `replicas` and `max_replicas` on CPU utilisation."""
    k = settings.serving.kubernetes
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(settings, _name(settings)),
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": _name(settings)},
                     "minReplicas": k.replicas, "maxReplicas": k.max_replicas,
                     "metrics": [{"type": "Resource", "resource": {
                         "name": "cpu", "target": {
                             "type": "Utilization",
                             "averageUtilization": k.target_cpu_utilization}}}]}}


def k8s_ingress(settings: ServingSettings) -> dict[str, Any]:
    """HTTPS for the REST port from outside the cluster: TLS ends here, with the
    certificate of the Secret ``tls_secret`` (made by you: it is not in git), and the
    Service's plain-HTTP port behind it (tensorflow_model_server's REST port has no TLS)."""
    s, k = settings.serving, settings.serving.kubernetes
    spec: dict[str, Any] = {}
    if k.ingress_class:
        spec["ingressClassName"] = k.ingress_class
    spec["tls"] = [{"hosts": [k.ingress_host], "secretName": k.tls_secret}]
    spec["rules"] = [{"host": k.ingress_host, "http": {"paths": [{
        "path": "/v1/", "pathType": "Prefix",  # TF Serving's REST API, not its metrics
        "backend": {"service": {"name": _name(settings),
                                "port": {"number": s.rest_api_port}}}}]}}]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": _metadata(settings, _name(settings)), "spec": spec}


# --- automatic rollouts: Flagger ---------------------------------------------------

def rollouts(settings: ServingSettings) -> bool:
    """Whether pushes are rolled out by Flagger (`serving.rollout.enabled`)."""
    return settings.serving.rollout.enabled


def version_configmap_name(settings: ServingSettings) -> str:
    """The ConfigMap holding the pinned models.config during rollouts."""
    return f"{_name(settings)}-version"


def metric_template_name(settings: ServingSettings, key: str) -> str:
    """A MetricTemplate's name (`ERROR_RATE` or `P99_LATENCY`), prefixed by the model's."""
    return f"{_name(settings)}-{key}"


def flagger_service_url(settings: ServingSettings, role: str) -> str:
    """The REST URL of the Service Flagger makes for `role` (`primary` or `canary`), as
    pods of the namespace's cluster reach it: what `mlops rollout webhook` probes."""
    return (f"http://{_name(settings)}-{role}.{settings.serving.kubernetes.namespace}:"
            f"{settings.serving.rest_api_port}")


def flagger_problems(settings: ServingSettings) -> list[str]:
    """What Flagger cannot do of the configured rollout, one line each naming the keys."""
    s, r = settings.serving, settings.serving.rollout
    problems = []
    if not s.monitoring:
        problems.append("serving.rollout.enabled needs serving.monitoring on Kubernetes: "
                        "Flagger judges the canary by TF Serving's Prometheus metrics")
    if any(step != int(step) for step in r.steps):
        problems.append("serving.rollout.steps must be whole per cents for Flagger's "
                        f"stepWeights, not {', '.join(f'{step:g}' for step in r.steps)}")
    if r.mode == SHADOW and s.kubernetes.rollout_provider not in MIRROR_PROVIDERS:
        problems.append(f"serving.rollout.mode {SHADOW} needs serving.kubernetes."
                        f"rollout_provider {' or '.join(MIRROR_PROVIDERS)}: Flagger mirrors a "
                        f"share of the traffic only there, not with "
                        f"{s.kubernetes.rollout_provider}")
    return problems


def analysis_interval_s(settings: ServingSettings) -> int:
    """Flagger's analysis interval: `interval_seconds` in whole seconds, at least Flagger's
    floor of 10 s (its CRD takes only whole seconds or minutes)."""
    return max(FLAGGER_MIN_INTERVAL_S, math.ceil(settings.serving.rollout.interval_seconds))


def metric_window_s(settings: ServingSettings) -> int:
    """The metrics' query window: the interval, but at least a minute, since a rate() over
    fewer than a few scrapes (commonly 15-30 s apart) has no value, which Flagger counts as
    a failed check."""
    return max(MIN_METRIC_WINDOW_S, analysis_interval_s(settings))


def _seconds(value: int) -> str:
    return f"{value}s"


def _matchers(settings: ServingSettings, pods: str, *more: str) -> str:
    """A PromQL label selector of one side's pods (namespace, pod name) and the model."""
    k = settings.serving.kubernetes
    return "{" + ", ".join((f'{k.prometheus_namespace_label}="{{{{ namespace }}}}"',
                            f'{k.prometheus_pod_label}=~"{pods}"',
                            f'model_name="{_name(settings)}"', *more)) + "}"


def _rate(settings: ServingSettings, metric: str, pods: str, *more: str,
          by: str = "") -> str:
    """The per-second rate of `metric` over the metric's interval, summed over one side's
    pods (and kept apart by the `by` labels)."""
    grouping = f" by ({by}) " if by else ""
    return (f"sum{grouping}(rate({metric}{_matchers(settings, pods, *more)}"
            "[{{ interval }}]))")


def _failed_share(settings: ServingSettings, pods: str) -> str:
    """One side's share of requests answered other than OK; no failed series is 0 (TF
    Serving exports a status only once it occurred), no request at all has no value."""
    failed = _rate(settings, REQUEST_COUNT, pods, 'status!="OK"')
    return f"({failed} or on() vector(0))\n  /\n  {_rate(settings, REQUEST_COUNT, pods)}"


def _p99_ms(settings: ServingSettings, pods: str) -> str:
    """One side's p99 answered-request latency in ms (TF Serving measures microseconds)."""
    buckets = _rate(settings, f"{REQUEST_LATENCY}_bucket", pods, by="le")
    return f"histogram_quantile(0.99, {buckets}) / 1000"


def error_rate_query(settings: ServingSettings) -> str:
    """The canary's failed share minus the primary's over the same window: what the
    canary fails beyond what clients' own mistakes make both fail (the embedded server
    pairs each request instead; Prometheus only has the two sides' totals)."""
    return (f"(\n  {_failed_share(settings, CANARY_PODS)}\n)\n-\n"
            f"(\n  {_failed_share(settings, PRIMARY_PODS)}\n)\n")


def p99_latency_query(settings: ServingSettings) -> str:
    """The canary's p99 (ms) minus `primary_factor` times the primary's: with the ratio as
    factor and the slack as threshold it is the embedded server's p99-vs-champion check;
    with factor 0, the canary's own p99 against an absolute limit."""
    return (f"(\n  {_p99_ms(settings, CANARY_PODS)}\n)\n-\n"
            "{{ variables.primary_factor }} * (\n  "
            f"{_p99_ms(settings, PRIMARY_PODS)}\n)\n")


def k8s_metric_template(settings: ServingSettings, key: str) -> dict[str, Any]:
    """One of the two Prometheus checks (`ERROR_RATE`, `P99_LATENCY`); the thresholds are
    the Canary's, so one template serves both p99 checks."""
    queries: dict[str, Callable[[ServingSettings], str]] = {
        ERROR_RATE: error_rate_query, P99_LATENCY: p99_latency_query}
    return {"apiVersion": FLAGGER_API, "kind": "MetricTemplate",
            "metadata": _metadata(settings, metric_template_name(settings, key)),
            "spec": {"provider": {"type": "prometheus",
                                  "address": settings.serving.kubernetes.prometheus_url},
                     "query": queries[key](settings)}}


def _metric(settings: ServingSettings, name: str, key: str, maximum: float,
            primary_factor: str | None = None) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": name,
                              "templateRef": {"name": metric_template_name(settings, key)}}
    if primary_factor is not None:
        metric["templateVariables"] = {"primary_factor": primary_factor}
    metric["thresholdRange"] = {"max": maximum}
    metric["interval"] = _seconds(metric_window_s(settings))
    return metric


def canary_metrics(settings: ServingSettings) -> list[dict[str, Any]]:
    """The analysis's metric checks, named and limited as the embedded server's checks:
    error rate, absolute p99 (when `max_p99_ms` is set) and p99 against the primary."""
    r = settings.serving.rollout
    metrics = [_metric(settings, "error-rate", ERROR_RATE, r.max_error_rate)]
    if r.max_p99_ms:
        metrics.append(_metric(settings, "p99-ms", P99_LATENCY, r.max_p99_ms, "0"))
    metrics.append(_metric(settings, "p99-vs-primary-ms", P99_LATENCY, r.p99_slack_ms,
                           f"{r.max_p99_ratio:g}"))
    return metrics


def canary_analysis(settings: ServingSettings) -> dict[str, Any]:
    """`serving.rollout` as Flagger's analysis: the interval, `threshold` failed checks in
    all before the rollback (Flagger counts them over the whole analysis too), and in
    canary mode `steps` as stepWeights (passing the last promotes, as here); in shadow
    mode a blue/green analysis of one iteration per step that mirrors the largest step's
    share to the canary (Flagger's mirror weight is one share for the whole analysis)."""
    r, k = settings.serving.rollout, settings.serving.kubernetes
    weights = [int(step) for step in r.steps]
    analysis: dict[str, Any] = {"interval": _seconds(analysis_interval_s(settings)),
                                "threshold": r.threshold}
    if r.mode == SHADOW:
        analysis.update(iterations=len(weights), mirror=True, mirrorWeight=weights[-1])
    else:
        analysis["stepWeights"] = weights
    analysis["metrics"] = canary_metrics(settings)
    if k.rollout_webhook_url:
        analysis["webhooks"] = [{"name": WEBHOOK_NAME, "type": "rollout",
                                 "url": k.rollout_webhook_url, "timeout": WEBHOOK_TIMEOUT}]
    return analysis


def k8s_canary(settings: ServingSettings) -> dict[str, Any]:
    """Flagger's Canary for the model server's Deployment: Flagger runs a `-primary` copy
    of it (and of its HPA and ConfigMaps) for the champion, makes the `<model>`,
    `-primary` and `-canary` Services (REST at `rest_api_port`; gRPC found by port
    discovery, at the container's 8500), and analyses every change of the Deployment's
    pod template or of its ConfigMaps: a new version pin starts a rollout."""
    s, k = settings.serving, settings.serving.kubernetes
    return {"apiVersion": FLAGGER_API, "kind": "Canary",
            "metadata": _metadata(settings, _name(settings)),
            "spec": {
                "provider": k.rollout_provider,
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                              "name": _name(settings)},
                "autoscalerRef": {"apiVersion": "autoscaling/v2",
                                  "kind": "HorizontalPodAutoscaler", "name": _name(settings)},
                "service": {"port": s.rest_api_port, "targetPort": "http", "portName": "http",
                            "appProtocol": "http", "portDiscovery": True},
                "analysis": canary_analysis(settings)}}


def pinned_models_config_text(settings: ServingSettings, version: int) -> str:
    """models.config serving exactly `version` from the container path."""
    models = server_files.default_models_config(
        settings, base_path=f"{CONTAINER_MODELS_DIR}/{_name(settings)}")
    # Setting `specific` clears `latest`: the policy is a oneof.
    models.model_config_list.config[0].model_version_policy.specific.versions.append(version)
    return config_files.model_server_config_text(models)


def k8s_version_configmap(settings: ServingSettings) -> dict[str, Any]:
    """The version pin, with `VERSION_PLACEHOLDER` for the version to fill in."""
    text = pinned_models_config_text(settings, _PIN_SENTINEL)
    assert text.count(str(_PIN_SENTINEL)) == 1, text
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(settings, version_configmap_name(settings)),
            "data": {MODELS_CONFIG: text.replace(str(_PIN_SENTINEL), VERSION_PLACEHOLDER)}}


def k8s_files(settings: ServingSettings) -> tuple[str, ...]:
    """The manifests, as the kustomization lists them: the Ingress only when configured;
    during rollouts Flagger's resources instead of the Service, which Flagger makes."""
    files = K8S_FILES
    if rollouts(settings):
        files = (*(name for name in K8S_FILES if name != SERVICE_FILE), *ROLLOUT_FILES)
    return (*files, *((INGRESS_FILE,) if settings.serving.kubernetes.tls_secret else ()))


def k8s_kustomization(settings: ServingSettings) -> dict[str, Any]:
    """Lists the manifests and sets their namespace, so `kubectl apply -k` takes them all."""
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "namespace": settings.serving.kubernetes.namespace,
            "resources": list(k8s_files(settings))}


_K8S_NOTES = {
    "pvc.yaml": """
The pipeline pushes versions into this claim (<claim>/<model_name>/<N>/), so it must be
ReadWriteMany: use a storage class that offers it (NFS, Filestore, EFS, CephFS).
""",
    "configmap.yaml": """
Rollback: give models.config a `specific { versions: N }` policy in the cluster (`kubectl
edit configmap`, or `kubectl apply` an edited copy; not this file); TF Serving re-reads it
every model_config_file_poll_wait_seconds. Re-applying this file returns to the newest version.
""",
    "deployment.yaml": """
The ConfigMap is mounted as a directory (no subPath) so that applied edits reach running pods.
With serving.kubernetes.ssl_config_secret, gRPC is served over TLS; create that Secret first:
  kubectl -n <namespace> create secret generic <ssl_config_secret> --from-file=ssl_config.txt=F
(F: TF Serving's SSLConfig text: server_key, server_cert, custom_ca, client_verify.)
""",
    INGRESS_FILE: """
HTTPS to the REST API. Create the Secret first, from the host's certificate and key:
  kubectl -n <namespace> create secret tls <serving.kubernetes.tls_secret> --cert=F --key=F
""",
}

_PIN_COMMAND = (f"sed 's/{VERSION_PLACEHOLDER}/N/' serving/deploy/{K8S_DIR}/{PIN_FILE} "
                "| kubectl apply -f -")

# During rollouts (serving.rollout.enabled): these replace or precede the notes above.
_ROLLOUT_NOTES = {
    "configmap.yaml": f"""
The server files but models.config, which the version pin holds
({PIN_FILE}). Flagger copies this ConfigMap for the primary
(<name>-config-primary) when it promotes; an applied edit is a change it analyses like a
new version.
""",
    "deployment.yaml": """
Flagger's rollout target (canary.yaml): it runs a copy, <name>-primary, for the champion,
and scales this one, the canary, to 0 between analyses; so no replicas here (the HPA sizes
it). models.config comes from the version pin, projected beside the server files.
""",
    CANARY_FILE: f"""
Needs Flagger (its CRDs of v1.44) and the mesh of serving.kubernetes.rollout_provider.
Every change of the Deployment or its ConfigMaps is analysed: pin version N, once the
pipeline has pushed it to the claim, to roll it out:
  {_PIN_COMMAND}
kubectl -n <namespace> get canary <name> shows the phase and weight; describe, each check.
""",
    METRIC_FILES[ERROR_RATE]: """
TF Serving's request counter on the canary's pods minus the same on the primary's: the
share of requests the canary fails beyond the client errors both see.
""",
    METRIC_FILES[P99_LATENCY]: """
TF Serving's latency histogram: canary p99 (ms) - primary_factor x primary p99 (ms); the
Canary sets the factor and the threshold of each use.
""",
    PIN_FILE: f"""
The version the model server pods serve during rollouts. Not in the kustomization: fill in
the version N the pipeline pushed to the claim, and apply it:
  {_PIN_COMMAND}
Flagger sees the changed ConfigMap and rolls N out on the canary pods; the primary keeps its
copy (<name>-version-primary) until the promotion. The pods wait for it: apply one (after
namespace.yaml) before the first `kubectl apply -k`.
""",
}


def _note(settings: ServingSettings, name: str) -> str:
    """The explanation heading a manifest (the rollout one first, during rollouts)."""
    note = _K8S_NOTES.get(name, "")
    if rollouts(settings) and name in _ROLLOUT_NOTES:
        keep = name == "deployment.yaml"  # its TLS instructions still apply
        note = _ROLLOUT_NOTES[name] + (note if keep else "")
    return note


# --- rendering, writing, checking ----------------------------------------------------

_BUILDERS: dict[str, Callable[[ServingSettings], dict[str, Any]]] = {
    "namespace.yaml": k8s_namespace, "pvc.yaml": k8s_pvc, "configmap.yaml": k8s_configmap,
    "deployment.yaml": k8s_deployment, SERVICE_FILE: k8s_service, "hpa.yaml": k8s_hpa,
    INGRESS_FILE: k8s_ingress, CANARY_FILE: k8s_canary,
    **{file: (lambda settings, key=key: k8s_metric_template(settings, key))
       for key, file in METRIC_FILES.items()},
    KUSTOMIZATION: k8s_kustomization}


def render(settings: ServingSettings) -> dict[str, str]:
    """Every deployment file, by path relative to the output folder (POSIX separators).

    Raises:
        ServingError: INVALID_ARGUMENT when rollouts are on and Flagger cannot do what the
            config asks (`flagger_problems`).
    """
    if rollouts(settings):
        problems = flagger_problems(settings)
        if problems:
            raise invalid_argument("; ".join(problems))
    files = {name: _text_proto(text) for name, text in server_file_texts(settings).items()}
    files[COMPOSE_FILE] = _yaml(compose(settings), _COMPOSE_NOTE)
    for name in (*k8s_files(settings), KUSTOMIZATION):
        files[f"{K8S_DIR}/{name}"] = _yaml(_BUILDERS[name](settings), _note(settings, name))
    if rollouts(settings):
        files[f"{K8S_DIR}/{PIN_FILE}"] = _yaml(k8s_version_configmap(settings),
                                               _note(settings, PIN_FILE))
    return files


def _path(out_dir: Path, relative: str) -> Path:
    return Path(out_dir, *PurePosixPath(relative).parts)


def write(settings: ServingSettings, out_dir: Path | str) -> list[Path]:
    """Writes the files (only those whose content changed) and removes the ones the config
    no longer asks for; returns the paths of the rendered files."""
    out_dir = Path(out_dir)
    files = render(settings)
    written = []
    for relative, text in files.items():
        path = _path(out_dir, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    for relative in ALL_FILES:
        if relative not in files:
            _path(out_dir, relative).unlink(missing_ok=True)
    return written


def check(settings: ServingSettings, out_dir: Path | str) -> list[str]:
    """The files under ``out_dir`` that are missing, differ from what :func:`write` would
    write, or should no longer exist; empty when the deployment matches the config."""
    out_dir = Path(out_dir)
    files = render(settings)
    stale = []
    for relative in sorted({*files, *ALL_FILES}):
        path = _path(out_dir, relative)
        wanted = files.get(relative)
        present = path.read_text() if path.is_file() else None
        if present != wanted:
            stale.append(str(path))
    return stale


__all__ = ["render", "write", "check", "compose", "server_args", "server_file_texts",
           "configmap_name", "k8s_ingress", "k8s_canary", "k8s_metric_template",
           "flagger_service_url", "pinned_models_config_text", "DEFAULT_OUT_DIR"]
