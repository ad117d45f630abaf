"""Fixed costs of Apache Beam's in-process runner, removed for local runs and Kubeflow tasks.

A local run, and a Kubeflow task on Beam's direct runner, execute Beam pipelines
(Transform's, the Evaluator's) in their process on small data, so Beam's per-pipeline
bookkeeping, not the data, dominated their time. Each change below was measured on a
cold run of the bundled data (bench/pipeline; figures in docs/performance.md) and keeps
Beam's behaviour; they touch only this process, never workers of a distributed runner.
"""
from __future__ import annotations

import types
import weakref
from typing import Any, Callable


def apply() -> None:
    """Applies every tuning below; safe to call more than once."""
    _no_state_cache()
    _memoized_dofn_specs()
    _steady_dill_log_level()
    _memoized_option_views()


def _no_state_cache() -> None:
    """Turns off the Beam state cache of the in-process (in_memory) runner.

    Each cached side input is weighed with `objsize`, which walks the globals of every
    loaded module; with TensorFlow loaded that cost a quarter of Transform's time on the
    bundled data. Local runs read side inputs from memory anyway, so the cache gains
    nothing here.
    """
    from apache_beam.runners.portability.fn_api_runner import worker_handlers

    worker_handlers.STATE_CACHE_SIZE_MB = 0


def dofn_specs_key(dofn: Any) -> Any:
    """What `userstate.get_dofn_specs(dofn)` depends on, or None when it is not known.

    Beam reads state and timer specs from the default arguments of the DoFn's bound
    methods, so the DoFn's class and the functions behind those methods decide the answer.
    A bound method with an `_inspect_<name>` hook (`beam.Map` over a bound method) is
    inspected through instance data instead: no key then.
    """
    methods = []
    for name in dir(dofn):
        attribute = getattr(dofn, name, None)
        if isinstance(attribute, types.MethodType):
            if hasattr(dofn, f"_inspect_{name}"):
                return None
            methods.append((name, attribute.__func__))
    return type(dofn), tuple(methods)


def _memoized_dofn_specs() -> None:
    """Finds each kind of DoFn's state and timer specs once instead of at every use.

    Beam asks for them whenever it constructs, translates or runs a DoFn, and each time
    inspects the signature of every method of the DoFn: thousands of times in a cold run,
    for a few dozen kinds of DoFn (docs/performance.md).
    """
    from apache_beam.transforms import userstate

    if getattr(userstate.get_dofn_specs, "memoized", False):
        return
    compute: Callable[[Any], tuple[set, set]] = userstate.get_dofn_specs
    known: dict[Any, tuple[set, set]] = {}

    def get_dofn_specs(dofn: Any) -> tuple[set, set]:
        key = dofn_specs_key(dofn)
        if key is None:
            return compute(dofn)
        if key not in known:
            known[key] = compute(dofn)
        state_specs, timer_specs = known[key]
        return set(state_specs), set(timer_specs)  # callers get their own sets, as before

    get_dofn_specs.memoized = True  # type: ignore[attr-defined]
    get_dofn_specs.__wrapped__ = compute  # type: ignore[attr-defined]
    userstate.get_dofn_specs = get_dofn_specs


def _steady_dill_log_level() -> None:
    """Skips the `dill` logger's level change when the level is already the one asked for.

    Beam sets it after every pickle and unpickle, and `Logger.setLevel` clears the level
    cache of every logger in the process (about 360 with TensorFlow), thousands of times
    in a cold run (docs/performance.md).
    """
    import dill

    log = dill.dill.log
    if getattr(log.setLevel, "steady", False):
        return
    set_level = log.setLevel

    def set_level_if_changed(level: Any) -> None:
        if level != log.level:
            set_level(level)

    set_level_if_changed.steady = True  # type: ignore[attr-defined]
    log.setLevel = set_level_if_changed  # type: ignore[method-assign]


def _memoized_option_views() -> None:
    """Builds each view of a pipeline's options (`options.view_as(TypeOptions)`) once.

    Beam asks for the type-check view twice for every transform it applies, and each view
    is a new options object that parses the pipeline's arguments again with a new argparse
    parser: about a tenth of Transform's time on 1,500 rows. A view keeps no values of
    its own (it reads and writes the options' shared `_all_options`), so one view per
    options object and class answers as a new one would.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    if getattr(PipelineOptions.view_as, "memoized", False):
        return
    make_view = PipelineOptions.view_as
    views: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def view_as(options: PipelineOptions, cls: type) -> Any:
        known = views.setdefault(options, {})
        if cls not in known:
            known[cls] = make_view(options, cls)
        return known[cls]

    view_as.memoized = True  # type: ignore[attr-defined]
    view_as.__wrapped__ = make_view  # type: ignore[attr-defined]
    view_as.__doc__ = make_view.__doc__
    PipelineOptions.view_as = view_as  # type: ignore[method-assign]
