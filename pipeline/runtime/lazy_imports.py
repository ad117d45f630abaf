"""Defers importing modules that TFX and Beam import at start-up and a run never uses.

`import tfx` pulls in Google Cloud's Vertex AI client through its Vertex extensions (the
bulk inferrer's and the Vertex pusher's client modules), and Beam's `apache_beam.io` the
BigQuery clients (which bring tqdm's notebook widgets); the first was almost half of
TFX's import time here (docs/performance.md), and a local run never calls either. A
stand-in module takes the place of each client module: the first read of a name it does
not have imports the real one, so code that does use Vertex or BigQuery is unaffected.

Why a stand-in and not the standard library's `LazyLoader`: a lazy module runs on any
attribute read, `__dict__` included, and Beam's pickler reads every module's `__dict__`
the first time it pickles a dict; the deferred modules would all run in the middle of a
component (Vertex AI's client: about 4 s of Transform). Only a module that its importers
bind by name and read later can wait: TFMA's notebook widgets, Keras's IPython and KFP's
Kubernetes client are read at import time, so deferring them would save nothing.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED_MODULES = ("tfx.extensions.google_cloud_ai_platform.training_clients",
                    "tfx.extensions.google_cloud_ai_platform.prediction_clients",
                    "google.cloud.bigquery",  # apache_beam.io.gcp.bigquery_tools
                    "google.cloud.bigquery_storage_v1")  # apache_beam.io.gcp.bigquery


class _DeferredModule(types.ModuleType):
    """Imports the real module on the first read of an attribute it does not have."""

    def __getattr__(self, attribute: str):
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        real = importlib.import_module(name)
        self.__dict__.update({k: v for k, v in real.__dict__.items() if k != "__class__"})
        return getattr(real, attribute)


def defer_unused_modules() -> None:
    """Puts a stand-in for each of DEFERRED_MODULES in `sys.modules`; call it before
    `import tfx`. Modules already imported or not installed are left alone (finding a
    module imports its parent packages: only modules under light parents are listed)."""
    for name in DEFERRED_MODULES:
        if name in sys.modules or importlib.util.find_spec(name) is None:
            continue
        stand_in = _DeferredModule(name)
        stand_in.__spec__ = None
        sys.modules[name] = stand_in
