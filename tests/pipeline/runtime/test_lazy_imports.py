"""Deferred imports: what Beam binds at start-up does not run until one of its names is read
(not even when Beam's pickler reads every module's `__dict__`), and then it is the real
module. The check is a new interpreter, where nothing was imported before."""
from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import REPO

DEFERRED_THEN_READ = """
import sys
from pipeline.runtime import lazy_imports

lazy_imports.defer_unused_modules()
stand_in = sys.modules["google.cloud.bigquery"]
lazy_imports.defer_unused_modules()  # a second call changes nothing
assert sys.modules["google.cloud.bigquery"] is stand_in

from apache_beam.io.gcp import bigquery_tools  # binds `google.cloud.bigquery`
from apache_beam.internal import pickler

pickler.dumps({"a": 1})  # Beam's pickler reads every module's __dict__ on its first dict
ran = "google.cloud.bigquery.client" in sys.modules  # imported by the package's code
print("ran at import and pickling:", ran)
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
        "ran at import and pickling: False",
        "read: google.cloud.bigquery.client",
        "ran after the read: True"]
