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
from typing import Callable, Iterable, Optional

import httpx

from serving import config_files, server_files, tls, traffic, versions
from serving.config_files import ModelConfig, ModelServerConfig
from serving.repository import aspired_versions, version_directories
from serving.settings import ServingSettings


class OperationError(Exception):
    """An operation that cannot be done as asked (the message says why and what to do)."""


@dataclasses.dataclass(frozen=True)
class VersionRow:
    """One row of `mlops versions`: a version on disk or still known to the running
    server, whether the policy serves it, and where it came from (its push manifest)."""

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
    """What `mlops versions` shows: the model's policy and versions, newest first, and the
    server that gave their states (None: states unknown)."""

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
    """The version policy in a few words (`latest 1`, `specific 3, 4`, `all`), so an operator
    sees at once whether a rollback or canary is pinning versions."""
    policy = model.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "specific":
        return "specific " + ", ".join(str(v) for v in sorted(policy.specific.versions))
    if kind == "all":
        return "all"
    return f"latest {policy.latest.num_versions or 1}"


def server_status(url: str, name: str, timeout: float = 1.0, verify=True
                  ) -> Optional[dict[int, dict]]:
    """Version -> status entry from a running server's status API, or None if none answers.

    ``verify`` is httpx's: ``server_files.rest_verify(settings)`` for an https ``url``.
    A failed TLS handshake is an OperationError saying which setting to change.

    Returns:
        Version -> the server's status entry; {} when the server does not know the model
        (404); None when nothing answers, or the answer is an error other than 404.

    Raises:
        OperationError: a server answers but the TLS handshake fails with these settings
            (an untrusted certificate, a client certificate required, a plain-HTTP port);
            the message names the `serving.tls` key to change.
    """
    try:
        response = httpx.get(f"{url}/v1/models/{name}", timeout=timeout, verify=verify)
    except httpx.HTTPError as err:
        failure = tls.client_failure(err)
        if failure:  # a server answers, but not to these TLS settings: say so
            raise OperationError(f"{url}: {failure}") from None
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
    """Every version on disk or still on the server, with policy, state, labels and push
    manifest, so an operator can see what serves before a rollback or a label.

    Args:
        settings: the serving section (its `models.config`).
        url: the REST endpoint to ask for states (default: the configured one).

    Returns:
        The listing; its `server_url` is None when no server answered.

    Raises:
        OperationError: the model is not in the models.config (`mlops serve` writes it),
            or the server refuses the TLS settings (see `server_status`).
        ServingError: INVALID_ARGUMENT when the models.config cannot be read or is not
            one tensorflow_model_server would accept.
        TlsFileError: `serving.tls.ca_cert` or the client certificate cannot be loaded.
    """
    models = server_files.read_models_config(settings)
    model = _model(models, settings.serving.model_name)
    on_disk = version_directories(model.base_path)
    aspired = aspired_versions(model, on_disk)
    url = url or server_files.rest_url(settings)
    live = server_status(url, model.name, verify=server_files.rest_verify(settings))
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
CONFIRMATIONS_PER_PROCESS = 16  # see `_held_everywhere`


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
    """Serves an older version instead of the newest one served; keeps every version on disk.

    The policy becomes `specific` (so new pushes are not served until `restore`), and
    labels on other versions are removed, since TF Serving refuses a label on a version it
    does not serve.

    Args:
        settings: the serving section (its `models.config`).
        to: the version to serve (default: the newest one older than the served one).

    Returns:
        What changed, and the version a running server should now answer with.

    Raises:
        OperationError: the model is not in the models.config, no version is on disk,
            no version is older than the served one (without `to`), or `to` is not on disk.
        ServingError: INVALID_ARGUMENT when the models.config cannot be read or is not
            one tensorflow_model_server would accept.
        OSError: the models.config cannot be written.
    """
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
    """Back to serving the newest version (policy ``latest``), as after a normal push.

    Labels on versions no longer served are removed (TF Serving would refuse them).

    Raises:
        OperationError: the model is not in the models.config.
        ServingError: INVALID_ARGUMENT when the models.config cannot be read or is not
            one tensorflow_model_server would accept.
        OSError: the models.config cannot be written.
    """
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
    """Points ``label`` at ``version``, adding the version to those served if needed.

    TF Serving refuses a label on a version it does not serve, so an unserved version is
    first added to a `specific` policy and, with `wait_until_served`, loaded by the running
    server before the label is written.

    Returns:
        One sentence saying what changed.

    Raises:
        OperationError: the model is not in the models.config, `version` is not on disk,
            or `wait_until_served` says the server did not load it (the label is not set;
            the policy change stays).
        ServingError: INVALID_ARGUMENT when the models.config cannot be read or is not
            one tensorflow_model_server would accept.
        OSError: the models.config cannot be written.
    """
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
    """Deletes ``label`` from the models.config; the version it named stays served.

    Returns:
        One sentence saying what changed.

    Raises:
        OperationError: the model is not in the models.config, or has no such label.
        ServingError: INVALID_ARGUMENT when the models.config cannot be read or is not
            one tensorflow_model_server would accept.
        OSError: the models.config cannot be written.
    """
    models, model, _ = _load_for_edit(settings)
    if label not in model.version_labels:
        raise OperationError(f"model {model.name} has no label {label!r}")
    del model.version_labels[label]
    _save(settings, models)
    return f"{model.name}: label {label!r} removed"


