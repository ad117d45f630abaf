"""The canary traffic split without a server: the data plane's choice per request (stand-in
models over a real repository), the sidecar file, and `mlops canary / promote / abort` on a
serving directory (stand-in version folders), read back with TF Serving's proto.

The split on a running server, under load and through the metrics, is in
``test_canary_server.py``.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pipeline.definition.config import load_config
from serving import config_files, operations, server_files, traffic
from serving.batching import Batcher
from serving.config_files import BatchingParameters, single_model_config
from serving.dataplane import DataPlane, ModelSpec
from serving.errors import ServingError
from serving.metrics import Metrics
from serving.repository import ModelRepository
from serving.traffic import Router, Split
from tests.conftest import REPO, mlops_in_process, write_config
from tests.serving.stand_ins import StandInServable

NAME = "chicago-taxi"
REQUESTS = 4000


# --- the data plane's choice ---------------------------------------------------------------

@pytest.fixture
def plane(tmp_path: Path):
    """Versions 1 and 2 of model m served (policy all), labels stable -> 1, canary -> 2;
    `batching`: through a batcher that ends the split's runs, wired as the server does."""

    def build(weight=None, labels=None, batching: bool = False) -> DataPlane:
        for version in (1, 2, 3):
            (tmp_path / "m" / str(version)).mkdir(parents=True, exist_ok=True)
        repository = ModelRepository(lambda name, version, path:
                                     StandInServable(name, version, path))
        config = single_model_config("m", str(tmp_path / "m"))
        model = config.model_config_list.config[0]
        model.model_version_policy.specific.versions.extend([1, 2])
        for label, version in (labels or {"stable": 1, "canary": 2}).items():
            model.version_labels[label] = version
        repository.apply_config(config)
        repository.poll()
        router = Router({"m": Split(weight)} if weight is not None else None,
                        run_length=32 if batching else 1)
        executor = ThreadPoolExecutor(2)
        batcher = Batcher(BatchingParameters(max_batch_size=32, batch_timeout_micros=2000),
                          lambda servable, name, inputs: servable.run(name, inputs),
                          executor, on_dispatch=router.batch_dispatched) if batching else None
        return DataPlane(repository, executor, batcher=batcher, router=router)

    return build


def versions_answering(data_plane: DataPlane, count: int, key=None) -> Counter:
    return Counter(data_plane.servable(ModelSpec("m", request_key=key(i) if key else None))
                   .version for i in range(count))


@pytest.mark.parametrize("weight", [10, 50, 90])
def test_the_bare_url_splits_by_the_weights(plane, weight):
    counts = versions_answering(plane(weight), REQUESTS)
    assert set(counts) == {1, 2}
    assert abs(counts[2] / REQUESTS * 100 - weight) < 2.5, counts  # 4,000 draws: sd <= 0.8 %


def test_model_calls_follow_the_split_and_say_which_version_answered(plane):
    data_plane = plane(30)
    arrays = {"x": np.asarray([1.0], np.float32)}

    async def calls():
        return [await data_plane.predict(ModelSpec("m"), lambda signature: arrays)
                for _ in range(2000)]

    results = asyncio.run(calls())
    counts = Counter(result.model_spec().version.value for result in results)
    assert abs(counts[2] / 2000 * 100 - 30) < 3.5, counts
    for result in results[:50]:  # y = 2x + version: the version named is the one that ran
        assert result.outputs["y"].tolist() == [2.0 + result.servable.version]


def test_a_version_or_a_label_bypasses_the_split(plane):
    for weight in (0, 100):
        data_plane = plane(weight)
        for _ in range(200):
            assert data_plane.servable(ModelSpec("m", version=1)).version == 1
            assert data_plane.servable(ModelSpec("m", version=2)).version == 2
            assert data_plane.servable(ModelSpec("m", label="stable")).version == 1
            assert data_plane.servable(ModelSpec("m", label="canary")).version == 2
    assert versions_answering(plane(0), 200) == {1: 200}  # weight 0: all to stable
    assert versions_answering(plane(100), 200) == {2: 200}


def test_without_a_split_the_newest_version_answers_as_in_tf_serving(plane):
    assert versions_answering(plane(None), 200) == {2: 200}


def test_a_canary_label_on_a_version_not_served_sends_everything_to_stable(plane):
    data_plane = plane(50, labels={"stable": 1, "canary": 3})  # 3 is not in the policy
    assert versions_answering(data_plane, 300) == {1: 300}
    data_plane = plane(50, labels={"canary": 2})  # no stable label: the newest, as TF Serving
    assert versions_answering(data_plane, 300) == {2: 300}


