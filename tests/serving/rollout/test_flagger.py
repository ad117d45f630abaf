"""Flagger's resources for rollouts with the real tensorflow_model_server, without a cluster.

No cluster or Flagger runs here, so every Canary and MetricTemplate `mlops deploy-files`
renders is validated against Flagger's published CRD schema (v1.44.0, vendored under
data/), made strict the way the API server is (a field the structural schema does not
declare is refused by `kubectl apply`'s default strict validation); the mapping from
`serving.rollout` is checked value by value; the PromQL is checked for the series and
labels TF Serving exports (as this project's server writes them, under the same names),
for Flagger's template variables only, and for pod regexes that split the two
Deployments' pods; and `kubectl kustomize` builds the folder when kubectl is installed.
"""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from pipeline.definition.config import load_config
from serving import config_files, deployment
from serving.errors import ServingError
from serving.metrics import Metrics
from serving.settings import ServingSettings
from tests.conftest import REPO, write_config

CRD_FILE = Path(__file__).parent / "data" / "flagger-crd-v1.44.0.yaml"
FLAGGER_GROUP = "flagger.app"
# What Flagger's query templates can call (pkg/apis/flagger/v1beta1/metric.go,
# MetricTemplateModel.TemplateFunctions); `variables.X` needs X in templateVariables.
TEMPLATE_FUNCTIONS = {"name", "namespace", "target", "service", "ingress", "route",
                      "interval", "variables"}
# Pod names of Flagger's two Deployments (<deployment>-<pod-template-hash>-<suffix>).
CANARY_POD = "chicago-taxi-5f7d8c9b6-x7k2p"
PRIMARY_POD = "chicago-taxi-primary-7c9d6b5f4-q2w8z"


def rollout_settings(folder: Path, changes: Optional[dict[str, Any]] = None
                     ) -> ServingSettings:
    """The repo's config with rollouts on, and dotted-key changes."""
    path = write_config(folder, {"serving.rollout.enabled": True, **(changes or {})})
    return load_config(path, use_env=False, check_files=False).serving_settings()


def rendered(settings: ServingSettings) -> dict[str, Any]:
    """The rendered Kubernetes files, parsed, by file name under kubernetes/."""
    prefix = f"{deployment.K8S_DIR}/"
    return {name.removeprefix(prefix): yaml.safe_load(text)
            for name, text in deployment.render(settings).items() if name.startswith(prefix)}


def flagger_objects(settings: ServingSettings) -> list[dict[str, Any]]:
    return [obj for obj in rendered(settings).values()
            if obj["apiVersion"].startswith(f"{FLAGGER_GROUP}/")]


def by_kind(settings: ServingSettings, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in rendered(settings).values() if obj["kind"] == kind]