def waiter(url: str, name: str, timeout_s: float = 60.0, verify=True,
           processes: int = 1) -> Waiter:
    """Waits for a running server to report a version AVAILABLE (True at once if none runs).

    ``processes``: how many answer its REST port (`serving.rest_api_workers`); each loads
    a version on its own, so the version must be reported by every one (see
    `_held_everywhere`). The returned function raises OperationError as `server_status`
    does (TLS refused).
    """

    def served(version: int) -> Optional[bool]:
        status = server_status(url, name, verify=verify)
        return None if status is None else \
            status.get(version, {}).get("state") == "AVAILABLE"

    return lambda version: _held_everywhere(lambda: served(version), processes, timeout_s,
                                            0.5)


def _held_everywhere(holds: Callable[[], Optional[bool]], processes: int, timeout_s: float,
                     pause_s: float) -> bool:
    """True once ``holds()`` is true in every process of a server: on one answer with one
    process, on ``CONFIRMATIONS_PER_PROCESS`` x ``processes`` answers in a row with more
    (each status request opens a new connection, which the kernel gives any of them; the
    chance that one process was never asked is below 2^-30). ``holds()`` None: no server
    answers, True at once. False when ``timeout_s`` passes first."""
    needed = 1 if processes <= 1 else CONFIRMATIONS_PER_PROCESS * processes
    deadline, in_a_row = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        answer = holds()
        if answer is None:
            return True  # no server: it applies the change when it starts
        in_a_row = in_a_row + 1 if answer else 0
        if in_a_row >= needed:
            return True
        if not answer:
            time.sleep(pause_s)
    return False


# --- the canary split (embedded server only) -------------------------------------------------

EMBEDDED_ONLY = ("The split applies to the embedded server (`mlops serve --embedded`): "
                 "tensorflow_model_server reads no traffic_split.json and answers the bare URL "
                 "with its newest served version")


@dataclasses.dataclass(frozen=True)
class CanaryState:
    """The labels `stable` / `canary` and the split of the bare URL (None: no split)."""

    stable: Optional[int]
    canary: Optional[int]
    canary_weight: Optional[float]


def split_file(settings: ServingSettings):
    """The canary split's sidecar, `traffic_split.json` beside the models.config, where
    the embedded server looks for it."""
    return traffic.split_path(server_files.models_config_path(settings))


