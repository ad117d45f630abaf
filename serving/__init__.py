"""Serving the pushed versions, with TensorFlow Serving's contract and flags.

The embedded server (`python -m serving`, for laptops and tests where
`tensorflow_model_server` cannot be installed) is a model repository
(`repository.py`: versions, policies, labels, hot swaps; `servable.py`: one loaded
SavedModel; `warmup.py`), one data plane (`dataplane.py`: every API once, with batching,
the canary split, metrics and the request log) and the protocol adapters over it
(`protocol/`: REST and gRPC), assembled by `server.py` from `tensorflow_model_server`'s
flags (`flags.py`, `options.py`, `config_files.py`, `tls.py`); `workers.py` runs more
processes on its REST port (`--rest_api_workers`). Errors map to HTTP and gRPC
codes in one place (`errors.py`). `rollout/` rolls each push out as a canary that live
checks promote or abort; `labels.py` takes the labels that arrive later.

The operator side works with either server: `operations.py` (versions, rollback, labels,
canary) edits TF Serving's own `models.config`, `server_files.py` writes the files a
server reads, `deployment.py` the docker compose and Kubernetes files of the real one,
`client.py` is `mlops predict`'s REST client, `settings.py` the config's `serving:`
section. `versions.py` is the on-disk layout every writer and reader shares.

Imports nothing of `pipeline/`, `components/`, `models/` or TFX (tests/test_boundaries.py):
it can be shipped and read without them.
"""
