"""The pipeline image: what the Dockerfile puts where the compiled package expects it.

No Docker engine runs on these machines, so the image is not built here: these tests hold
the Dockerfile to the package's assumptions (the project at `kubeflow.project_dir`, the
entrypoint module importable, the lock installed) and `mlops kfp image` to the docker
commands it runs.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from pipeline.definition.config import KubeflowSection, load_config
from tests.conftest import MLOPS, REPO, write_config

DOCKERFILE = (REPO / "Dockerfile").read_text()
PACKAGES = ("pipeline", "components", "models", "serving")


def test_the_project_lands_where_the_package_looks_for_it():
    default = re.search(r"^ARG PROJECT_DIR=(\S+)$", DOCKERFILE, re.M).group(1)
    assert default == KubeflowSection().project_dir == load_config(
        REPO / "pipeline_config.yaml", profile="kubeflow").kubeflow.project_dir
    assert "WORKDIR ${PROJECT_DIR}" in DOCKERFILE
    assert "ENV PYTHONPATH=${PROJECT_DIR}" in DOCKERFILE


def test_the_code_the_tasks_import_and_the_lock_are_copied_in():
    copied = re.findall(r"^COPY (\S+) ", DOCKERFILE, re.M)
    assert {"requirements.lock", "setup.py", *PACKAGES} <= set(copied)
    assert "-r requirements.lock" in DOCKERFILE
    assert re.search(r"^FROM \$\{TFX_IMAGE\}$", DOCKERFILE, re.M)
    assert "ARG TFX_IMAGE=tensorflow/tfx:1.16.0" in DOCKERFILE


def test_the_build_context_holds_only_what_the_image_needs():
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert rules[0] == "*"  # everything out (.venv, data, build, serving_models, .git) ...
    for path in ("requirements.lock", "setup.py", *(f"{p}/" for p in PACKAGES)):
        assert f"!{path}" in rules  # ... but what the Dockerfile copies


def fake_docker(folder: Path, exit_code: int = 0) -> dict[str, str]:
    """A `docker` client on PATH that records its arguments (no engine runs here)."""
    script = folder / "docker"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {folder / 'calls'}\nexit {exit_code}\n")
    script.chmod(0o755)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


def test_mlops_kfp_image_builds_and_pushes_the_configured_tag(tmp_path: Path):
    config = write_config(tmp_path, {"kubeflow.image": "registry.example/mlops:7",
                                     "kubeflow.project_dir": "/srv/mlops"})
    env = fake_docker(tmp_path)
    done = subprocess.run([MLOPS, "kfp", "image", "--push", "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls == [f"build --build-arg PROJECT_DIR=/srv/mlops --tag registry.example/mlops:7 "
                     f"{REPO}", "push registry.example/mlops:7"]
    assert done.stdout.splitlines()[-1] == "Built registry.example/mlops:7 and pushed it"


def test_a_failed_build_is_one_line_and_pushes_nothing(tmp_path: Path):
    config = write_config(tmp_path)
    env = fake_docker(tmp_path, exit_code=1)
    done = subprocess.run([MLOPS, "kfp", "image", "--push", "--config", str(config)],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr == "error: `docker build` failed (exit 1); see its output above\n"
    assert len((tmp_path / "calls").read_text().splitlines()) == 1


def test_without_docker_it_says_where_to_build(tmp_path: Path):
    config = write_config(tmp_path)
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run([MLOPS, "kfp", "image", "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.startswith("error: `docker` is not on PATH")
