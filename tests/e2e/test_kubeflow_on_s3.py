"""The package on an `s3://` root (MinIO, the store of a standalone Kubeflow install), both
runs on backend 2.5.0 (2.0.5's launcher cannot reach a MinIO endpoint: README, "Deploying
it"), serving from a PersistentVolumeClaim mounted into the two tasks that read or write the
served versions: the second run's ServingBaseline finds version 1 on the claim, its Pusher
adds version 2 there. See kubeflow_scenario.py."""
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
    "local_s3", "s3://", serving_on_bucket=False, backends=("2.5.0", "2.5.0"))


def test_the_pushed_version_on_the_claim_is_a_servable_saved_model(site: Site):
    """The pushes went through the mount: the claim's storage holds version 2."""
    import tensorflow as tf

    version = site.claim / "chicago-taxi" / "2"
    model = tf.saved_model.load(str(version))
    assert {"serving_default", "classify"} <= set(model.signatures)
    assert (version / "assets.extra" / "tf_serving_warmup_requests").is_file()