def test_a_request_key_always_gets_the_same_version(plane):
    data_plane = plane(20)
    keys = [f"user-{i}" for i in range(2000)]
    first = {key: data_plane.servable(ModelSpec("m", request_key=key)).version for key in keys}
    for _ in range(3):
        assert {key: data_plane.servable(ModelSpec("m", request_key=key)).version
                for key in keys} == first
    share = sum(version == 2 for version in first.values()) / len(keys) * 100
    assert abs(share - 20) < 3.5, share
    # Raising the weight only moves keys to the canary; lowering it only moves them back.
    data_plane.router.update({"m": Split(50)})
    raised = {key: data_plane.servable(ModelSpec("m", request_key=key)).version for key in keys}
    assert all(raised[key] == 2 for key in keys if first[key] == 2)
    assert abs(sum(v == 2 for v in raised.values()) / len(keys) * 100 - 50) < 4


LABELS = {"stable": 1, "canary": 2}


def runs_of(versions: list) -> list[tuple[int, int]]:
    """(version, how many in a row) for each stretch of one version."""
    stretches: list[list[int]] = []
    for version in versions:
        if stretches and stretches[-1][0] == version:
            stretches[-1][1] += 1
        else:
            stretches.append([version, 1])
    return [tuple(stretch) for stretch in stretches]


@pytest.mark.parametrize("weight", [1, 10, 25, 50, 90])
def test_with_batching_unkeyed_requests_go_in_runs_of_a_batch_at_the_exact_share(weight):
    """Each run a batch's worth (so each version's batches fill), and after every run
    the canary's share is its weight to within one run."""
    router = Router({"m": Split(weight)}, run_length=32)
    versions = []
    for _ in range(200):
        versions += [router.choose("m", LABELS) for _ in range(32)]
        canary_share = versions.count(2) / len(versions) * 100
        assert abs(canary_share - weight) <= 32 / len(versions) * 100, (weight, len(versions))
    assert all(length % 32 == 0 for _, length in runs_of(versions))
    assert abs(versions.count(2) / len(versions) * 100 - weight) <= 0.5


def test_a_run_ends_when_its_version_s_batch_leaves_for_the_model():
    """The batcher reports each dispatch: the run to that version ends there, and the next
    request starts a run to the version furthest below its share; a batch of the other
    version leaving ends nothing."""
    router = Router({"m": Split(50)}, run_length=32)
    first = [router.choose("m", LABELS) for _ in range(10)]
    assert len(set(first)) == 1
    run_version, other = first[0], 3 - first[0]
    router.batch_dispatched(StandInServable("m", other))
    router.batch_dispatched(StandInServable("n", run_version))  # another model's batch
    assert router.choose("m", LABELS) == run_version
    router.batch_dispatched(StandInServable("m", run_version))
    assert [router.choose("m", LABELS) for _ in range(11)] == [other] * 11


@pytest.mark.parametrize("weight", [1, 10, 25, 50, 90])
def test_runs_cut_short_by_dispatches_keep_the_share_exact_to_a_run(weight):
    rng = random.Random(weight)
    router = Router({"m": Split(weight)}, run_length=32)
    versions: list[int] = []
    for _ in range(400):
        versions += [router.choose("m", LABELS) for _ in range(rng.randint(1, 40))]
        router.batch_dispatched(StandInServable("m", versions[-1]))
        canary_share = versions.count(2) / len(versions) * 100
        assert abs(canary_share - weight) <= 32 / len(versions) * 100, (weight, len(versions))


def test_a_lone_request_at_a_time_alternates_the_versions_at_the_share():
    """Quiet traffic: each request's batch leaves alone, so each request is its own run and
    the versions interleave one by one (a 20 % canary answers every fifth)."""
    router = Router({"m": Split(20)}, run_length=32)
    versions = []
    for _ in range(100):
        versions.append(router.choose("m", LABELS))
        router.batch_dispatched(StandInServable("m", versions[-1]))
    assert versions == [2, 1, 1, 1, 1] * 20


def test_with_batching_each_wave_of_requests_is_one_full_batch_of_one_version(plane):
    """Waves of 10 concurrent bare-URL requests at 50 %, through the real batcher: each wave
    is one model call of 10 rows on one version, and the waves alternate. (Runs of a fixed
    32 requests cut across the waves: a version's batch then held part of a wave.)"""
    data_plane = plane(50, batching=True)
    arrays = {"x": np.asarray([1.0], np.float32)}

    async def waves():
        answered = []
        for _ in range(6):
            results = await asyncio.gather(*(
                data_plane.predict(ModelSpec("m"), lambda signature: arrays)
                for _ in range(10)))
            answered.append({result.servable.version for result in results})
        return answered

    answered = asyncio.run(waves())
    assert answered == [{2}, {1}] * 3
    for version in (1, 2):
        calls = data_plane.repository.resolve("m", version, None).calls
        assert [len(call["x"]) for call in calls] == [10, 10, 10]


