"""Process set-up shared by every entry point that is about to import TFX or TensorFlow.

`process.prepare` quiets the libraries' logs (`quiet.py`, unless verbose) and defers the
cloud clients TFX and Beam import that a run never uses (`lazy_imports.py`); `console.py`
is the console that never wraps a sentence; `filesystems.py` makes `s3://` readable by TensorFlow
(tensorflow-io) and ends such a process safely; `beam_tuning.py` removes fixed costs of
Beam's in-process runner (a local run's and a Kubeflow task's). Imports nothing of the
other rooms.
"""
