"""What the benchmarks share: the bundled taxi sample as one span, a workspace for this
pipeline around it, and a timed command that stops the bench when it fails."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TRAIN_STEPS, EVAL_STEPS = 1000, 150


def taxi_sample() -> Path:
    import importlib.util

    tfx_dir = Path(importlib.util.find_spec("tfx").origin).parent
    return tfx_dir / "examples/chicago_taxi_pipeline/data/simple/data.csv"


def timed(command: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    started = time.monotonic()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})
    seconds = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"bench: {' '.join(command)} failed ({result.returncode}):\n"
                 f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return seconds, result.stdout


def beam_args(config, threads: str) -> list[str]:
    """The pipeline's own Beam options (``pipeline.definition.builder``), with
    ``--in_process_threads`` set to ``threads`` for the bench."""
    from pipeline.definition import builder

    return [arg for arg in builder.beam_pipeline_args(config)
            if not arg.startswith("--in_process_threads")] + [f"--in_process_threads={threads}"]


def prepare_ours(workspace: Path, changes: Optional[dict[str, Any]] = None) -> Path:
    """A config for this pipeline on the full sample in `workspace`; `changes` are laid
    over the repo's config, section by section (e.g. a profile)."""
    data = workspace / "data" / "span-1"
    data.mkdir(parents=True)
    shutil.copy(taxi_sample(), data / "trips.csv")
    raw = yaml.safe_load((REPO / "pipeline_config.yaml").read_text())
    raw["pipeline"].update(root=str(workspace / "build/pipeline_root"),
                           metadata_path=str(workspace / "build/metadata.sqlite"))
    raw["data"]["input_base"] = str(workspace / "data")
    raw["serving"]["base_directory"] = str(workspace / "serving_models")
    raw["training"].update(train_steps=TRAIN_STEPS, eval_steps=EVAL_STEPS)
    raw.update(changes or {})
    config = workspace / "pipeline_config.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config


def run_ours(config: Path, *extra: str) -> tuple[float, str]:
    return timed([str(BIN / "mlops"), "run", "--config", str(config), *extra], cwd=REPO)


