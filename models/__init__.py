"""The model, free of orchestration: features by kind, preprocessing, the Keras model and
its serving signatures.

`features.py` declares the features by kind in one place; `preprocessing.py` is the
tf.Transform `preprocessing_fn`; `model.py` builds and trains the Keras model (TFX's
Trainer calls its `run_fn`); `signatures.py` exports TF Serving's signatures. Runs inside
TFX's Transform and Trainer and outside them alike; imports nothing of `pipeline/`,
`components/`, `serving/` or TFX (tests/test_boundaries.py).
"""
