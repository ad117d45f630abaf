"""Fixtures the component tests share."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory) -> Path:
    """A real (tiny) SavedModel laid out as the Trainer writes it: `<uri>/Format-Serving`,
    whose `serving_default` answers `y = 2x`."""
    import tensorflow as tf

    model_root = tmp_path_factory.mktemp("model")
    module = tf.Module()
    module.scale = tf.Variable(2.0)
    module.serve = tf.function(lambda x: {"y": x * module.scale},
                               input_signature=[tf.TensorSpec([None], tf.float32)])
    export_dir = model_root / "Format-Serving"
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return model_root
