"""The TFX pipeline and everything that operates it, one room per job.

- `definition/`: what the pipeline is: the validated config (`config.py`, the one source
  every runner reads), the one function that wires the TFX components (`builder.py`), and
  the facts they check (data files, schema file, Beam options, code fingerprints).
- `local/`: running it on this machine (LocalDagRunner, ML Metadata in SQLite): the run
  and its report, the re-run guard, the progress display, Beam tuning for one machine.
  `local_runner.py`, beside this file, is the file the TFX CLI runs.
- `kubeflow/`: the same pipeline compiled for open-source Kubeflow Pipelines 2.x, the
  pods' entrypoint, the KFP API client, and the emulated backend (`mlops kfp run --local`).
- `records/`: what runs did, read back: each run's record, history, lineage, HTML pages.
- `feedback/`: from serving back to training: skew of served requests, labelled requests
  as the next span.
- `runtime/`: process set-up every entry point shares: quiet libraries, deferred imports,
  a console that keeps sentences whole.
- `cli/`: the `mlops` command line; nothing imports it.
- `errors.py`: the base class of the mistakes a person can fix.

May import `components/`, `models/` and `serving/`; none of them imports this package
(tests/test_boundaries.py).
"""
