"""What every `mlops` command shares: `--config/--set`, declared once, and their loading.

A command decorated with `@with_config` gains `--config/-c FILE` and `--set/-s KEY=VALUE`
(repeatable) and receives them as one `ConfigSource`; it loads the profile it needs when
it needs it (serving and records commands skip the training-data checks, Kubeflow
commands load the `kubeflow` profile). A configuration mistake raises `ConfigError`,
which `cli/errors.py` prints as one line per problem with exit code 2.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path
from typing import Callable, Optional, TypeVar

import typer

from pipeline.definition.config import LOCAL, PipelineConfig, load_config, resolve_config_path
from serving.settings import ServingSettings

T = TypeVar("T")

ConfigOption = typer.Option(None, "--config", "-c", metavar="FILE",
                            help="Config file (default: $MLOPS_CONFIG or ./pipeline_config.yaml).")
SetOption = typer.Option(None, "--set", "-s", metavar="KEY=VALUE",
                         help="Override one config key for this run, "
                              "e.g. training.train_steps=200.")
VerboseOption = typer.Option(False, "--verbose", "-v",
                             help="Show TensorFlow, Beam and TFX logs.")
JsonOption = typer.Option(False, "--json", help="Print JSON, for scripts.")


@dataclasses.dataclass(frozen=True)
class ConfigSource:
    """The config a command was pointed at: a file (or the default) and its overrides."""

    file: Optional[str] = None
    overrides: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        """The config file's absolute path (the one `load` reads)."""
        return resolve_config_path(self.file).resolve()

    def load(self, *, check_files: bool = True, profile: str = LOCAL) -> PipelineConfig:
        """The validated config of `profile`.

        Args:
            check_files: also check the training data's files (a serving or Kubeflow host
                need not hold them).
            profile: `local` or `kubeflow`.

        Raises:
            ConfigError: the file is missing or a key is wrong (one line per problem).
        """
        return load_config(self.file, self.overrides, check_files=check_files,
                           profile=profile)

    def serving(self) -> ServingSettings:
        """What the serving commands need, without the training-data checks.

        Raises:
            ConfigError: as `load`.
        """
        return self.load(check_files=False).serving_settings()


def with_config(function: Callable[..., T]) -> Callable[..., T]:
    """Declares `--config/--set` on a command, handed to it as `source: ConfigSource`."""
    signature = inspect.signature(function)
    parameters = [p for name, p in signature.parameters.items() if name != "source"]
    parameters += [
        inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY,
                          default=ConfigOption, annotation=Optional[str]),
        inspect.Parameter("overrides", inspect.Parameter.KEYWORD_ONLY,
                          default=SetOption, annotation=Optional[list[str]]),
    ]

    @functools.wraps(function)
    def command(*args, config_file: Optional[str] = None,
                overrides: Optional[list[str]] = None, **kwargs) -> T:
        return function(*args, source=ConfigSource(config_file, tuple(overrides or ())),
                        **kwargs)

    command.__signature__ = signature.replace(parameters=parameters)  # what typer reads
    return command
