"""The package on a `gs://` root (GKE's store), runs on backend 2.0.5 then 2.5.0, serving
from the bucket: the Pusher's copy is read back through TensorFlow's GCS filesystem, the
way `tensorflow_model_server` reads a `gs://` model base path. See kubeflow_scenario.py."""
from __future__ import annotations

import pytest

from tests.e2e.kubeflow_scenario import *  # noqa: F401,F403 (the shared scenario's tests)
from tests.e2e.kubeflow_scenario import (  # noqa: F401 (the second run's test)
    Site,
    fixtures,
    test_a_new_span_is_trained_on_compared_with_the_served_version_and_pushed,
)

pytestmark = pytest.mark.slow

store_environment, site, package, warm, runs = fixtures(
    "local_gcs", "gs://", serving_on_bucket=True, backends=("2.0.5", "2.5.0"))


def test_the_pushed_version_on_the_bucket_is_a_servable_saved_model(site: Site):
    import tensorflow as tf

    version = f"{site.serving}/chicago-taxi/2"
    model = tf.saved_model.load(version)
    assert {"serving_default", "classify"} <= set(model.signatures)
    assert tf.io.gfile.exists(f"{version}/assets.extra/tf_serving_warmup_requests")
