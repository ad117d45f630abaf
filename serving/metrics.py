"""Prometheus metrics under TF Serving's names, exposed at the monitoring path.

``:tensorflow:serving:request_count`` (by model, API and status code) and
``:tensorflow:serving:request_latency`` (microseconds, by model, API and entrypoint) are
what TF Serving's own exporter calls them, so dashboards built for the real server work on
this one. Loaded versions and batch sizes are added for the operations that need them.

TF Serving's two request metrics have no version label, and adding one would change
their label sets, so the count and latency per version (what a canary split is judged by)
are two more metrics under the same names in this project's namespace, with a ``version``
label: ``:mlops:serving:request_count`` (by model, version, API, entrypoint and status)
and ``:mlops:serving:request_latency`` (microseconds, by model, version, API and
entrypoint). They count the requests that reached a version (resolved to it), whatever
their outcome; a request for an unknown model or version has no version to count under.
"""
from __future__ import annotations

import os
from typing import Callable, Iterable, Optional

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from serving.errors import failed_precondition
from serving.process import MULTIPROC_ENV

prometheus_client.disable_created_metrics()  # TF Serving exports no *_created series

_REQUEST_COUNT = ":tensorflow:serving:request_count"
_VERSION_COUNT = ":mlops:serving:request_count"
# The two request counters: help text and label names, in the order they are written.
_COUNTS = {
    _REQUEST_COUNT: ("The total number of requests.", ("model_name", "status")),
    _VERSION_COUNT: ("The total number of requests, by the model version that answered.",
                     ("model_name", "version", "API", "entrypoint", "status")),
}
LATENCY_BUCKETS_US = (500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
                      500_000, 1_000_000, 5_000_000)


class Metrics:
    """The server's Prometheus registry: request counts and latencies (TF Serving's names,
    and per version), batch sizes and version states; thread-safe.

    ``shared`` (the server runs REST worker processes, `serving.workers`): every process
    writes its counts into the folder ``PROMETHEUS_MULTIPROC_DIR`` names, through
    prometheus_client's multiprocess mode, and the metrics page, whichever process answers
    it, sums them all: a scrape sees the server, not the one process that happened to
    accept the connection. The version
    states are the answering process's own (every process loads the same versions).
    """

    def __init__(self, loaded_versions: Callable[[], Iterable[tuple[str, int, str]]],
                 shared: bool = False) -> None:
        """``loaded_versions`` yields (model, version, state) for every known version.

        Raises:
            ServingError: FAILED_PRECONDITION when ``shared`` but prometheus_client was
                imported without ``PROMETHEUS_MULTIPROC_DIR`` (not by ``python -m serving``).
        """
        shared_dir = os.environ.get(MULTIPROC_ENV) if shared else None
        if shared and not (shared_dir and getattr(values.ValueClass, "_multiprocess", False)):
            raise failed_precondition(
                "--rest_api_workers above 1 needs the server's own process (`python -m "
                "serving` or `mlops serve`): its processes share metrics through "
                "prometheus_client's multiprocess folder, chosen before it is imported")
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict[tuple, tuple] = {}  # labels -> children (`_children_for`)
        self._loaded_versions = loaded_versions
        self._count, self._version_count = (
            Counter(name, documentation, labels, registry=self.registry)
            for name, (documentation, labels) in _COUNTS.items())
        self._latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for TensorFlow Serving request.",
            ["model_name", "API", "entrypoint"], buckets=LATENCY_BUCKETS_US,
            registry=self.registry)
        self._version_latency = Histogram(
            ":mlops:serving:request_latency",
            "Wall time (in microseconds) of requests, by the model version that answered.",
            ["model_name", "version", "API", "entrypoint"], buckets=LATENCY_BUCKETS_US,
            registry=self.registry)
        self._batch_size = Histogram(
            ":tensorflow:serving:batch_size", "Rows per model call made by the batcher.",
            ["model_name"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry)
        self.registry.register(self)
        if shared_dir is None:
            self._exposed = self.registry
        else:  # the live objects write the files; the page reads every process's files
            self._exposed = CollectorRegistry(auto_describe=True)
            MultiProcessCollector(self._exposed, path=shared_dir)
            self._exposed.register(self)

    def observe(self, model_name: str, api: str, entrypoint: str, status: str,
                seconds: float, version: Optional[int] = None) -> None:
        """Counts one request; ``version``: the one it was resolved to, if any."""
        key = (model_name, api, entrypoint, status, version)
        counters, histograms = self._children.get(key) or self._children_for(key)
        for counter in counters:
            counter.inc()
        microseconds = seconds * 1e6
        for histogram in histograms:
            histogram.observe(microseconds)

    def _children_for(self, key: tuple) -> tuple:
        """The metrics' labelled children a request is counted in, found once per (model,
        API, entrypoint, status, version): `labels()` checks and locks on every call,
        which on the REST port's event loop cost as much as the observations themselves.
        Returns (counters, histograms)."""
        model_name, api, entrypoint, status, version = key
        counters: tuple = (self._count.labels(model_name, status),)
        histograms: tuple = (self._latency.labels(model_name, api, entrypoint),)
        if version is not None:
            counters += (self._version_count.labels(model_name, str(version), api,
                                                    entrypoint, status),)
            histograms += (self._version_latency.labels(model_name, str(version), api,
                                                        entrypoint),)
        self._children[key] = counters, histograms
        return counters, histograms

    def observe_batch(self, model_name: str, rows: int) -> None:
        """Records the rows of one batched model call, to judge the batching settings."""
        self._batch_size.labels(model_name).observe(rows)

    def collect(self) -> Iterable[Metric]:
        """The version-state gauge."""
        versions = GaugeMetricFamily(":tensorflow:serving:model_version_state",
                                     "1 for each model version in the given state.",
                                     labels=["model_name", "version", "state"])
        for model, version, state in self._loaded_versions():
            versions.add_metric([model, str(version), state], 1)
        yield versions

    def describe(self) -> Iterable[Metric]:
        """Nothing, so registering does not call `collect` (and the repository) early."""
        return []

    def exposition(self) -> bytes:
        """The metrics page's body, in Prometheus's text format: the request counts first,
        written as TF Serving writes them (a counter without the ``_total`` suffix
        prometheus_client would add), then everything else as prometheus_client does."""
        families = list(self._exposed.collect())
        counted = {family.name: family.samples for family in families if family.name in _COUNTS}
        lines = []
        for name, (documentation, label_names) in _COUNTS.items():
            lines += [f"# HELP {name} {documentation}", f"# TYPE {name} counter"]
            rows = sorted((tuple(sample.labels[label] for label in label_names), sample.value)
                          for sample in counted.get(name, ()) if sample.name == f"{name}_total")
            for label_values, value in rows:
                labels = ",".join(f'{label}="{_escape(text)}"'
                                  for label, text in zip(label_names, label_values))
                lines.append(f"{name}{{{labels}}} {_number(value)}")
        others = _Families([f for f in families if f.name not in _COUNTS])
        return ("\n".join(lines) + "\n").encode() + generate_latest(others)


class _Families:
    """Collected families, in the shape `generate_latest` reads (anything with `collect`)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
