"""Defers importing Google Cloud's Vertex AI client until something actually uses it.

`import tfx` pulls in `google.cloud.aiplatform` through its Vertex extensions (the bulk
inferrer's and the Vertex pusher's client modules); that import was almost half of TFX's
import time here (docs/performance.md), and a local run never calls it. A stand-in module
takes the place of each client module: the first attribute read imports the real one, so
code that does use Vertex is unaffected.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED_MODULES = ("tfx.extensions.google_cloud_ai_platform.training_clients",
                    "tfx.extensions.google_cloud_ai_platform.prediction_clients")


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


def defer_unused_cloud_clients() -> None:
    """Puts a stand-in for each Vertex AI client module in `sys.modules`; call it before
    `import tfx`. Modules already imported or not installed are left alone."""
    for name in DEFERRED_MODULES:
        if name in sys.modules or importlib.util.find_spec(name) is None:
            continue
        stand_in = _DeferredModule(name)
        stand_in.__spec__ = None
        sys.modules[name] = stand_in
