"""`pipeline.beam_args` checked by Beam's own option parser and validator, before a run.

A misspelt option is otherwise dropped with a log line ("Discarding unparseable args") and
a bad value or runner fails minutes into a run, inside the first Beam component. Beam's
parser (`PipelineOptions`), its runner registry (`create_runner`) and its validator
(`PipelineOptionsValidator`: Dataflow's project, region and GCS paths, among others) say
here what they would say then, one line per problem.

The check is offline: Beam's Dataflow validation also asks Cloud Storage about the buckets
(their soft-delete policy; a default staging bucket it would create), which a config check
must not do, so those two calls are stood in for while it runs.
"""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Iterator

_OPTIONS_LOGGER = "apache_beam.options.pipeline_options"
DEFAULT_RUNNER = "DirectRunner"


class _Discarded(logging.Handler):
    """Collects the options Beam's parser discards (it only logs them)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "unparseable" in record.getMessage():
            self.messages.append(record.getMessage())


@contextlib.contextmanager
def _discarded_options() -> Iterator[_Discarded]:
    logger = logging.getLogger(_OPTIONS_LOGGER)
    handler = _Discarded()
    saved = logger.level, logger.propagate
    # heard even where the libraries' logs are quieted, and not shown: it is reported
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


@contextlib.contextmanager
def _offline_cloud_checks() -> Iterator[None]:
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    offline = {"_warn_if_soft_delete_policy_enabled": lambda self, arg_name: None,
               "_create_default_gcs_bucket": lambda self: None}
    saved = {name: getattr(GoogleCloudOptions, name) for name in offline}
    for name, stand_in in offline.items():
        setattr(GoogleCloudOptions, name, stand_in)
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(GoogleCloudOptions, name, original)


def problems(beam_args: list[str]) -> list[str]:
    """What Beam refuses in `beam_args`: unknown options, bad values, an unknown runner,
    options the chosen runner requires. Empty when Beam accepts them."""
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
    from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
    from apache_beam.runners import runner as beam_runner

    errors = io.StringIO()
    try:
        with _discarded_options() as discarded, contextlib.redirect_stderr(errors):
            options = PipelineOptions(flags=list(beam_args))
            options.get_all_options(retain_unknown_options=False)
    except SystemExit:  # argparse's way of refusing a value
        message = errors.getvalue().strip().splitlines()[-1]
        return [message.split("error: ", 1)[-1]]
    found = [f"unknown option(s), not used by Beam: {m.split(': ', 1)[-1]}"
             for m in discarded.messages]
    runner_name = options.view_as(StandardOptions).runner or DEFAULT_RUNNER
    try:
        runner = beam_runner.create_runner(runner_name)
    except ValueError as err:
        return [*found, str(err).split(". Valid values")[0]]
    with _offline_cloud_checks():
        found += PipelineOptionsValidator(options, runner).validate()
    return found
