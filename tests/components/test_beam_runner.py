"""When an executor here skips Beam: only where Beam would run everything in-process too."""
from __future__ import annotations

import pytest

from components.beam_runner import beam_would_distribute


@pytest.mark.parametrize("beam_args,distributes", [
    ([], False),
    (["--direct_running_mode=in_memory", "--direct_num_workers=1"], False),
    (["--runner=DirectRunner"], False),
    (["--direct_running_mode=multi_processing", "--direct_num_workers=2"], True),
    (["--direct_num_workers=0"], True),  # one worker per core
    (["--runner=DataflowRunner", "--project=p", "--region=r"], True),
    (["--runner", "FlinkRunner"], True),
])
def test_beam_keeps_work_that_it_would_distribute(beam_args, distributes) -> None:
    assert beam_would_distribute(beam_args) is distributes
