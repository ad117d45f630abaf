"""Defers importing modules that TFX, Beam and TFMA import at start-up and a run never uses.

`import tfx` pulls in Google Cloud's Vertex AI client through its Vertex extensions, and
Beam's `apache_beam.io` the BigQuery clients (which bring tqdm's notebook widgets): about
half of TFX's import time here (docs/performance.md "Where the time went in a cold run"),
paid by every process that runs a component (`mlops run`, each Kubeflow task, the suite's
workers). Each is loaded by the standard library's `LazyLoader`: its code runs on the
first read of one of its attributes, so code that does use BigQuery or Vertex is
unaffected.

Only a module that its importers bind by name (`import a.b as c`, `from a import b`) and
read later can wait: TFMA's notebook widgets (ipywidgets), Keras's IPython and KFP's
Kubernetes client are read at import time (an annotation, a submodule, a re-export), so
deferring them would save nothing.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys

DEFERRED_MODULES = (
    "tfx.extensions.google_cloud_ai_platform.training_clients",
    "tfx.extensions.google_cloud_ai_platform.prediction_clients",
    "google.cloud.bigquery",  # apache_beam.io.gcp.bigquery_tools
    "google.cloud.bigquery_storage_v1",  # apache_beam.io.gcp.bigquery
)


class _DeferringFinder(importlib.abc.MetaPathFinder):
    """Finds each of DEFERRED_MODULES where Python would, and hands it to the standard
    library's `LazyLoader`: the import (its parents' included) completes as usual, and the
    module's code runs on the first read of one of its attributes."""

    def find_spec(self, fullname: str, path=None, target=None):
        if fullname not in DEFERRED_MODULES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec


def defer_unused_modules() -> None:
    """Defers each of DEFERRED_MODULES not imported yet; call it before `import tfx`.
    Calling it again changes nothing."""
    if not any(isinstance(finder, _DeferringFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder())
