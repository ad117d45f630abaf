"""Operating what is served: list versions, roll back, restore, pin labels.

Every change is an edit of the serving directory's ``models.config`` (TF Serving's own
format), which both the real and the embedded server re-read on their config poll. Nothing
is deleted: a rollback serves an older version through a ``specific`` version policy and
``restore`` returns to ``latest``. TF Serving refuses a config whose label names a version
it is not serving, so edits keep every label on a served version, and when a running server
must first load a version before a label may point at it, the edit is made in two steps.

No TensorFlow here: these commands answer in well under a second.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Optional

import httpx

from serving.settings import ServingSettings
from serving import config_files, server_files, versions
from serving.config_files import ModelConfig, ModelServerConfig
from serving.repository import aspired_versions, version_directories



class OperationError(Exception):
    """An operation that cannot be done as asked (the message says why and what to do)."""


@dataclasses.dataclass(frozen=True)
class VersionRow:
    version: int
    on_disk: bool
    aspired: bool  # the version policy asks for it
    state: Optional[str]  # from the running server; None when no server answers
    error: str
    labels: tuple[str, ...]
    pushed_at: str
    model_uri: str


@dataclasses.dataclass(frozen=True)
class Listing:
    model_name: str
    policy: str
    rows: tuple[VersionRow, ...]
    server_url: Optional[str]  # None when no server answered


# --- reading ---------------------------------------------------------------------------

def _model(models: ModelServerConfig, name: str) -> ModelConfig:
    for model in models.model_config_list.config:
        if model.name == name:
            return model
    raise OperationError(f"model {name!r} is not in the models.config; run `mlops serve` once "
                         "to create it")


def describe_policy(model: ModelConfig) -> str:
    policy = model.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "specific":
        return "specific " + ", ".join(str(v) for v in sorted(policy.specific.versions))
    if kind == "all":
        return "all"
    return f"latest {policy.latest.num_versions or 1}"


def server_status(url: str, name: str, timeout: float = 1.0) -> Optional[dict[int, dict]]:
    """Version -> status entry from a running server's status API, or None if none answers."""
    try:
        response = httpx.get(f"{url}/v1/models/{name}", timeout=timeout)
    except httpx.HTTPError:
        return None
    if response.status_code == 404:
        return {}
    if response.status_code != 200:
        return None
    return {int(entry["version"]): entry for entry in response.json()["model_version_status"]}


def _manifest(version_dir: str) -> dict:
    try:
        with open(os.path.join(version_dir, versions.MANIFEST_PATH)) as handle:
            return versions.parse_manifest(handle.read()) or {}
    except OSError:
        return {}


def list_versions(settings: ServingSettings, url: Optional[str] = None) -> Listing:
    models = server_files.read_models_config(settings)
    model = _model(models, settings.serving.model_name)
    on_disk = version_directories(model.base_path)
    aspired = aspired_versions(model, on_disk)
    url = url or server_files.rest_url(settings)
    live = server_status(url, model.name)
    labels: dict[int, list[str]] = {}
    for label, version in sorted(model.version_labels.items()):
        labels.setdefault(version, []).append(label)
    rows = []
    for version in sorted(set(on_disk) | set(live or {}), reverse=True):
        entry = (live or {}).get(version, {})
        manifest = _manifest(on_disk[version]) if version in on_disk else {}
        rows.append(VersionRow(
            version, version in on_disk, version in aspired,
            entry.get("state") if live is not None else None,
            entry.get("status", {}).get("error_message", ""), tuple(labels.get(version, ())),
            manifest.get("pushed_at", ""), manifest.get("model_uri", "")))
    return Listing(model.name, describe_policy(model), tuple(rows),
                   url if live is not None else None)


# --- changing -----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Change:
    """What an edit did, and the version a running server should now answer with."""

    message: str
    version: Optional[int] = None


Waiter = Callable[[int], bool]  # version -> True once a running server serves it


def _save(settings: ServingSettings, models: ModelServerConfig) -> None:
    config_files.write_model_server_config(models, server_files.models_config_path(settings))


