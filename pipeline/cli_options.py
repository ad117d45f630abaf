"""What every `mlops` command group shares: the config options and loading the config.

`pipeline/cli.py` (the top-level verbs) and `pipeline/kubeflow/commands.py` (`mlops kfp`)
both take `--config/-c` and `--set/-s` and turn a configuration mistake into one message
per problem and exit code 2. Kept apart from `pipeline/cli.py` so that a command group
can import it without importing the module that registers that group (a cycle).
"""
from __future__ import annotations

from typing import Optional

import typer

from pipeline.config import LOCAL, ConfigError, PipelineConfig, load_config

ConfigOption = typer.Option(None, "--config", "-c", metavar="FILE",
                            help="Config file (default: $MLOPS_CONFIG or ./pipeline_config.yaml).")
SetOption = typer.Option(None, "--set", "-s", metavar="KEY=VALUE",
                         help="Override one config key for this run, e.g. training.train_steps=200.")


def load(config_file: Optional[str], overrides: Optional[list[str]],
         check_files: bool = True, profile: str = LOCAL) -> PipelineConfig:
    """The validated config, or exit 2 listing its problems (serving and Kubeflow commands
    skip the training-data checks: the data need not be on this machine)."""
    try:
        return load_config(config_file, overrides or (), check_files=check_files,
                           profile=profile)
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)  # unwrapped: one problem per line
        raise typer.Exit(2)
