"""`mlops`: the project's one front door; `make` targets call it.

The verbs live beside this file, grouped by what they act on, and are merged here into one
command line (the help shows them under the same headings):

    the pipeline             run, check-config                        (cli/run.py)
    what happened            history, lineage, report                 (cli/records.py)
    serving back to training skew, span-from-requests                 (cli/feedback.py)
    serving                  serve, versions, rollback, restore, label, canary, promote,
                             abort, predict, deploy-files              (cli/serving.py)
    rollouts                 rollout status | pause | resume | webhook (cli/rollout.py)
    Kubeflow                 kfp compile | image | upload | run | schedule | unschedule | list
                                                                       (cli/kfp.py)

Exit codes: 0 success (whether or not a model was pushed), 1 the run or the action failed
(data validation, a component error, a server that refused), 2 the configuration or the
command line is wrong. Expected failures are one `error:` line (`cli/errors.py`).
"""
from __future__ import annotations

import typer

from pipeline.cli import feedback, records, run, serving
from pipeline.cli.errors import CommandGroup
from pipeline.cli.kfp import kfp_app
from pipeline.cli.rollout import rollout_app

app = typer.Typer(cls=CommandGroup, add_completion=False, no_args_is_help=True,
                  help="Operate the TFX pipeline and its model server.")
for group in (run.app, records.app, feedback.app, serving.app):
    app.add_typer(group)
app.add_typer(rollout_app, name="rollout", rich_help_panel="Serving")
app.add_typer(kfp_app, name="kfp", rich_help_panel="Kubeflow Pipelines")


def main() -> None:
    """The `mlops` console script (setup.py's entry point)."""
    app()


if __name__ == "__main__":
    main()
