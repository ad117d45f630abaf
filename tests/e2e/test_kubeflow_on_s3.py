"""The package on an `s3://` root (MinIO, the store of a standalone Kubeflow install), one
run on backend 2.5.0, serving from a PersistentVolumeClaim mounted into the two tasks that
read or write the served versions. See kubeflow_scenario.py (the second span's run is the
gs:// module's)."""
from __future__ import annotations

import pytest

from tests.e2e.kubeflow_scenario import *  # noqa: F401,F403 (the shared scenario's tests)
from tests.e2e.kubeflow_scenario import Site, fixtures

pytestmark = pytest.mark.slow

store_environment, site, package, warm, runs = fixtures(
    "local_s3", "s3://", serving_on_bucket=False, backends=("2.5.0",))


def test_the_pushed_version_on_the_claim_is_a_servable_saved_model(site: Site):
    """The push went through the mount: the claim's storage holds version 1."""
    import tensorflow as tf

    version = site.claim / "chicago-taxi" / "1"
    model = tf.saved_model.load(str(version))
    assert {"serving_default", "classify"} <= set(model.signatures)
    assert (version / "assets.extra" / "tf_serving_warmup_requests").is_file()
