"""Local entry point, also the file the TFX CLI runs.

    tfx pipeline create --engine local --pipeline_path pipeline/local_runner.py
    tfx run create --engine local --pipeline_name chicago-taxi

The config file is $MLOPS_CONFIG, else pipeline_config.yaml beside this folder; `mlops run`
does the same with a progress display and a summary.
"""
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    os.environ.setdefault("MLOPS_CONFIG", str(Path(__file__).resolve().parents[1]
                                              / "pipeline_config.yaml"))
    sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not pipeline/
    from pipeline.local.run import main_for_tfx_cli

    sys.exit(main_for_tfx_cli())