def canary_state(settings: ServingSettings) -> CanaryState:
    """The `stable` and `canary` labels and the split weight as the files say now, which
    every canary command starts from.

    Raises:
        OperationError: the model is not in the models.config.
        ServingError: INVALID_ARGUMENT when the models.config or traffic_split.json
            cannot be read or parsed.
    """
    models = server_files.read_models_config(settings)
    model = _model(models, settings.serving.model_name)
    split = traffic.read_splits(split_file(settings)).get(model.name)
    labels = model.version_labels
    return CanaryState(labels.get(traffic.STABLE_LABEL), labels.get(traffic.CANARY_LABEL),
                       split.canary_weight if split else None)


def _set_split(settings: ServingSettings, weight: Optional[float]) -> None:
    """Sets (a weight) or ends (None) the model's split; other models' entries are kept."""
    path = split_file(settings)
    splits = traffic.read_splits(path)
    if weight is None:
        splits.pop(settings.serving.model_name, None)
    else:
        splits[settings.serving.model_name] = traffic.Split(float(weight))
    traffic.write_splits(path, splits)


def _check_weight(weight: float) -> None:
    if not 0 <= weight <= 100:
        raise OperationError(f"--weight must be a per cent from 0 to 100, not {weight:g}")


def set_canary_weight(settings: ServingSettings, weight: Optional[float]) -> str:
    """Changes the share of the bare URL's requests that the running canary gets.

    Args:
        settings: the serving section (its `models.config` and split file).
        weight: per cent, 0 to 100.

    Returns:
        One sentence saying the new split.

    Raises:
        OperationError: no weight given, a weight outside 0-100, or no canary running
            (also: the model is not in the models.config).
        ServingError: INVALID_ARGUMENT when the models.config or traffic_split.json
            cannot be read or parsed.
        OSError: the split file cannot be written.
    """
    models, model, _ = _load_for_edit(settings)
    state = canary_state(settings)
    if weight is None:
        raise OperationError("give a VERSION to start a canary, or --weight to change "
                             "the running one")
    _check_weight(weight)
    if state.canary is None or state.canary_weight is None:
        raise OperationError(f"{model.name} has no canary to re-weight: start one with "
                             "`mlops canary VERSION`")
    _set_split(settings, weight)
    return (f"{model.name}: canary version {state.canary} now gets {weight:g} % of the "
            f"requests to the bare model URL (was {state.canary_weight:g} %), stable "
            f"version {state.stable} the rest. {EMBEDDED_ONLY}.")


def start_canary(settings: ServingSettings, version: int, weight: Optional[float] = None,
                 stable: Optional[int] = None,
                 wait_until_served: Optional[Waiter] = None) -> str:
    """Sends ``weight`` per cent of the bare URL's requests to ``version`` (label
    ``canary``), the rest to label ``stable``.

    The edits go in an order a polling server can follow at any point: the split entry
    first at weight 0 (the bare URL follows ``stable`` once it is set), then a policy
    serving both versions (and ``stable`` when already served), then, once a running
    server has loaded them, both labels, and only then the weight.

    Args:
        settings: the serving section (its `models.config` and split file).
        version: the canary, a version on disk.
        weight: per cent, 0 to 100 (default: the running canary's weight for the same
            version, else `serving.canary.weight`).
        stable: the version that keeps the rest (default: the `stable` label, else the
            version served now, else the newest one before `version`).
        wait_until_served: called for each version the policy newly serves; False stops.

    Returns:
        One sentence saying the split and what else changed.

    Raises:
        OperationError: the version or the stable one is not on disk, they are the same,
            no stable version can be found, the weight is outside 0-100, or a running
            server did not load a version (also: the model is not in the models.config).
        ServingError: INVALID_ARGUMENT when the models.config or traffic_split.json
            cannot be read or parsed.
        OSError: either file cannot be written.
    """
    models, model, on_disk = _load_for_edit(settings)
    state = canary_state(settings)
    if weight is None:
        weight = (state.canary_weight if state.canary == version and
                  state.canary_weight is not None else settings.serving.canary.weight)
    _check_weight(weight)
    if version not in on_disk:
        raise OperationError(f"version {version} is not in {model.base_path} (versions there: "
                             f"{', '.join(map(str, sorted(on_disk))) or 'none'})")
    served = aspired_versions(model, on_disk)
    stable = _stable_for(version, stable, state, served, on_disk, model.base_path)
    if state.canary_weight is None:
        _set_split(settings, 0)
    notes = []
    needed = {stable, version}
    if not needed <= served:
        model.model_version_policy.specific.Clear()
        model.model_version_policy.specific.versions.extend(sorted(served | needed))
        notes.append(f"serving versions {', '.join(map(str, sorted(served | needed)))}; new "
                     "pushes are not served until `mlops promote` / `abort` and `mlops restore`")
        if stable in served:
            model.version_labels[traffic.STABLE_LABEL] = stable
        if model.version_labels.get(traffic.CANARY_LABEL) not in served | needed:
            model.version_labels.pop(traffic.CANARY_LABEL, None)
        _save(settings, models)  # TF Serving refuses labels on versions it does not serve
        for wanted in sorted(needed - served):
            if wait_until_served is not None and not wait_until_served(wanted):
                raise OperationError(f"the server did not load version {wanted}: the canary "
                                     "was not started (see `mlops versions`)")
    model.version_labels[traffic.STABLE_LABEL] = stable
    model.version_labels[traffic.CANARY_LABEL] = version
    _save(settings, models)
    _set_split(settings, weight)
    return (f"{model.name}: canary version {version} gets {weight:g} % of the requests to the "
            f"bare model URL, stable version {stable} the rest (labels stable -> {stable}, "
            f"canary -> {version}"
            + (f"; {'; '.join(notes)}" if notes else "") + "). Requests naming a version or "
            f"a label bypass the split. {EMBEDDED_ONLY}.")


