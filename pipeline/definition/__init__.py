"""What the pipeline is, for every runner alike: the config and the wiring.

`config.py` loads and validates `pipeline_config.yaml` (profiles, overrides, one line per
problem); `builder.py` is the one function that builds the TFX pipeline from it, used by
the local runner, the TFX CLI and the Kubeflow compiler. The rest are the facts they
check: `data_files` (spans and their headers), `schema_file` (a curated schema),
`beam_options` (Beam's own parser), `fingerprints` (code and data, for TFX's cache key).

Imports no runner: nothing here starts a run, talks to a server or prints.
"""
