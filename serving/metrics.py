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

import threading
from collections import Counter
from typing import Callable, Iterable, Optional

import prometheus_client
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

prometheus_client.disable_created_metrics()  # TF Serving exports no *_created series

LATENCY_BUCKETS_US = (500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
                      500_000, 1_000_000, 5_000_000)


class Metrics:
    """The server's Prometheus registry: request counts and latencies (TF Serving's names,
    and per version), batch sizes and version states; thread-safe."""

    def __init__(self, loaded_versions: Callable[[], Iterable[tuple[str, int, str]]]) -> None:
        """``loaded_versions`` yields (model, version, state) for every known version."""
        self.registry = CollectorRegistry(auto_describe=True)
        self._counts: Counter = Counter()
        self._version_counts: Counter = Counter()
        self._histograms: dict[tuple, tuple] = {}  # labels -> children (`_histograms_for`)
        self._lock = threading.Lock()
        self._loaded_versions = loaded_versions
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

    def observe(self, model_name: str, api: str, entrypoint: str, status: str,
                seconds: float, version: Optional[int] = None) -> None:
        """Counts one request; ``version``: the one it was resolved to, if any."""
        key = (model_name, api, entrypoint, version)
        histograms = self._histograms.get(key) or self._histograms_for(key)
        with self._lock:
            self._counts[(model_name, status)] += 1
            if version is not None:
                self._version_counts[(model_name, str(version), api, entrypoint,
                                      status)] += 1
        microseconds = seconds * 1e6
        for histogram in histograms:
            histogram.observe(microseconds)

    def _histograms_for(self, key: tuple) -> tuple:
        """The latency histograms' labelled children a request is observed in, found once
        per (model, API, entrypoint, version): `labels()` checks and locks on every call,
        which on the REST port's event loop cost as much as the observations themselves."""
        model_name, api, entrypoint, version = key
        children = (self._latency.labels(model_name, api, entrypoint),)
        if version is not None:
            children += (self._version_latency.labels(model_name, str(version), api,
                                                      entrypoint),)
        self._histograms[key] = children
        return children

    def observe_batch(self, model_name: str, rows: int) -> None:
        """Records the rows of one batched model call, to judge the batching settings."""
        self._batch_size.labels(model_name).observe(rows)

    def collect(self) -> Iterable[Metric]:
        """The version-state gauge (the request counter is written by :meth:`exposition`)."""
        versions = GaugeMetricFamily(":tensorflow:serving:model_version_state",
                                     "1 for each model version in the given state.",
                                     labels=["model_name", "version", "state"])
        for model, version, state in self._loaded_versions():
            versions.add_metric([model, str(version), state], 1)
        yield versions

    def describe(self) -> Iterable[Metric]:
        """Nothing, so registering does not call `collect` (and the repository) early."""
        return []

    def _request_count_text(self) -> str:
        """``:tensorflow:serving:request_count`` exactly as TF Serving writes it: a counter
        without the ``_total`` suffix prometheus_client would add, labelled model_name and
        status."""
        name = ":tensorflow:serving:request_count"
        lines = [f"# HELP {name} The total number of requests.", f"# TYPE {name} counter"]
        with self._lock:
            counts = sorted(self._counts.items())
        for (model, status), value in counts:
            lines.append(f'{name}{{model_name="{_escape(model)}",status="{status}"}} {value}')
        name = ":mlops:serving:request_count"
        lines += [f"# HELP {name} The total number of requests, by the model version that "
                  "answered.", f"# TYPE {name} counter"]
        with self._lock:
            by_version = sorted(self._version_counts.items())
        for (model, version, api, entrypoint, status), value in by_version:
            lines.append(f'{name}{{model_name="{_escape(model)}",version="{version}",'
                         f'API="{api}",entrypoint="{entrypoint}",status="{status}"}} {value}')
        return "\n".join(lines) + "\n"

    def exposition(self) -> bytes:
        """The metrics page's body, in Prometheus's text format."""
        return self._request_count_text().encode() + generate_latest(self.registry)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
