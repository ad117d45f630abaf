"""Deferred imports: what Beam binds at start-up does not run until it is read, and then it
is the real module. Each check is a new interpreter, where nothing was imported before."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO

DEFERRED_THEN_READ = """
import sys
from pipeline.runtime import lazy_imports

lazy_imports.defer_unused_modules()
lazy_imports.defer_unused_modules()  # a second call changes nothing
assert sum(isinstance(f, lazy_imports._DeferringFinder) for f in sys.meta_path) == 1

from apache_beam.io.gcp import bigquery_tools  # binds `google.cloud.bigquery`

ran = "google.cloud.bigquery.client" in sys.modules  # imported by the package's code
print("ran at import:", ran)
client = bigquery_tools.gcp_bigquery.Client  # the first read runs it
print("read:", client.__module__)
print("ran after the read:", "google.cloud.bigquery.client" in sys.modules)
"""


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_deferred_module_runs_on_its_first_read_and_is_the_real_one():
    """Without the deferral the first line says True (Beam's import runs the client)."""
    assert run_python(DEFERRED_THEN_READ).splitlines() == [
        "ran at import: False",
        "read: google.cloud.bigquery.client",
        "ran after the read: True"]