def _load_for_edit(settings: ServingSettings) -> tuple[ModelServerConfig, ModelConfig, dict]:
    models = server_files.read_models_config(settings)
    model = _model(models, settings.serving.model_name)
    return models, model, version_directories(model.base_path)


def _drop_labels_outside(model: ModelConfig, served: set[int]) -> list[str]:
    dropped = [label for label, version in model.version_labels.items()
               if version not in served]
    for label in dropped:
        del model.version_labels[label]
    return dropped


def rollback(settings: ServingSettings, to: Optional[int] = None) -> Change:
    """Serves an older version instead of the newest one served; keeps every version on disk."""
    models, model, on_disk = _load_for_edit(settings)
    served = aspired_versions(model, on_disk)
    if not served:
        raise OperationError(f"no version of {model.name} is on disk under {model.base_path}")
    current = max(served)
    if to is None:
        older = [v for v in on_disk if v < current]
        if not older:
            raise OperationError(f"nothing to roll back to: version {current} is the oldest "
                                 f"in {model.base_path}")
        to = max(older)
    if to not in on_disk:
        raise OperationError(f"version {to} is not in {model.base_path} (versions there: "
                             f"{', '.join(map(str, sorted(on_disk))) or 'none'})")
    model.model_version_policy.specific.Clear()
    model.model_version_policy.specific.versions.append(to)
    dropped = _drop_labels_outside(model, {to})
    _save(settings, models)
    note = f" Labels removed: {', '.join(dropped)}." if dropped else ""
    return Change(f"{model.name}: serving version {to} instead of {current} ({current} "
                  f"stays on disk). New pushes are not served until `mlops restore`.{note}", to)


def restore(settings: ServingSettings) -> Change:
    """Back to serving the newest version (policy ``latest``), as after a normal push."""
    models, model, on_disk = _load_for_edit(settings)
    model.model_version_policy.latest.num_versions = 1
    newest = max(on_disk) if on_disk else None
    dropped = _drop_labels_outside(model, {newest} if newest else set())
    _save(settings, models)
    note = f" Labels removed: {', '.join(dropped)}." if dropped else ""
    target = f"version {newest}" if newest else "the newest version once one is pushed"
    return Change(f"{model.name}: serving {target} (policy latest).{note}", newest)


def set_label(settings: ServingSettings, label: str, version: int,
              wait_until_served: Optional[Waiter] = None) -> str:
    """Points ``label`` at ``version``, adding the version to those served if needed."""
    models, model, on_disk = _load_for_edit(settings)
    if version not in on_disk:
        raise OperationError(f"version {version} is not in {model.base_path}")
    served = aspired_versions(model, on_disk)
    notes = []
    if version not in served:
        model.model_version_policy.specific.Clear()
        model.model_version_policy.specific.versions.extend(sorted(served | {version}))
        notes.append(f"now serving versions {', '.join(map(str, sorted(served | {version})))}"
                     "; new pushes are not served until `mlops restore`")
        _save(settings, models)  # first load the version: TF Serving refuses labels before
        if wait_until_served is not None and not wait_until_served(version):
            raise OperationError(f"the server did not load version {version}; the label was "
                                 "not set (see `mlops versions`)")
    model.version_labels[label] = version
    _save(settings, models)
    return f"{model.name}: label {label!r} -> version {version}" + (
        f" ({'; '.join(notes)})" if notes else "")


def remove_label(settings: ServingSettings, label: str) -> str:
    models, model, _ = _load_for_edit(settings)
    if label not in model.version_labels:
        raise OperationError(f"model {model.name} has no label {label!r}")
    del model.version_labels[label]
    _save(settings, models)
    return f"{model.name}: label {label!r} removed"


def waiter(url: str, name: str, timeout_s: float = 60.0) -> Waiter:
    """Waits for a running server to report a version AVAILABLE (True at once if none runs)."""

    def wait(version: int) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = server_status(url, name)
            if status is None:
                return True  # no server: it applies labels after its initial load
            if status.get(version, {}).get("state") == "AVAILABLE":
                return True
            time.sleep(0.5)
        return False

    return wait
