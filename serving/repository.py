"""The model repository: which versions of which models are loaded, and the path to there.

It follows TF Serving's file-system source and availability-preserving manager:

- each model's ``base_path`` is polled; sub-directories named by a positive integer are
  versions, anything else is ignored;
- the version policy (``latest { num_versions }``, ``all``, ``specific``) picks the
  *aspired* versions;
- an aspired version is loaded (and warmed) while the versions already serving keep
  answering; only once an aspired version is AVAILABLE are the versions no longer aspired
  unloaded. A version that fails to load is reported in END with its error, and the
  serving version stays; it is retried when its files change (a copy that completes);
- a version that leaves the directory leaves the status list once it is unloaded.

Readers (request threads) never take the lock: every change publishes a new immutable
:class:`ModelView` per model, swapped in one assignment. A request holding a servable keeps
it alive until it finishes, so unloading never breaks an in-flight request.
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import os
import threading
from typing import Callable, Iterable, Mapping, Optional

from serving.config_files import ModelConfig, ModelServerConfig
from serving.errors import invalid_argument, not_found
from serving.versions import version_number

log = logging.getLogger("serving.repository")


class State(enum.IntEnum):
    """ModelVersionStatus.State of TF Serving's status API (the numbers are the proto's)."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One version's entry in the status API: its state and, after a failed load, the
    canonical code and first line of the error."""

    version: int
    state: State
    error_code: str = "OK"
    error_message: str = ""


@dataclasses.dataclass(frozen=True)
class ModelView:
    """What a request sees of one model: loaded servables, effective labels, statuses."""

    name: str
    servables: Mapping[int, object]
    labels: Mapping[str, int]
    statuses: tuple[VersionStatus, ...]  # newest version first

    @property
    def latest(self) -> Optional[object]:
        """The newest loaded servable, which a request naming no version gets; None if none."""
        return self.servables[max(self.servables)] if self.servables else None


Loader = Callable[[str, int, str], object]  # (model name, version, path) -> servable


def version_directories(base_path: str) -> dict[int, str]:
    """Positive-integer sub-directories of ``base_path``; other names are not versions."""
    try:
        entries = list(os.scandir(base_path))
    except OSError:
        return {}
    found = {}
    for entry in entries:
        number = version_number(entry.name)
        if number is not None and entry.is_dir():
            found[number] = entry.path
    return found


def aspired_versions(config: ModelConfig, available_on_disk: Iterable[int]) -> set[int]:
    """The versions the policy asks to serve among those on disk (TF Serving's rules:
    `latest` N newest, default 1; `all`; `specific` ones that exist)."""
    on_disk = sorted(available_on_disk, reverse=True)
    policy = config.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return set(on_disk)
    if kind == "specific":
        return set(policy.specific.versions) & set(on_disk)
    count = policy.latest.num_versions if kind == "latest" and policy.latest.num_versions else 1
    return set(on_disk[:count])


def _first_line(error: BaseException) -> str:
    text = (getattr(error, "message", None) or str(error)).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _fingerprint(path: str) -> tuple:
    """Names, sizes and times of a version's files: a failed load is retried when it changes."""
    found = []
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:
                continue
            found.append((os.path.relpath(os.path.join(root, name), path), stat.st_size,
                          stat.st_mtime_ns))
    return tuple(sorted(found))


@dataclasses.dataclass
class _Version:
    status: VersionStatus
    path: str
    servable: Optional[object] = None
    failed_fingerprint: Optional[tuple] = None


class _Model:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, _Version] = {}
        self.label_warnings: set[tuple[str, int]] = set()