def _stable_for(version: int, stable: Optional[int], state: CanaryState, served: set[int],
                on_disk: Iterable[int], base_path: str) -> int:
    """The stable version of a canary of `version`: the one asked for, else the `stable`
    label's, else the version served now, else the newest one before `version`."""
    if stable is None:
        stable = state.stable
    if stable is None:
        older_served = [v for v in served if v != version]
        older = [v for v in on_disk if v < version]
        stable = max(older_served) if older_served else max(older) if older else None
        if stable is None:
            raise OperationError(f"no stable version to compare version {version} with: "
                                 "give --stable N")
    if stable not in on_disk:
        raise OperationError(f"stable version {stable} is not in {base_path}")
    if stable == version:
        raise OperationError(f"version {version} is the stable version: a canary must be "
                             "another one")
    return stable


VersionGone = Callable[[int], bool]  # version -> True once a running server no longer serves it


def _end_canary(settings: ServingSettings, winner: int, loser: Optional[int],
                wait_until_unloaded: Optional[VersionGone]) -> tuple[list[str], bool]:
    """Serves ``winner`` alone, labelled stable, no canary label; then ends the split once
    a running server has let ``loser`` go. Returns (labels dropped, split ended)."""
    models, model, _ = _load_for_edit(settings)
    model.model_version_policy.specific.Clear()
    model.model_version_policy.specific.versions.append(winner)
    model.version_labels[traffic.STABLE_LABEL] = winner
    model.version_labels.pop(traffic.CANARY_LABEL, None)
    dropped = _drop_labels_outside(model, {winner})
    _save(settings, models)
    # Until the server has applied that, an ended split would send the bare URL to its
    # newest version, which may be the loser: the entry (all to stable) stays until then.
    if loser is not None and wait_until_unloaded is not None and \
            not wait_until_unloaded(loser):
        _set_split(settings, 0)
        return dropped, False
    _set_split(settings, None)
    return dropped, True


def serve_alone(settings: ServingSettings, version: int) -> list[str]:
    """Serves `version` alone, labelled stable, with no split: where an automatic rollout
    starts from, so that a new push waits for the rollout instead of taking every request.

    Returns:
        The labels removed (they named versions no longer served).

    Raises:
        OperationError: the model is not in the models.config.
        ServingError: INVALID_ARGUMENT when the models.config or traffic_split.json
            cannot be read or parsed.
        OSError: either file cannot be written.
    """
    dropped, _ = _end_canary(settings, version, None, None)
    return dropped


