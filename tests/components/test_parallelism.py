"""`components.parallelism`: the thread count of the in-process paths."""
from __future__ import annotations

from pathlib import Path

import pytest

from components import parallelism


def test_auto_uses_one_thread_on_small_data() -> None:
    assert parallelism.threads_for([], parallelism.AUTO_MIN_BYTES - 1) == 1


def test_auto_uses_the_usable_cores_on_large_data_up_to_the_cap(monkeypatch) -> None:
    monkeypatch.setattr(parallelism, "usable_cores", lambda: 2)
    assert parallelism.threads_for([], parallelism.AUTO_MIN_BYTES) == 2
    monkeypatch.setattr(parallelism, "usable_cores", lambda: 64)
    assert parallelism.threads_for([], 1 << 40) == parallelism.AUTO_MAX_THREADS


def test_a_configured_number_wins_at_any_size() -> None:
    assert parallelism.threads_for(["--in_process_threads=3"], 0) == 3
    assert parallelism.threads_for(["--in_process_threads=1"], 1 << 40) == 1


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_a_bad_value_is_a_clear_error(value: str) -> None:
    with pytest.raises(ValueError, match=f"--in_process_threads={value}: expected a positive"):
        parallelism.threads_for([f"--in_process_threads={value}"], 0)


def test_stored_bytes_sums_globs_and_ignores_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "a.gz").write_bytes(b"x" * 10)
    (tmp_path / "b.gz").write_bytes(b"x" * 5)
    assert parallelism.stored_bytes([str(tmp_path / "*.gz"), str(tmp_path / "none/*")]) == 15


@pytest.mark.parametrize("threads", [1, 3])
def test_ordered_map_answers_in_input_order_running_at_most_threads_calls(threads):
    import threading
    import time

    running, most = [0], [0]
    lock = threading.Lock()

    def slow_for_early(index: int) -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02 if index % 2 == 0 else 0.0)  # later calls finish first
        with lock:
            running[0] -= 1
        return index * 10

    results = list(parallelism.ordered_map(slow_for_early, ((i,) for i in range(12)), threads,
                                           "test"))
    assert results == [i * 10 for i in range(12)]
    assert most[0] <= threads
