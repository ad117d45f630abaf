"""The repository's version logic with a stand-in loader: policies, availability-preserving
swaps, failed loads, retries, labels, config changes. Real directories, no TensorFlow; the
real SavedModel loader is exercised by the server tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from serving.config_files import ModelServerConfig, single_model_config
from serving.errors import Code, ServingError
from serving.repository import ModelRepository, State

NAME = "m"


class Loaded:
    def __init__(self, version: int, path: str) -> None:
        self.version, self.path = version, path


class Loader:
    """Loads a version unless its directory holds a file named BROKEN; records the order."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, name: str, version: int, path: str) -> Loaded:
        self.calls.append(version)
        if (Path(path) / "BROKEN").exists():
            raise ValueError(f"cannot parse {path}/saved_model.pb")
        return Loaded(version, path)


def make_versions(base: Path, *versions: int) -> None:
    for version in versions:
        (base / str(version)).mkdir(parents=True, exist_ok=True)
        (base / str(version) / "saved_model.pb").write_text("model")


def config(base: Path, policy: str = "", labels: dict[str, int] | None = None
           ) -> ModelServerConfig:
    models = single_model_config(NAME, str(base))
    model = models.model_config_list.config[0]
    if policy == "all":
        model.model_version_policy.all.SetInParent()
    elif policy.startswith("specific"):
        model.model_version_policy.specific.versions.extend(int(v) for v in policy.split()[1:])
    elif policy.startswith("latest"):
        model.model_version_policy.latest.num_versions = int(policy.split()[1])
    for label, version in (labels or {}).items():
        model.version_labels[label] = version
    return models


def states(repo: ModelRepository) -> dict[int, str]:
    return {s.version: s.state.name for s in repo.status(NAME)}


@pytest.fixture
def setup(tmp_path: Path):
    loader = Loader()
    repo = ModelRepository(loader)
    return tmp_path / NAME, loader, repo


def test_latest_policy_serves_newest_and_ignores_non_version_names(setup):
    base, loader, repo = setup
    make_versions(base, 1, 2)
    for name in ("0", "-3", "abc", ".staging-3"):
        (base / name).mkdir()
    repo.apply_config(config(base))
    repo.poll()
    assert states(repo) == {2: "AVAILABLE"}
    assert repo.resolve(NAME).version == 2
    assert [s.version for s in repo.status(NAME)] == [2]


def test_new_version_is_loaded_before_the_old_one_is_unloaded(setup):
    base, loader, repo = setup
    make_versions(base, 1)
    seen_while_loading = []

    def loading_observer(name, version, path):
        seen_while_loading.append(repo.resolve(NAME).version if version == 2 else None)
        return Loader.__call__(loader, name, version, path)

    repo = ModelRepository(loading_observer)
    repo.apply_config(config(base))
    repo.poll()
    make_versions(base, 2)
    repo.poll()
    assert seen_while_loading[-1] == 1  # version 1 answered while 2 was loading
    assert states(repo) == {2: "AVAILABLE", 1: "END"}


def test_failed_load_keeps_serving_version_and_reports_error(setup):
    base, loader, repo = setup
    make_versions(base, 1)
    repo.apply_config(config(base))
    repo.poll()
    make_versions(base, 2)
    (base / "2" / "BROKEN").write_text("")
    repo.poll()
    status = {s.version: s for s in repo.status(NAME)}
    assert status[2].state is State.END and "cannot parse" in status[2].error_message
    assert status[2].error_code == "UNKNOWN"
    assert status[1].state is State.AVAILABLE
    assert repo.resolve(NAME).version == 1
    calls = len(loader.calls)
    repo.poll()
    assert len(loader.calls) == calls, "an unchanged failed version is not reloaded every poll"
    (base / "2" / "BROKEN").unlink()  # the copy completes: files change, the load is retried
    repo.poll()
    assert states(repo) == {2: "AVAILABLE", 1: "END"}


