"""What the pipeline's runs did, written once and read back without TensorFlow.

`summary.py` is a run's report (`RunReport`: components, metrics against thresholds,
verdict, push) and its console summary; `store.py` keeps each report as JSON under
`<pipeline.root>/.mlops/runs/`; `history.py` and `lineage.py` join those records with
ML Metadata and the push manifests (`mlops history`, `mlops lineage`); `html/` writes the
run, history and skew pages. Reads `definition/` and serving's version layout.
"""
