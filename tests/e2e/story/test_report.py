"""The HTML report of real pipeline runs, read from their real artifacts, and the page in
a real browser (headless Chromium).

The story's runs (tests/e2e/story/conftest.py: span 1 pushes version 1, a refused run, two runs
stopped by data validation, span 2 compared with version 1 and pushed); the report of the
second push, written as `mlops run` writes it. The screenshot is kept as
a test artifact: under the test's tmp dir and at build/test-artifacts/report.png.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.records import html as html_report
from pipeline.records import store
from tests.conftest import REPO
from tests.e2e.story.conftest import Story

pytestmark = pytest.mark.slow

ARTIFACT = REPO / "build" / "test-artifacts" / "report.png"


@pytest.fixture(scope="module")
def reported(story: Story):
    """The story's second push (span 2, compared with version 1) and the page `mlops run`
    wrote for it."""
    report = story.runs["second_push"]
    path = Path(html_report.report_path(story.config, report.run_id))
    assert path.is_file()
    return story.config, report, path.read_text(), path


def test_the_report_of_a_real_run_has_slices_statistics_and_history(reported):
    config, report, html, _ = reported
    assert report.baseline_version == 1 and report.baseline_compared
    slices = re.search(r'<section id="slices">(.*?)</section>', html, re.S).group(1)
    assert "all rows" in slices and "payment_type = Cash" in slices
    assert "payment_type = Credit Card" in slices
    statistics = re.search(r'<section id="statistics">(.*?)</section>', html, re.S).group(1)
    for column in (*config.features.all_names(), config.label.column):
        assert f"<strong>{column}</strong>" in statistics
    assert statistics.count('<svg class="hist"') >= len(config.features.numeric)
    assert '<svg class="bars"' in statistics  # payment_type, company
    assert "missing (train)" in statistics and "missing (eval)" in statistics
    assert "every split matches the schema" in html  # the anomalies
    over_time = re.search(r'<section id="over-time">(.*?)</section>', html, re.S).group(1)
    assert "3 runs with metrics" in over_time and ">v1<" in over_time  # pushed, refused, this
    assert "served version 1" in html
    for component in ("CsvExampleGen", "Trainer", "Evaluator", "Pusher"):
        assert component in html


def test_mlops_report_rewrites_it_for_an_older_run(reported, tmp_path: Path):
    config, report, _, _ = reported
    first = min(store.load_all(config))
    record = html_report.find(config, first)
    text = Path(html_report.write(config, record, str(tmp_path / "first.html"))).read_text()
    assert "No serving model to compare with" in text and "payment_type = Cash" in text


def _chromium() -> str:
    """Debian's chromium, installed when missing (skips only where it cannot be)."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be (needs root and apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    policy = subprocess.run(["apt-cache", "policy", "chromium"], capture_output=True,
                            text=True, env=env)
    if "Candidate:" not in policy.stdout or "Candidate: (none)" in policy.stdout:
        subprocess.run(["apt-get", "update"], capture_output=True, env=env, timeout=600)
    installed = subprocess.run(["apt-get", "install", "-y", "chromium"], capture_output=True,
                               text=True, env=env, timeout=900)
    if installed.returncode != 0 or not shutil.which("chromium"):
        pytest.skip("chromium could not be installed: "
                    + (installed.stderr.strip().splitlines() or ["apt-get failed"])[-1])
    return shutil.which("chromium")


CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--hide-scrollbars")


def test_the_page_renders_in_chromium(reported, tmp_path: Path):
    _, _, _, path = reported
    browser = _chromium()
    url = path.resolve().as_uri()
    shot = tmp_path / "report.png"
    # A private profile: a headless chromium sharing one with another instance waits.
    profile = f"--user-data-dir={tmp_path / 'profile'}"
    screenshot = subprocess.run(
        [browser, *CHROMIUM_FLAGS, profile, f"--screenshot={shot}", "--window-size=1280,2000",
         "--enable-logging=stderr", "--v=0", url],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 20_000, screenshot.stderr[-2000:]
    console = [line for line in screenshot.stderr.splitlines()
               if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console  # the page logged nothing: no script error, no fetch
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACT)

    dom = subprocess.run([browser, *CHROMIUM_FLAGS, profile, "--dump-dom", url],
                         capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<section") == 7
    assert dom.count('<svg class="chart"') == 1 and "<polyline" in dom
    assert dom.count('<svg class="hist"') >= 3
    for table in ("metrics", "runs", "slices", "features", "components"):
        assert f'<table class="{table}">' in dom