def promote(settings: ServingSettings,
            wait_until_unloaded: Optional[VersionGone] = None) -> Change:
    """The canary becomes stable and the split ends: its version alone is served.

    Args:
        settings: the serving section (its `models.config` and split file).
        wait_until_unloaded: True once a running server no longer serves the old stable
            version; until it does, the split entry stays (all to stable), since an ended
            split would send the bare URL to the newest version.

    Returns:
        What changed, and the version now answering (the promoted canary).

    Raises:
        OperationError: there is no canary label, or the model is not in the
            models.config.
        ServingError: INVALID_ARGUMENT when the models.config or traffic_split.json
            cannot be read or parsed.
        OSError: either file cannot be written.
    """
    state = canary_state(settings)
    if state.canary is None:
        raise OperationError(f"{settings.serving.model_name} has no canary to promote "
                             "(`mlops canary VERSION` starts one)")
    old = state.stable if state.stable != state.canary else None
    dropped, ended = _end_canary(settings, state.canary, old, wait_until_unloaded)
    note = f" Labels removed: {', '.join(dropped)}." if dropped else ""
    return Change(
        f"{settings.serving.model_name}: version {state.canary} promoted: label stable -> "
        f"{state.canary}" + (f" (was {old})" if old else "") + ", label canary removed, the "
        f"split ended: every request goes to version {state.canary}. Serving version "
        f"{state.canary} only" + (f" ({old} stays on disk)" if old else "") + "; new pushes "
        "are not served until `mlops restore` or the next `mlops canary N`." + note
        + ("" if ended else _STILL_SPLIT.format(old)), state.canary)


def abort(settings: ServingSettings,
          wait_until_unloaded: Optional[VersionGone] = None) -> Change:
    """All traffic back to stable: the canary's label goes and its version is no longer
    served (it stays on disk); the split ends.

    The split is set to 0 first, so the bare URL goes to stable on the server's next poll,
    before the policy changes.

    Returns:
        What changed, and the version now answering (the stable one).

    Raises:
        OperationError: there is neither a canary label nor a split, there is no stable
            label to go back to, or the model is not in the models.config.
        ServingError: INVALID_ARGUMENT when the models.config or traffic_split.json
            cannot be read or parsed.
        OSError: either file cannot be written.
    """
    state = canary_state(settings)
    if state.canary is None and state.canary_weight is None:
        raise OperationError(f"{settings.serving.model_name} has no canary to abort")
    if state.stable is None:
        raise OperationError(f"{settings.serving.model_name} has no stable label to go back "
                             "to: `mlops label stable N` first")
    _set_split(settings, 0)  # first: the bare URL goes to stable on the server's next poll
    loser = state.canary if state.canary != state.stable else None
    dropped, ended = _end_canary(settings, state.stable, loser, wait_until_unloaded)
    note = f" Labels removed: {', '.join(dropped)}." if dropped else ""
    return Change(
        f"{settings.serving.model_name}: canary aborted: every request goes to stable version "
        f"{state.stable}" + (f"; label canary removed, version {loser} no longer served (it "
                             "stays on disk)" if loser else "")
        + "; new pushes are not served until `mlops restore`." + note
        + ("" if ended else _STILL_SPLIT.format(loser)), state.stable)


_STILL_SPLIT = (" (The server has not let version {} go yet: traffic_split.json keeps a "
                "weight of 0, all to stable, until it does; run the command again later.)")


def unload_waiter(url: str, name: str, timeout_s: float = 60.0, processes: int = 1,
                  **status_options) -> VersionGone:
    """Waits for a running server to stop serving a version (True at once if none runs):
    in every one of its ``processes``, as `waiter`.

    The returned function raises OperationError as `server_status` does (TLS refused).
    """

    def gone(version: int) -> Optional[bool]:
        status = server_status(url, name, **status_options)
        return None if status is None else \
            status.get(version, {}).get("state") != "AVAILABLE"

    return lambda version: _held_everywhere(lambda: gone(version), processes, timeout_s,
                                            0.25)
