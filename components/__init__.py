"""The pipeline's own components and executors, each a part `pipeline/definition/builder.py`
wires in, testable against the stock TFX executor it replaces or extends.

Ingestion (`span_window`, `csv_columns`, `split_writer`), statistics and transform read
in-process (`statistics`, `transform`, `example_batches`, `parallelism`), the data gate
(`data_gate`, `curated_schema`), evaluation (`serving_baseline`, `evaluator`,
`batched_evaluation`, `batched_metrics`, `batch_slicing`, `evaluation_output`), the push
(`versioned_pusher`) and Beam's runner choice (`beam_runner`).

May import `models/` and `serving/` (the version layout, `models.config`); never
`pipeline/` (tests/test_boundaries.py).
"""