def test_deleting_newest_rolls_back_and_deleting_all_unloads(setup):
    base, loader, repo = setup
    make_versions(base, 1, 2)
    repo.apply_config(config(base))
    repo.poll()
    (base / "2" / "saved_model.pb").unlink()
    (base / "2").rmdir()
    repo.poll()
    assert states(repo) == {1: "AVAILABLE"}  # 2 left the directory: leaves the list
    (base / "1" / "saved_model.pb").unlink()
    (base / "1").rmdir()
    repo.poll()
    with pytest.raises(ServingError) as err:
        repo.resolve(NAME)
    assert err.value.code is Code.NOT_FOUND
    assert str(err.value) == f"Servable not found for request: Latest({NAME})"


def test_all_specific_and_latest_n_policies(setup):
    base, loader, repo = setup
    make_versions(base, 1, 2, 3)
    repo.apply_config(config(base, "all"))
    repo.poll()
    assert states(repo) == {3: "AVAILABLE", 2: "AVAILABLE", 1: "AVAILABLE"}
    repo.apply_config(config(base, "specific 1"))
    repo.poll()
    assert states(repo) == {3: "END", 2: "END", 1: "AVAILABLE"}
    assert repo.resolve(NAME).version == 1
    repo.apply_config(config(base, "latest 2"))
    repo.poll()
    assert states(repo) == {3: "AVAILABLE", 2: "AVAILABLE", 1: "END"}
    assert repo.resolve(NAME, version=2).version == 2
    with pytest.raises(ServingError) as err:
        repo.resolve(NAME, version=1)
    assert err.value.code is Code.NOT_FOUND


def test_labels_resolve_only_to_available_versions(setup):
    base, loader, repo = setup
    make_versions(base, 1, 2)
    repo.apply_config(config(base, "specific 1 2", {"stable": 1, "canary": 2, "next": 9}))
    repo.poll()
    assert repo.resolve(NAME, label="stable").version == 1
    assert repo.resolve(NAME, label="canary").version == 2
    for label in ("next", "nope"):
        with pytest.raises(ServingError) as err:
            repo.resolve(NAME, label=label)
        assert err.value.code is Code.INVALID_ARGUMENT
    assert [s.version for s in repo.status(NAME, label="stable")] == [1]
    with pytest.raises(ServingError) as err:
        repo.resolve(NAME, version=1, label="stable")
    assert err.value.code is Code.INVALID_ARGUMENT


def test_removing_a_model_from_the_config_unloads_it(setup):
    base, loader, repo = setup
    make_versions(base, 1)
    repo.apply_config(config(base))
    repo.poll()
    repo.apply_config(ModelServerConfig())
    with pytest.raises(ServingError) as err:
        repo.status(NAME)
    assert err.value.code is Code.NOT_FOUND
    assert str(err.value) == f"Could not find any versions of model {NAME}"


def test_missing_base_path_is_not_an_error_until_versions_appear(setup):
    base, loader, repo = setup
    repo.apply_config(config(base))
    repo.poll()
    with pytest.raises(ServingError):
        repo.resolve(NAME)
    make_versions(base, 5)
    repo.poll()
    assert repo.resolve(NAME).version == 5


def test_listings_changed_tells_a_push_or_removal_apart_from_quiet(setup):
    base, loader, repo = setup
    make_versions(base, 1)
    repo.apply_config(config(base))
    repo.poll()
    assert not repo.listings_changed()
    (base / "1" / "variables").mkdir()  # inside a version: not a listing change
    assert not repo.listings_changed()
    staging = base / ".staging-2"
    staging.mkdir()
    assert repo.listings_changed()
    repo.poll()
    assert not repo.listings_changed()
    staging.rename(base / "2")  # the pusher's rename
    assert repo.listings_changed()
    repo.poll()
    assert states(repo) == {2: "AVAILABLE", 1: "END"} and not repo.listings_changed()
