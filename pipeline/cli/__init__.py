"""The `mlops` command line: parse, load the config, call the room that does the work, and
print for people.

No command holds logic another caller would need (that lives in `definition/`, `local/`,
`records/`, `feedback/`, `kubeflow/` or `serving/`). `--config/--set` are declared once
(`options.py`) and expected failures are reported once (`errors.py`). May import every
room of `pipeline/` and `serving/`'s operator side (operations, client, settings); what a
command needs from TensorFlow, TFX or kfp it imports when it runs, so `mlops --help`
stays quick.
"""
