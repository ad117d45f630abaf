"""ServingBaseline: the served version (newest, or pinned by a rollback) as the baseline."""
from __future__ import annotations

from pathlib import Path

import tensorflow as tf
from tfx.types import standard_artifacts

from components import evaluator, serving_baseline, versioned_pusher
from serving import config_files

MODEL = "taxi"


def push(saved_model: Path, serving_dir: Path, model_uri: str = "trainer/model/1") -> int:
    version, _ = versioned_pusher.publish_model(str(saved_model / "Format-Serving"),
                                                str(serving_dir),
                                                {"model_uri": model_uri})
    return version


def pin(models_config: Path, serving_dir: Path, *versions: int) -> None:
    """models.config as `mlops rollback` leaves it: a `specific` version policy."""
    config = config_files.single_model_config(MODEL, str(serving_dir))
    policy = config.model_config_list.config[0].model_version_policy
    policy.specific.versions.extend(versions)
    config_files.write_model_server_config(config, models_config)


def run_executor(serving_dir: Path, models_config: Path, out: Path):
    model = standard_artifacts.Model()
    model.uri = str(out)
    serving_baseline.Executor().Do({}, {"model": [model]}, {
        "serving_model_dir": str(serving_dir), "model_name": MODEL,
        "models_config": str(models_config), "serving_state": ""})
    return model


def test_nothing_served_means_no_baseline(tmp_path: Path):
    serving_dir, config = tmp_path / "serving" / MODEL, tmp_path / "serving" / "models.config"
    assert serving_baseline.served_version(str(serving_dir), str(config), MODEL) is None
    model = run_executor(serving_dir, config, tmp_path / "baseline")
    assert not serving_baseline.has_model(model)
    assert model.get_int_custom_property("served_version") == 0


def test_the_newest_version_is_the_baseline(saved_model: Path, tmp_path: Path):
    serving_dir, config = tmp_path / "serving" / MODEL, tmp_path / "serving" / "models.config"
    push(saved_model, serving_dir, "first")
    push(saved_model, serving_dir, "second")
    model = run_executor(serving_dir, config, tmp_path / "baseline")
    assert model.get_int_custom_property("served_version") == 2
    assert model.get_string_custom_property("served_path") == str(serving_dir / "2")
    assert serving_baseline.has_model(model)
    copied = versioned_pusher.read_manifest(str(tmp_path / "baseline" / "Format-Serving"))
    assert copied["model_uri"] == "second" and copied["version"] == 2
    loaded = tf.saved_model.load(str(tmp_path / "baseline" / "Format-Serving"))
    assert float(loaded.signatures["serving_default"](x=tf.constant([3.0]))["y"][0]) == 6.0


def test_a_rollback_pins_the_baseline_to_the_version_served(saved_model: Path, tmp_path: Path):
    """After `mlops rollback` the server serves the pinned version: a new model must be no
    worse than *that*, not than the newest folder on disk."""
    serving_dir, config = tmp_path / "serving" / MODEL, tmp_path / "serving" / "models.config"
    for _ in range(3):
        push(saved_model, serving_dir)
    pin(config, serving_dir, 1)
    assert serving_baseline.served_version(str(serving_dir), str(config), MODEL) == 1
    pin(config, serving_dir, 1, 2)  # two served: the newer one answers unversioned requests
    assert serving_baseline.served_version(str(serving_dir), str(config), MODEL) == 2
    pin(config, serving_dir, 9)  # pinned to a version no longer on disk: nothing is served
    assert serving_baseline.served_version(str(serving_dir), str(config), MODEL) is None


def test_serving_state_changes_with_a_push_or_a_rollback(saved_model: Path, tmp_path: Path):
    """The local cache key of the component: equal while the served version cannot have
    changed, different after a push or an edit of models.config."""
    serving_dir, config = tmp_path / "serving" / MODEL, tmp_path / "serving" / "models.config"
    states = [serving_baseline.serving_state(str(serving_dir), str(config))]
    push(saved_model, serving_dir)
    states.append(serving_baseline.serving_state(str(serving_dir), str(config)))
    states.append(serving_baseline.serving_state(str(serving_dir), str(config)))
    push(saved_model, serving_dir)
    pin(config, serving_dir, 1)
    states.append(serving_baseline.serving_state(str(serving_dir), str(config)))
    assert states[1] == states[2]
    assert len({states[0], states[1], states[3]}) == 3


def test_the_evaluator_recognises_the_candidate_s_own_pushed_copy(saved_model: Path,
                                                                   tmp_path: Path):
    """An unchanged re-run's candidate is the served version: comparing it with itself
    would say nothing, so the Evaluator drops that baseline."""
    serving_dir, config = tmp_path / "serving" / MODEL, tmp_path / "serving" / "models.config"
    push(saved_model, serving_dir, model_uri="pipeline_root/Trainer/model/7")
    baseline = run_executor(serving_dir, config, tmp_path / "baseline")
    candidate, other = standard_artifacts.Model(), standard_artifacts.Model()
    candidate.uri, other.uri = "pipeline_root/Trainer/model/7", "pipeline_root/Trainer/model/8"
    assert evaluator._is_candidate(baseline, candidate)  # pylint: disable=protected-access
    assert not evaluator._is_candidate(baseline, other)  # pylint: disable=protected-access
