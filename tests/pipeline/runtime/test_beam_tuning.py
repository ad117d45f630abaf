"""Beam tuning for local runs: Beam's answers and behaviour, computed once."""
from __future__ import annotations

import logging

import apache_beam as beam
import dill
import pytest
from apache_beam.coders import VarIntCoder
from apache_beam.testing.util import assert_that, equal_to
from apache_beam.transforms import userstate

from pipeline.runtime import beam_tuning


class CountPerKey(beam.DoFn):
    COUNT = userstate.BagStateSpec("count", VarIntCoder())
    FLUSH = userstate.TimerSpec("flush", userstate.TimeDomain.WATERMARK)

    def process(self, element, count=beam.DoFn.StateParam(COUNT),
                flush=beam.DoFn.TimerParam(FLUSH)):
        count.add(1)
        yield element[0], sum(count.read())

    @userstate.on_timer(FLUSH)
    def on_flush(self):
        pass


class Stateless(beam.DoFn):
    def process(self, element):
        yield element


class Holder:
    def pair(self, x):
        return [x, x]


@pytest.fixture(autouse=True)
def tuned() -> None:
    beam_tuning.apply()


def test_specs_are_beams_own(tuned) -> None:
    compute = userstate.get_dofn_specs.__wrapped__
    for dofn in (CountPerKey(), Stateless(), beam.FlatMap(Holder().pair).fn,
                 beam.Map(len).fn):
        assert userstate.get_dofn_specs(dofn) == compute(dofn)
    state, timers = userstate.get_dofn_specs(CountPerKey())
    assert state == {CountPerKey.COUNT} and timers == {CountPerKey.FLUSH}


def test_one_answer_per_kind_of_dofn_and_each_caller_gets_its_own_copy(tuned) -> None:
    key = beam_tuning.dofn_specs_key
    assert key(CountPerKey()) == key(CountPerKey()) != key(Stateless())
    assert key(beam.Map(len).fn) == key(beam.Map(str).fn)  # plain functions: not inspected
    assert key(beam.FlatMap(Holder().pair).fn) is None  # inspected through instance data
    first, second = userstate.get_dofn_specs(CountPerKey()), userstate.get_dofn_specs(
        CountPerKey())
    first[0].clear()
    assert second[0] and userstate.get_dofn_specs(CountPerKey())[0]


def test_stateful_pipelines_still_run(tuned) -> None:
    options = beam.options.pipeline_options.PipelineOptions(
        ["--direct_running_mode=in_memory", "--direct_num_workers=1"])
    with beam.Pipeline(options=options) as pipeline:
        counts = (pipeline | beam.Create([("a", 1), ("a", 2), ("b", 3)])
                  | beam.ParDo(CountPerKey()))
        assert_that(counts, equal_to([("a", 1), ("a", 2), ("b", 1)]))


def test_dill_trace_still_switches_the_level_but_only_when_it_changes(
        tuned, monkeypatch: pytest.MonkeyPatch) -> None:
    clears = []
    monkeypatch.setattr(logging.Logger.manager, "_clear_cache", lambda: clears.append(1))
    dill.dill._trace(True)
    assert dill.dill.log.level == logging.INFO
    dill.dill._trace(False)
    dill.dill._trace(False)
    dill.dill._trace(False)
    assert dill.dill.log.level == logging.WARN
    assert len(clears) == 2  # two changes, not four calls


def test_an_options_view_is_built_once_and_reads_and_writes_the_shared_options(tuned) -> None:
    from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions,
                                                      TypeOptions)

    options = PipelineOptions(["--direct_num_workers=3", "--no_pipeline_type_check"])
    view = options.view_as(TypeOptions)
    assert options.view_as(TypeOptions) is view
    assert view.pipeline_type_check is False  # parsed from the arguments, as before
    assert options.view_as(DirectOptions).direct_num_workers == 3
    view.pipeline_type_check = True  # a view writes through to the options, as before
    assert PipelineOptions.view_as.__wrapped__(options, TypeOptions).pipeline_type_check
    other = PipelineOptions([])
    assert other.view_as(TypeOptions) is not view and other.view_as(TypeOptions).pipeline_type_check