def _strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` on every object that declares its
    properties (and does not keep unknown fields): Kubernetes refuses or prunes what a
    structural schema does not declare, while JSON Schema allows it unless told."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if ("properties" in strict and "additionalProperties" not in strict
            and not strict.get("x-kubernetes-preserve-unknown-fields")):
        strict["additionalProperties"] = False
    return strict


@pytest.fixture(scope="module")
def validators() -> dict[tuple[str, str], Any]:
    """(apiVersion, kind) -> a validator of the CRD's served OpenAPI v3 schema
    (`jsonschema.Draft4Validator`; imported here, as its import takes seconds)."""
    import jsonschema

    found = {}
    for crd in yaml.safe_load_all(CRD_FILE.read_text()):
        spec = crd["spec"]
        for version in spec["versions"]:
            if version["served"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                jsonschema.Draft4Validator.check_schema(schema)
                found[(f"{spec['group']}/{version['name']}", spec["names"]["kind"])] = \
                    jsonschema.Draft4Validator(schema)
    return found


def problems(validators, obj: dict[str, Any]) -> list[str]:
    """Why the API server would refuse `obj` (empty: it would take it)."""
    key = (obj["apiVersion"], obj["kind"])
    if key not in validators:
        return [f"no CRD serves {key}"]
    found = [f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
             for error in validators[key].iter_errors(obj)]
    # ObjectMeta is checked by the API server itself, not the CRD: a DNS-1123 name.
    if not re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", obj["metadata"]["name"]):
        found.append(f"metadata.name {obj['metadata']['name']!r}")
    return found


# --- (a) the published schema ---------------------------------------------------------

def test_the_vendored_crds_are_flaggers_v1beta1_resources(validators):
    assert CRD_FILE.read_text().count("tag v1.44.0") == 1
    assert set(validators) == {(f"{FLAGGER_GROUP}/v1beta1", kind) for kind in
                               ("Canary", "MetricTemplate", "AlertProvider")}


@pytest.mark.parametrize("changes", [
    {},
    {"serving.rollout.mode": "shadow"},
    {"serving.rollout.max_p99_ms": 250,
     "serving.kubernetes.rollout_webhook_url": "http://mlops-webhook.mlops:8080/"},
    {"serving.kubernetes.rollout_provider": "linkerd", "serving.rollout.steps": [5, 50],
     "serving.rollout.interval_seconds": 2.5, "serving.rollout.threshold": 1,
     "serving.kubernetes.prometheus_pod_label": "kubernetes_pod_name",
     "serving.kubernetes.prometheus_namespace_label": "kubernetes_namespace",
     "serving.model_name": "fare-model", "serving.rest_api_port": 9501,
     "serving.kubernetes.tls_secret": "tls", "serving.kubernetes.ingress_host": "a.example"},
], ids=["canary", "shadow", "webhook-and-absolute-p99", "linkerd-and-more"])
def test_every_flagger_resource_is_valid_under_the_published_crd(tmp_path, validators,
                                                                  changes):
    objects = flagger_objects(rollout_settings(tmp_path, changes))
    assert sorted(obj["kind"] for obj in objects) == ["Canary", "MetricTemplate",
                                                      "MetricTemplate"]
    for obj in objects:
        assert problems(validators, obj) == [], obj["metadata"]["name"]


def test_the_strict_schema_refuses_what_the_api_server_would(tmp_path, validators):
    """The validation is not vacuous: each of these mistakes is caught."""
    [canary] = by_kind(rollout_settings(tmp_path), "Canary")
    [template, _] = by_kind(rollout_settings(tmp_path), "MetricTemplate")

    def broken(obj: dict, edit) -> dict:
        obj = copy.deepcopy(obj)
        edit(obj)
        return obj

    mistakes = [
        broken(canary, lambda c: c["spec"]["analysis"].update(stepWeigths=[10])),  # typo
        broken(canary, lambda c: c["spec"]["analysis"].update(iterations=3)),  # two kinds
        broken(canary, lambda c: c["spec"]["analysis"].update(interval="1.5m")),
        broken(canary, lambda c: c["spec"]["analysis"].pop("threshold")),
        broken(canary, lambda c: c["spec"].update(provider="envoy")),
        broken(canary, lambda c: c["spec"]["analysis"].update(
            webhooks=[{"name": "x", "url": "http://x/", "type": "during"}])),
        broken(canary, lambda c: c["spec"]["analysis"]["metrics"][0].update(
            templateVariables={"primary_factor": 1.5})),  # variables are strings
        broken(template, lambda t: t["spec"].pop("query")),
        broken(template, lambda t: t["spec"]["provider"].update(type="prom")),
    ]
    for obj in mistakes:
        assert problems(validators, obj), obj["spec"]


# --- (b) serving.rollout -> the analysis ---------------------------------------------

def test_steps_threshold_and_interval_map_to_the_analysis(tmp_path):
    [canary] = by_kind(rollout_settings(tmp_path, {
        "serving.rollout.steps": [5, 20, 60], "serving.rollout.threshold": 4,
        "serving.rollout.interval_seconds": 90}), "Canary")
    analysis = canary["spec"]["analysis"]
    assert analysis["stepWeights"] == [5, 20, 60]
    assert "iterations" not in analysis and "mirror" not in analysis
    assert (analysis["threshold"], analysis["interval"]) == (4, "90s")
    assert {metric["interval"] for metric in analysis["metrics"]} == {"90s"}


@pytest.mark.parametrize("seconds, interval, window", [
    (1, "10s", "60s"),  # Flagger's floor; a rate() needs a minute of scrapes
    (12.5, "13s", "60s"),  # whole seconds only (the CRD's pattern)
    (60, "60s", "60s"), (300, "300s", "300s")])
def test_the_interval_respects_flaggers_floor_and_the_window_a_few_scrapes(
        tmp_path, seconds, interval, window):
    [canary] = by_kind(rollout_settings(
        tmp_path, {"serving.rollout.interval_seconds": seconds}), "Canary")
    assert canary["spec"]["analysis"]["interval"] == interval
    assert {metric["interval"] for metric in canary["spec"]["analysis"]["metrics"]} == \
        {window}


def test_the_metric_checks_carry_the_configured_thresholds(tmp_path):
    settings = rollout_settings(tmp_path, {"serving.rollout.max_error_rate": 0.02,
                                           "serving.rollout.max_p99_ratio": 1.25,
                                           "serving.rollout.p99_slack_ms": 15})
    [canary] = by_kind(settings, "Canary")
    metrics = {m["name"]: m for m in canary["spec"]["analysis"]["metrics"]}
    assert list(metrics) == ["error-rate", "p99-vs-primary-ms"]  # max_p99_ms 0: off
    assert metrics["error-rate"]["thresholdRange"] == {"max": 0.02}
    assert metrics["p99-vs-primary-ms"]["templateVariables"] == {"primary_factor": "1.25"}
    assert metrics["p99-vs-primary-ms"]["thresholdRange"] == {"max": 15}
    templates = {t["metadata"]["name"]: t for t in by_kind(settings, "MetricTemplate")}
    for metric in metrics.values():
        template = templates[metric["templateRef"]["name"]]
        assert "namespace" not in metric["templateRef"]  # the Canary's, by default
        assert template["metadata"]["namespace"] == canary["metadata"]["namespace"]
        assert template["spec"]["provider"] == {
            "type": "prometheus", "address": settings.serving.kubernetes.prometheus_url}

    [canary] = by_kind(rollout_settings(tmp_path, {"serving.rollout.max_p99_ms": 250}),
                       "Canary")
    metrics = {m["name"]: m for m in canary["spec"]["analysis"]["metrics"]}
    assert list(metrics) == ["error-rate", "p99-ms", "p99-vs-primary-ms"]
    assert metrics["p99-ms"]["templateVariables"] == {"primary_factor": "0"}
    assert metrics["p99-ms"]["thresholdRange"] == {"max": 250}


def test_shadow_mode_is_a_mirrored_blue_green_analysis(tmp_path):
    [canary] = by_kind(rollout_settings(tmp_path, {"serving.rollout.mode": "shadow",
                                                   "serving.rollout.steps": [10, 30]}),
                       "Canary")
    analysis = canary["spec"]["analysis"]
    assert (analysis["iterations"], analysis["mirror"], analysis["mirrorWeight"]) == (
        2, True, 30)
    assert "stepWeights" not in analysis
    assert canary["spec"]["provider"] == "istio"


@pytest.mark.parametrize("changes, words", [
    ({"serving.rollout.steps": [12.5, 50]}, ["serving.rollout.steps", "12.5"]),
    ({"serving.rollout.mode": "shadow", "serving.kubernetes.rollout_provider": "linkerd"},
     ["serving.rollout.mode", "serving.kubernetes.rollout_provider", "linkerd"]),
    ({"serving.monitoring": False}, ["serving.monitoring"])])
def test_what_flagger_cannot_do_is_refused_naming_the_keys(tmp_path, changes, words):
    with pytest.raises(ServingError) as caught:
        deployment.render(rollout_settings(tmp_path, changes))
    for word in words:
        assert word in caught.value.message


def test_the_webhook_is_called_each_interval_only_when_its_url_is_set(tmp_path):
    [canary] = by_kind(rollout_settings(tmp_path), "Canary")
    assert "webhooks" not in canary["spec"]["analysis"]
    url = "http://mlops-webhook.mlops:8080/"
    [canary] = by_kind(rollout_settings(
        tmp_path, {"serving.kubernetes.rollout_webhook_url": url}), "Canary")
    assert canary["spec"]["analysis"]["webhooks"] == [
        {"name": "model-checks", "type": "rollout", "url": url, "timeout": "30s"}]


# --- (c) the queries ----------------------------------------------------------------

def queries(settings: ServingSettings) -> dict[str, str]:
    return {t["metadata"]["name"].removeprefix(f"{settings.serving.model_name}-"):
            t["spec"]["query"] for t in by_kind(settings, "MetricTemplate")}


def flagger_render(query: str, target: str, namespace: str, interval: str,
                   variables: dict[str, str]) -> str:
    """What Flagger's RenderQuery makes of the template (every action is one of its
    functions, called without arguments, or a variable)."""
    values = {"target": target, "namespace": namespace, "interval": interval,
              **{f"variables.{key}": value for key, value in variables.items()}}

    def action(match: re.Match) -> str:
        assert match[1] in values, f"{{{{ {match[1]} }}}} is not rendered by Flagger"
        return values[match[1]]

    return re.sub(r"\{\{\s*([a-z_.]+)\s*\}\}", action, query)


def as_flagger_sends(settings: ServingSettings, key: str) -> str:
    """A MetricTemplate's query as Flagger sends it to Prometheus for the Canary."""
    return flagger_render(queries(settings)[key], settings.serving.model_name,
                          settings.serving.kubernetes.namespace, "60s",
                          {"primary_factor": "1.5"})


def selectors(promql: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """(metric name, {label: (operator, value)}) of each series selector."""
    found = []
    for name, body in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", promql):
        labels = dict((label, (op, value)) for label, op, value in
                      re.findall(r'([a-zA-Z_]+)\s*(=~|!=|=)\s*"([^"]*)"', body))
        found.append((name, labels))
    return found


def test_the_queries_use_only_flaggers_template_variables(tmp_path):
    for name, query in queries(rollout_settings(tmp_path)).items():
        actions = re.findall(r"\{\{(.*?)\}\}", query)
        assert actions, name
        for action in actions:
            function = action.strip().split(".")[0]
            assert function in TEMPLATE_FUNCTIONS, (name, action)
        assert query.count("(") == query.count(")"), name


def test_the_queries_compare_the_canarys_pods_with_the_primarys(tmp_path):
    settings = rollout_settings(tmp_path)
    for name, query in queries(settings).items():
        text = flagger_render(query, "chicago-taxi", "mlops", "60s",
                              {"primary_factor": "1.5"})
        found = selectors(text)
        assert found, name
        sides = []
        for metric, labels in found:
            assert labels["namespace"] == ("=", "mlops")
            assert labels["model_name"] == ("=", settings.serving.model_name)
            operator, pods = labels["pod"]
            assert operator == "=~"
            # PromQL anchors regexes at both ends, as fullmatch does.
            takes = {pod for pod in (CANARY_POD, PRIMARY_POD) if re.fullmatch(pods, pod)}
            assert len(takes) == 1, (name, pods, takes)
            sides.append("canary" if takes == {CANARY_POD} else "primary")
        # canary minus primary: the canary's selectors come first, half of them.
        half = len(sides) // 2
        assert sides == ["canary"] * half + ["primary"] * half, name
        assert "[60s]" in text and "-\n" in text


def test_the_error_rate_is_the_canarys_failed_share_minus_the_primarys(tmp_path):
    settings = rollout_settings(tmp_path)
    query = queries(settings)["error-rate"]
    found = selectors(as_flagger_sends(settings, "error-rate"))
    assert {metric for metric, _ in found} == {deployment.REQUEST_COUNT}
    failed = [labels for _, labels in found if "status" in labels]
    assert len(failed) == 2 and all(labels["status"] == ("!=", "OK") for labels in failed)
    # A status TF Serving has not seen yet has no series: 0 failed, not "no data".
    assert query.count("or on() vector(0)") == 2
    assert "rate(" in query and "[{{ interval }}]" in query


def test_the_p99_is_in_milliseconds_with_the_primarys_share_a_variable(tmp_path):
    settings = rollout_settings(tmp_path)
    query = queries(settings)["p99-latency"]
    assert {metric for metric, _ in selectors(as_flagger_sends(settings, "p99-latency"))} == {
        f"{deployment.REQUEST_LATENCY}_bucket"}
    assert query.count("histogram_quantile(0.99, sum by (le) (rate(") == 2
    assert query.count(") / 1000") == 2  # TF Serving measures microseconds
    assert "{{ variables.primary_factor }} * (" in query


def test_the_prometheus_labels_and_model_follow_the_config(tmp_path):
    settings = rollout_settings(tmp_path, {
        "serving.model_name": "fare-model",
        "serving.kubernetes.prometheus_pod_label": "kubernetes_pod_name",
        "serving.kubernetes.prometheus_namespace_label": "kubernetes_namespace"})
    for key in queries(settings):
        for _, labels in selectors(as_flagger_sends(settings, key)):
            assert set(labels) - {"status"} == {"kubernetes_namespace",
                                                "kubernetes_pod_name", "model_name"}
            assert labels["model_name"] == ("=", "fare-model")


def test_the_queries_name_series_and_labels_the_model_server_exports(tmp_path):
    """TF Serving's names and labels (util.cc: request_count by model_name and status,
    request_latency by model_name, API, entrypoint; exported with '/' -> ':'), as the
    embedded server writes them too: every series and label a query selects exists in
    such a page, but the namespace and pod labels, which Prometheus's scrape adds."""
    metrics = Metrics(lambda: [("chicago-taxi", 1, "AVAILABLE")])
    metrics.observe("chicago-taxi", "predict", "REST", "OK", 0.004, version=1)
    metrics.observe("chicago-taxi", "predict", "REST", "INVALID_ARGUMENT", 0.001, version=1)
    exported: dict[str, set[str]] = {}
    for line in metrics.exposition().decode().splitlines():
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}", line)
        if match:
            exported.setdefault(match[1], set()).update(
                re.findall(r'([a-zA-Z_]+)="', match[2]))
    settings = rollout_settings(tmp_path)
    for key in queries(settings):
        for metric, labels in selectors(as_flagger_sends(settings, key)):
            assert metric in exported, metric
            assert set(labels) - {"namespace", "pod"} <= exported[metric], metric
    assert exported[deployment.REQUEST_COUNT] == {"model_name", "status"}


# --- (d) the rest of the folder -------------------------------------------------------

def test_the_canary_targets_the_deployment_its_hpa_and_rest_port(tmp_path):
    settings = rollout_settings(tmp_path, {"serving.rest_api_port": 9501})
    files = rendered(settings)
    canary, deploy, hpa = files["canary.yaml"], files["deployment.yaml"], files["hpa.yaml"]
    spec = canary["spec"]
    assert spec["targetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                 "name": deploy["metadata"]["name"]}
    assert spec["autoscalerRef"] == {"apiVersion": "autoscaling/v2",
                                     "kind": "HorizontalPodAutoscaler",
                                     "name": hpa["metadata"]["name"]}
    assert hpa["spec"]["scaleTargetRef"]["name"] == deploy["metadata"]["name"]
    # Flagger finds the selector by one of its default labels, whose value it suffixes.
    selector = deploy["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/name"] == deploy["metadata"]["name"]
    [server] = deploy["spec"]["template"]["spec"]["containers"]
    assert spec["service"]["port"] == 9501
    assert spec["service"]["targetPort"] in {port["name"] for port in server["ports"]}
    assert spec["service"]["portDiscovery"] is True  # gRPC too
    assert "replicas" not in deploy["spec"]  # Flagger scales it to 0 between analyses
    assert deploy["spec"]["template"]["metadata"]["annotations"][
        "prometheus.io/scrape"] == "true"


def test_flagger_makes_the_services_and_the_version_pin_stays_out_of_kustomize(tmp_path):
    files = rendered(rollout_settings(tmp_path))
    resources = files[deployment.KUSTOMIZATION]["resources"]
    assert "service.yaml" not in files and "service.yaml" not in resources
    assert {"canary.yaml", "metric-error-rate.yaml", "metric-p99-latency.yaml"} <= \
        set(resources)
    assert sorted(resources) == sorted(name for name in files
                                       if name not in (deployment.KUSTOMIZATION,
                                                       deployment.PIN_FILE))
    assert deployment.PIN_FILE not in resources


def test_the_pods_read_models_config_from_the_version_pin(tmp_path):
    settings = rollout_settings(tmp_path)
    files = rendered(settings)
    deploy = files["deployment.yaml"]
    [server] = deploy["spec"]["template"]["spec"]["containers"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in server["args"])
    folder, _, name = flags["model_config_file"].rpartition("/")
    [mount] = [m for m in server["volumeMounts"] if m["mountPath"] == folder]
    [volume] = [v for v in deploy["spec"]["template"]["spec"]["volumes"]
                if v["name"] == mount["name"]]
    sources = [source["configMap"]["name"] for source in volume["projected"]["sources"]]
    config, pin = files["configmap.yaml"], files[deployment.PIN_FILE]
    assert sources == [config["metadata"]["name"], pin["metadata"]["name"]]
    assert name not in config["data"] and set(pin["data"]) == {name}
    for flag in ("batching_parameters_file", "monitoring_config_file"):
        assert flags[flag].rpartition("/")[2] in config["data"]


def test_the_version_pin_serves_exactly_the_version_filled_in(tmp_path):
    settings = rollout_settings(tmp_path)
    text = deployment.render(settings)[f"{deployment.K8S_DIR}/{deployment.PIN_FILE}"]
    assert deployment.VERSION_PLACEHOLDER in text
    assert "sed 's/MODEL_VERSION/N/' serving/deploy/kubernetes/pin/model-version.yaml" \
        in text  # the command its header gives
    pin = yaml.safe_load(text.replace(deployment.VERSION_PLACEHOLDER, "7"))
    assert (pin["kind"], pin["metadata"]["name"], pin["metadata"]["namespace"]) == (
        "ConfigMap", "chicago-taxi-version", "mlops")
    models = config_files.parse_model_server_config(pin["data"]["models.config"], "pin")
    [model] = models.model_config_list.config
    assert list(model.model_version_policy.specific.versions) == [7]
    assert model.base_path == "/models/chicago-taxi"
    assert pin["data"]["models.config"] == deployment.pinned_models_config_text(settings, 7)


def test_switching_rollouts_off_restores_the_plain_deployment(tmp_path):
    out = tmp_path / "deploy"
    on = rollout_settings(tmp_path)
    deployment.write(on, out)
    assert deployment.check(on, out) == []
    for name in (*deployment.ROLLOUT_FILES, deployment.PIN_FILE):
        assert (out / deployment.K8S_DIR / name).is_file()
    off = rollout_settings(tmp_path, {"serving.rollout.enabled": False})
    deployment.write(off, out)
    assert deployment.check(off, out) == []
    for name in (*deployment.ROLLOUT_FILES, deployment.PIN_FILE):
        assert not (out / deployment.K8S_DIR / name).exists()
    assert (out / deployment.K8S_DIR / "service.yaml").is_file()
    assert deployment.render(off) == deployment.render(load_config(
        REPO / "pipeline_config.yaml", use_env=False).serving_settings())


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_the_rollout_folder(tmp_path):
    out = tmp_path / "deploy"
    deployment.write(rollout_settings(tmp_path), out)
    built = subprocess.run(["kubectl", "kustomize", str(out / deployment.K8S_DIR)],
                           capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    kinds = sorted(obj["kind"] for obj in yaml.safe_load_all(built.stdout))
    assert kinds == sorted(["Namespace", "PersistentVolumeClaim", "ConfigMap", "Deployment",
                            "HorizontalPodAutoscaler", "Canary", "MetricTemplate",
                            "MetricTemplate"])