def test_a_new_weight_is_met_from_its_change_on_not_by_making_up_the_past():
    router = Router({"m": Split(10)}, run_length=32)
    for _ in range(3200):
        router.choose("m", LABELS)
    router.update({"m": Split(50)})
    after = [router.choose("m", LABELS) for _ in range(640)]
    assert after.count(2) == 320  # not the ~1,280 a catch-up of the old share would give
    assert router.update({"m": Split(50)}) is False  # the same split: runs go on


def test_keyed_requests_ignore_the_runs_and_keep_their_bucket():
    keys = [f"user-{i}" for i in range(500)]
    alone = {key: Router({"m": Split(30)}).choose("m", LABELS, key) for key in keys}
    router = Router({"m": Split(30)}, run_length=32)
    for key in keys:
        router.choose("m", LABELS)  # unkeyed requests in between move no key
        assert router.choose("m", LABELS, key) == alone[key]


def test_the_key_s_bucket_is_the_same_in_every_process():
    """BLAKE2b, not hash(): another interpreter with another hash seed agrees."""
    code = ("from serving.traffic import bucket; "
            "print(bucket('m', 'user-1'), bucket('chicago-taxi', 'abc'))")
    outputs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONHASHSEED": seed},
                              check=True).stdout for seed in ("1", "2")}
    assert outputs == {"28.96 31.93\n"}
    assert (traffic.bucket("m", "user-1"), traffic.bucket(NAME, "abc")) == (28.96, 31.93)


def test_per_version_metrics_add_up_to_the_requests(plane):
    data_plane = plane(25)
    metrics = Metrics(lambda: [])
    for i in range(2000):
        version = data_plane.servable(ModelSpec("m")).version
        metrics.observe("m", "Predict", "REST", "OK", 0.001, version)
    metrics.observe("m", "Predict", "REST", "NOT_FOUND", 0.001)  # reached no version
    text = metrics.exposition().decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith(":mlops:serving:request_count{"):
            version = line.split('version="')[1].split('"')[0]
            counts[version] = counts.get(version, 0) + float(line.rsplit(" ", 1)[1])
    assert sum(counts.values()) == 2000 and set(counts) == {"1", "2"}
    latency = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith(":mlops:serving:request_latency_count{"))
    assert latency == 2000
    # TF Serving's own counter keeps its labels: model and status only.
    assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 2000' in text


# --- the sidecar file ------------------------------------------------------------------------

def test_the_split_file_round_trips_and_refuses_nonsense(tmp_path: Path):
    path = tmp_path / traffic.SPLIT_FILE
    assert traffic.read_splits(path) == {}
    traffic.write_splits(path, {NAME: Split(12.5), "other": Split(0)})
    assert json.loads(path.read_text()) == {"models": {
        NAME: {"canary_weight": 12.5}, "other": {"canary_weight": 0}}}
    assert traffic.read_splits(path) == {NAME: Split(12.5), "other": Split(0.0)}
    traffic.write_splits(path, {})
    assert not path.exists()
    for text in ("{", '{"models": []}', '{"models": {"m": {"canary_weight": 101}}}',
                 '{"models": {"m": {"canary_weight": true}}}',
                 '{"models": {"m": {"weight": 5}}}', '{"models": {}, "x": 1}'):
        with pytest.raises(ServingError) as caught:
            traffic.parse_splits(text, "traffic_split.json")
        assert caught.value.message.startswith("traffic_split.json")


def test_the_default_weight_is_validated_in_the_config(tmp_path: Path):
    from pipeline.definition.config import ConfigError

    assert load_config(write_config(tmp_path), check_files=False).serving.canary.weight == 10
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(tmp_path, {"serving.canary.weight": 120}), check_files=False)
    assert "canary" in str(caught.value)


# --- mlops canary / promote / abort -----------------------------------------------------------

@pytest.fixture
def config_file(workspace: Path) -> Path:
    """Versions 1, 2, 3 on disk (stand-ins), the default models.config (latest: 3)."""
    path = write_config(workspace, {"serving.rest_api_port": 1})  # nothing listens there
    settings = load_config(path, check_files=False).serving_settings()
    for version in (1, 2, 3):
        (Path(settings.serving_model_dir) / str(version)).mkdir(parents=True)
    server_files.write_server_files(settings)
    return path


