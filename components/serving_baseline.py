"""ServingBaseline: the model being served, as the Evaluator's baseline, under every runner.

"No worse than production" means no worse than the version the model server is serving:
the newest integer version in the serving directory, or, after `mlops rollback`, the one
`models.config` pins. TFX's `Resolver` (latest blessed model in ML Metadata) answers a
different question, and Kubeflow's open-source backend cannot run it at all ("resolver
executors not implemented"). This component is an ordinary container task instead, so the
same node runs under LocalDagRunner and on Kubeflow.

It copies the served SavedModel into its `Model` output (`<uri>/Format-Serving`, where the
Evaluator looks), so the comparison uses exactly the served bytes and stays reproducible
after that version is deleted. With nothing served (a first run), the output holds no
model and `served_version` is 0; the Evaluator then applies only absolute thresholds.

Its answer depends on the serving directory, which no cache key sees: on Kubeflow the
compiled task is never cached, and locally `serving_state()` is a parameter, so a new push
or a rollback changes the key.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.utils import io_utils, path_utils

from components import versioned_pusher

COMPONENT_ID = "ServingBaseline"
MODEL_KEY = "model"
SERVED_VERSION_PROPERTY = "served_version"
SERVED_PATH_PROPERTY = "served_path"


def served_version(serving_model_dir: str, models_config: Optional[str],
                   model_name: str) -> Optional[int]:
    """The version the server serves: the newest the version policy admits, or None.

    Without a `models.config` (or without this model in it) TF Serving's default policy,
    the newest version, applies. Works on local paths and buckets (TFX's `fileio`).
    """
    on_disk = versioned_pusher.existing_versions(serving_model_dir)
    if not on_disk:
        return None
    policy = _version_policy(models_config, model_name)
    if policy is None:
        return on_disk[-1]
    from serving.repository import aspired_versions  # TF Serving's policy rules, one copy

    aspired = aspired_versions(policy, on_disk)
    return max(aspired) if aspired else None


def _version_policy(models_config: Optional[str], model_name: str):
    if not models_config or not fileio.exists(models_config):
        return None
    from serving import config_files

    text = io_utils.read_string_file(models_config)
    models = config_files.parse_model_server_config(text, models_config)
    for model in models.model_config_list.config:
        if model.name == model_name:
            return model
    return None


def serving_state(serving_model_dir: str, models_config: Optional[str]) -> str:
    """A digest of what decides the served version: the version folders and models.config.

    Passed as a parameter so that TFX's local cache re-runs the component when a push or a
    rollback changed what is served, and reuses it otherwise.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(versioned_pusher.existing_versions(serving_model_dir)).encode())
    if models_config and fileio.exists(models_config):
        digest.update(io_utils.read_string_file(models_config).encode())
    return digest.hexdigest()[:16]


def has_model(model: types.Artifact) -> bool:
    """Whether a baseline artifact holds a SavedModel (False on a first run)."""
    return fileio.exists(os.path.join(path_utils.serving_model_dir(model.uri),
                                      "saved_model.pb"))


class Executor(base_executor.BaseExecutor):
    """Copies the served version into the `model` output, or leaves it empty."""

    def Do(self, input_dict: dict[str, list[types.Artifact]],
           output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        del input_dict
        model = output_dict[MODEL_KEY][0]
        serving_model_dir = exec_properties["serving_model_dir"]
        version = served_version(serving_model_dir, exec_properties.get("models_config"),
                                 exec_properties["model_name"])
        model.set_int_custom_property(SERVED_VERSION_PROPERTY, version or 0)
        if version is None:
            logging.info("No version is served from %s: no baseline.", serving_model_dir)
            fileio.makedirs(model.uri)
            return
        source = os.path.join(serving_model_dir, str(version))
        io_utils.copy_dir(source, path_utils.serving_model_dir(model.uri))
        model.set_string_custom_property(SERVED_PATH_PROPERTY, source)
        logging.info("Baseline: version %s from %s.", version, source)


class ServingBaselineSpec(types.ComponentSpec):
    PARAMETERS = {
        "serving_model_dir": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
        "models_config": ExecutionParameter(type=str, optional=True),
        "serving_state": ExecutionParameter(type=str, optional=True),
    }
    INPUTS: dict[str, ChannelParameter] = {}
    OUTPUTS = {MODEL_KEY: ChannelParameter(type=standard_artifacts.Model)}


class ServingBaseline(base_component.BaseComponent):
    """Outputs the served model (or an empty `Model` when nothing is served)."""

    SPEC_CLASS = ServingBaselineSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, serving_model_dir: str, model_name: str,
                 models_config: Optional[str] = None, serving_state: str = "") -> None:
        super().__init__(ServingBaselineSpec(
            serving_model_dir=serving_model_dir, model_name=model_name,
            models_config=models_config, serving_state=serving_state,
            model=types.Channel(type=standard_artifacts.Model)))
