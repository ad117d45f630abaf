"""Running the pipeline on this machine: TFX's LocalDagRunner with ML Metadata in SQLite.

`run.py` runs it and collects the run's report (shared by `mlops run` and the TFX CLI's
`pipeline/local_runner.py`); `rerun_guard.py` answers an unchanged re-run without
starting TFX; `progress.py` shows the running component (Beam's in-process tuning is
`runtime/beam_tuning.py`, shared with the Kubeflow tasks). Reads `definition/`, writes
`records/`.
"""