def settings_of(config_file: Path):
    return load_config(config_file, check_files=False).serving_settings()


def model_config(config_file: Path):
    models = config_files.read_model_server_config(
        server_files.models_config_path(settings_of(config_file)))
    (model,) = models.model_config_list.config
    return model


def split_of(config_file: Path):
    return traffic.read_splits(operations.split_file(settings_of(config_file))).get(NAME)


def test_canary_then_reweight_then_promote(config_file: Path):
    settings = settings_of(config_file)
    message = operations.start_canary(settings, 3, 10)
    model = model_config(config_file)
    assert dict(model.version_labels) == {"stable": 2, "canary": 3}
    assert list(model.model_version_policy.specific.versions) == [2, 3]
    assert split_of(config_file) == Split(10)
    assert message.startswith(f"{NAME}: canary version 3 gets 10 % of the requests to the "
                              "bare model URL, stable version 2 the rest")
    assert "tensorflow_model_server reads no traffic_split.json" in message

    message = operations.set_canary_weight(settings, 35)
    assert split_of(config_file) == Split(35)
    assert "now gets 35 % of the requests to the bare model URL (was 10 %)" in message

    change = operations.promote(settings)
    model = model_config(config_file)
    assert dict(model.version_labels) == {"stable": 3}
    assert list(model.model_version_policy.specific.versions) == [3]
    assert split_of(config_file) is None
    assert not operations.split_file(settings).exists()
    assert change.version == 3
    assert change.message.startswith(f"{NAME}: version 3 promoted: label stable -> 3 (was 2), "
                                     "label canary removed, the split ended")


def test_canary_then_abort(config_file: Path):
    settings = settings_of(config_file)
    operations.start_canary(settings, 3, 20, stable=1)
    assert dict(model_config(config_file).version_labels) == {"stable": 1, "canary": 3}
    assert list(model_config(config_file).model_version_policy.specific.versions) == [1, 3]
    change = operations.abort(settings)
    model = model_config(config_file)
    assert dict(model.version_labels) == {"stable": 1}
    assert list(model.model_version_policy.specific.versions) == [1]
    assert split_of(config_file) is None
    assert change.version == 1
    assert change.message == (
        f"{NAME}: canary aborted: every request goes to stable version 1; label canary "
        "removed, version 3 no longer served (it stays on disk); new pushes are not served "
        "until `mlops restore`.")


def test_abort_keeps_the_split_at_zero_until_the_server_lets_the_canary_go(config_file):
    settings = settings_of(config_file)
    operations.start_canary(settings, 3, 20)
    change = operations.abort(settings, wait_until_unloaded=lambda version: False)
    assert split_of(config_file) == Split(0)  # everything to stable meanwhile
    assert "keeps a weight of 0" in change.message
    operations.abort(settings)  # again, once the server has caught up: the split ends
    assert split_of(config_file) is None


def test_canary_refusals(config_file: Path):
    settings = settings_of(config_file)
    cases = [(lambda: operations.promote(settings), "has no canary to promote"),
             (lambda: operations.abort(settings), "has no canary to abort"),
             (lambda: operations.set_canary_weight(settings, None), "give a VERSION"),
             (lambda: operations.set_canary_weight(settings, 5), "no canary to re-weight"),
             (lambda: operations.start_canary(settings, 9), "version 9 is not in"),
             (lambda: operations.start_canary(settings, 3, 150), "from 0 to 100"),
             (lambda: operations.start_canary(settings, 2, stable=2), "is the stable version")]
    for call, expected in cases:
        with pytest.raises(operations.OperationError) as caught:
            call()
        assert expected in str(caught.value)
    assert split_of(config_file) is None  # nothing was left half-done
    assert dict(model_config(config_file).version_labels) == {}


def test_the_mlops_verbs(config_file: Path):
    result = mlops_in_process("canary", "3", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert "canary version 3 gets 10 % of the requests" in result.stdout  # the config default
    assert "embedded server" in result.stdout
    result = mlops_in_process("canary", "--weight", "25", "--config", str(config_file))
    assert result.returncode == 0 and "25 %" in result.stdout, result.stderr
    assert split_of(config_file) == Split(25)
    result = mlops_in_process("versions", "--config", str(config_file))
    assert result.returncode == 0, result.stderr
    assert "Canary split of the bare URL (embedded server): 25 % to canary version 3, the " \
        "rest to stable version 2" in " ".join(result.stdout.split())
    result = mlops_in_process("promote", "--config", str(config_file))
    assert result.returncode == 0 and "version 3 promoted" in result.stdout, result.stderr
    result = mlops_in_process("abort", "--config", str(config_file))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {NAME} has no canary to abort"
