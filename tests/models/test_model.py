"""The Keras network and the training loop, on synthetic data with a learnable rule."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from models import features, model

TRAINING = {"hidden_units": [16], "embedding_dim": 4, "learning_rate": 0.01}


def spec(task, **label):
    return features.FeatureSpec(numeric=("x",), categorical=("c",), bucketized={"b": 3},
                                label=features.LabelSpec("y", task, **label))


def batch(size: int, rng: np.random.Generator):
    x = rng.normal(size=(size, 1)).astype("float32")
    c = rng.integers(0, 4, size=(size, 1))
    b = rng.integers(0, 4, size=(size, 1))
    return {"x_xf": x, "c_xf": c, "b_xf": b}, x, c


@pytest.mark.parametrize("task,classes,width", [(features.BINARY, None, 1),
                                                (features.MULTICLASS, 3, 3),
                                                (features.REGRESSION, None, 1)])
def test_output_width_by_task(task, classes, width):
    network = model.build_keras_model(spec(task, positive_above=0.0) if task == features.BINARY
                                      else spec(task), TRAINING, {"c": 4}, classes)
    inputs, _, _ = batch(5, np.random.default_rng(0))
    assert network(inputs).shape == (5, width)
    assert sorted(network.input_names) == ["b_xf", "c_xf", "x_xf"]


def test_multiclass_needs_classes():
    with pytest.raises(ValueError, match="needs >= 2 classes"):
        model.build_keras_model(spec(features.MULTICLASS), TRAINING, {"c": 4}, 1)


def test_training_learns_a_binary_rule():
    rng = np.random.default_rng(1)
    inputs, x, c = batch(2000, rng)
    labels = ((x[:, 0] > 0) ^ (c[:, 0] == 2)).astype("int64").reshape(-1, 1)
    data = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(64).repeat()
    binary = spec(features.BINARY, positive_above=0.0)
    network = model.build_keras_model(binary, TRAINING, {"c": 4})
    results = model.train(network, binary, data, data, train_steps=300, eval_steps=20,
                          learning_rate=0.01)
    assert results["eval_binary_accuracy"] > 0.9
    assert results["eval_loss"] < 0.3


def test_training_batches_cover_every_example_each_epoch_in_a_new_order(tmp_path):
    ids = np.arange(100, dtype="int64").reshape(-1, 1)
    transformed = tf.data.Dataset.from_tensor_slices(({"id": ids}, ids % 2)).batch(30)
    cache_file = str(tmp_path / "train")
    batches = model.training_batches(transformed, cache_file, batch_size=10)
    epochs = [[], [], []]
    for i, (features_batch, labels) in enumerate(batches.take(30)):
        assert features_batch["id"].shape == (10, 1)
        assert (labels.numpy() == features_batch["id"].numpy() % 2).all()  # rows stay whole
        epochs[i // 10].extend(features_batch["id"].numpy().ravel().tolist())
    for epoch in epochs:
        assert sorted(epoch) == list(range(100))
    assert epochs[0] != epochs[1] != epochs[2]
    assert list(tmp_path.glob("train*"))  # transformed once, then read from the cache file