class ModelRepository:
    """Loads and unloads versions to follow the directories and the models.config."""

    def __init__(self, loader: Loader, on_loaded: Optional[Callable[[], None]] = None,
                 on_unload: Optional[Callable[[], None]] = None) -> None:
        self._loader = loader
        self._on_loaded = on_loaded
        self._on_unload = on_unload
        self._lock = threading.RLock()  # writers only: the poller and config reloads
        self._models: dict[str, _Model] = {}
        self._views: dict[str, ModelView] = {}
        self._listing_marks: dict[str, Optional[frozenset]] = {}

    # --- configuration -----------------------------------------------------------------

    def apply_config(self, config: ModelServerConfig) -> None:
        """Sets the models to serve; versions follow on the next :meth:`poll`."""
        with self._lock:
            wanted = {model.name: model for model in config.model_config_list.config}
            for name in list(self._models):
                if name not in wanted:
                    self._unload_all(name)
                    del self._models[name]
            for name, model_config in wanted.items():
                if name in self._models:
                    self._models[name].config = model_config
                else:
                    self._models[name] = _Model(model_config)
            self._publish()

    # --- polling -------------------------------------------------------------------------

    def poll(self) -> None:
        """One pass of the file-system source over every model (the poller's loop body)."""
        with self._lock:
            self._listing_marks = self._current_listing_marks()
            for name in list(self._models):
                self._poll_model(name)
            self._publish(warn_about_labels=True)

    def listings_changed(self) -> bool:
        """Whether a base path's listing changed since the last :meth:`poll` began.

        One directory listing per model (names only): a version renamed into or removed
        from a base path shows. Cheap enough to ask many times per poll interval, so a
        push is noticed at once instead of up to an interval later.
        """
        with self._lock:
            return self._current_listing_marks() != self._listing_marks

    def _current_listing_marks(self) -> dict[str, Optional[frozenset]]:
        marks: dict[str, Optional[frozenset]] = {}
        for name, model in self._models.items():
            try:
                marks[name] = frozenset(os.listdir(model.config.base_path))
            except OSError:
                marks[name] = None
        return marks

    def _poll_model(self, name: str) -> None:
        model = self._models[name]
        on_disk = version_directories(model.config.base_path)
        aspired = aspired_versions(model.config, on_disk)
        if not on_disk and not model.versions:
            log.warning("No versions of servable %s found under base path %s", name,
                        model.config.base_path)
        for version in sorted(aspired, reverse=True):
            current = model.versions.get(version)
            if current is None or self._should_retry(current, on_disk[version]):
                self._load(name, version, on_disk[version])
        serving_aspired = any(model.versions[v].servable is not None
                              for v in aspired if v in model.versions)
        for version, entry in list(model.versions.items()):
            if entry.servable is not None and version not in aspired and (
                    serving_aspired or not aspired):
                self._unload(name, version)
            if version not in on_disk and entry.servable is None:
                del model.versions[version]  # left the directory: leaves the status list
                self._publish()

    @staticmethod
    def _should_retry(entry: _Version, path: str) -> bool:
        if entry.status.state != State.END:
            return False
        if entry.failed_fingerprint is None:
            return True  # unloaded earlier by policy, aspired again (e.g. a restore)
        return _fingerprint(path) != entry.failed_fingerprint

    def _set(self, name: str, version: int, path: str, state: State, **fields) -> _Version:
        model = self._models[name]
        entry = model.versions.get(version) or _Version(VersionStatus(version, state), path)
        entry.status = VersionStatus(version, state, fields.pop("error_code", "OK"),
                                     fields.pop("error_message", ""))
        entry.path = path
        for key, value in fields.items():
            setattr(entry, key, value)
        model.versions[version] = entry
        self._publish()
        return entry

    def _load(self, name: str, version: int, path: str) -> None:
        log.info("Loading servable version {name: %s version: %d}", name, version)
        self._set(name, version, path, State.LOADING, servable=None, failed_fingerprint=None)
        fingerprint = _fingerprint(path)
        try:
            servable = self._loader(name, version, path)
        except Exception as err:  # any load failure is reported; serving goes on
            from serving.servable import load_error_code

            message = _first_line(err)
            log.error("Loading servable version {name: %s version: %d} failed: %s", name,
                      version, message)
            self._set(name, version, path, State.END, error_code=load_error_code(err),
                      error_message=message, servable=None, failed_fingerprint=fingerprint)
            return
        self._set(name, version, path, State.AVAILABLE, servable=servable)
        log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
        if self._on_loaded:
            self._on_loaded()

    def _unload(self, name: str, version: int) -> None:
        entry = self._models[name].versions[version]
        self._set(name, version, entry.path, State.UNLOADING, servable=entry.servable)
        self._set(name, version, entry.path, State.END, servable=None)
        log.info("Unloaded servable version {name: %s version: %d}", name, version)
        if self._on_unload:
            self._on_unload()

    def _unload_all(self, name: str) -> None:
        for version, entry in list(self._models[name].versions.items()):
            if entry.servable is not None:
                self._unload(name, version)

    # --- views -----------------------------------------------------------------------------

    def _publish(self, warn_about_labels: bool = False) -> None:
        """Swaps in new views; labels on versions not (yet) available are left out, and
        reported once a poll has finished loading what it could."""
        views = {}
        for name, model in self._models.items():
            servables = {v: e.servable for v, e in model.versions.items()
                         if e.servable is not None}
            labels = {}
            for label, version in model.config.version_labels.items():
                if version in servables:
                    labels[label] = version
                elif warn_about_labels and (label, version) not in model.label_warnings:
                    model.label_warnings.add((label, version))
                    log.warning("Label %r of model %s points to version %d, which is not "
                                "available: the label is not served until it is", label,
                                name, version)
            statuses = tuple(model.versions[v].status
                             for v in sorted(model.versions, reverse=True))
            views[name] = ModelView(name, servables, labels, statuses)
        self._views = views

    def view(self, name: str) -> Optional[ModelView]:
        """The current snapshot of one model (None if not configured); lock-free."""
        return self._views.get(name)

    def views(self) -> dict[str, ModelView]:
        """Every model's current snapshot (the metrics' version states); lock-free."""
        return dict(self._views)

    def resolve(self, name: str, version: Optional[int] = None,
                label: Optional[str] = None):
        """The servable a request names, with TF Serving's errors when there is none.

        Raises:
            ServingError: INVALID_ARGUMENT for both a version and a label, or a label not
                on a loaded version; NOT_FOUND when the model has no loaded version
                (neither given), or the version asked for is not loaded.
        """
        if version is not None and label:
            raise invalid_argument(f"Both model version ({version}) and model version label "
                                   f"({label}) cannot be supplied.")
        view = self._views.get(name)
        if label:
            if view is None or label not in view.labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = view.labels[label]
        if version is None:
            servable = view.latest if view else None
            if servable is None:
                raise not_found(f"Servable not found for request: Latest({name})")
            return servable
        servable = view.servables.get(version) if view else None
        if servable is None:
            raise not_found(f"Servable not found for request: Specific({name}, {version})")
        return servable

    def status(self, name: str, version: Optional[int] = None,
               label: Optional[str] = None) -> tuple[VersionStatus, ...]:
        """Version states of a model, newest first, as the status API reports them.

        Raises:
            ServingError: INVALID_ARGUMENT for a label not on a loaded version; NOT_FOUND
                for a version the model does not know, or a model with no versions.
        """
        view = self._views.get(name)
        if label:
            if view is None or label not in view.labels:
                raise invalid_argument(f"Unrecognized servable version label: {label}")
            version = view.labels[label]
        if version is not None:
            found = [s for s in (view.statuses if view else ()) if s.version == version]
            if not found:
                raise not_found(f"Could not find version {version} of model {name}")
            return tuple(found)
        if view is None or not view.statuses:
            raise not_found(f"Could not find any versions of model {name}")
        return view.statuses

