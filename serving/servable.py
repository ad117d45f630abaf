"""One loaded model version: its signatures, described and callable.

TF Serving answers from the SavedModel's ``SignatureDef``s (names, dtypes, shapes, method
names), so those are read from ``saved_model.pb`` as written. Like TF Serving, the graph is
loaded into a session and each signature called by its tensor names with numpy arrays,
which loads and calls faster than ``tf.saved_model.load``'s eager functions. The call goes
to the session's C run function with the feeds and fetches resolved once at load
(``_SignatureCall``), not through ``Session.run``, whose Python layer looks up, checks and
converts every feed and builds a fetch handler on every call: for the pipeline's model at
batch 1 that was more than half of the call (measured by bench/serving --latency-only; see
docs/performance.md). Errors a request can cause (unknown signature, inputs that do not
match it, values TensorFlow rejects) become ``ServingError``s with TF Serving's codes and
wording.
"""
from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Mapping, Optional

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError
from tensorflow.python.client import pywrap_tf_session as tf_session
from tensorflow.core.protobuf import error_codes_pb2, meta_graph_pb2, saved_model_pb2

from serving.errors import Code, ServingError, failed_precondition, invalid_argument

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """A signature input or output: the name a request uses, its dtype and static shape."""

    name: str
    dtype: tf.DType
    shape: Optional[tuple[Optional[int], ...]]  # None: unknown rank
    numpy_dtype: np.dtype = dataclasses.field(init=False, compare=False)

    def __post_init__(self) -> None:  # computed once: requests ask for it every time
        numpy_dtype = np.dtype(object) if self.dtype == tf.string else \
            np.dtype(self.dtype.as_numpy_dtype)
        object.__setattr__(self, "numpy_dtype", numpy_dtype)


@dataclasses.dataclass(frozen=True)
class Signature:
    """A callable SignatureDef: what requests are checked and decoded against
    (`input_dtypes` precomputed, since every request needs it)."""

    name: str
    method_name: str
    inputs: Mapping[str, TensorSpec]
    outputs: Mapping[str, TensorSpec]
    input_dtypes: Mapping[str, np.dtype] = dataclasses.field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_dtypes",
                           {name: spec.numpy_dtype for name, spec in self.inputs.items()})


def _tensor_spec(name: str, info: meta_graph_pb2.TensorInfo) -> TensorSpec:
    shape = info.tensor_shape
    dims = None if shape.unknown_rank else tuple(d.size if d.size >= 0 else None
                                                 for d in shape.dim)
    return TensorSpec(name, tf.dtypes.as_dtype(info.dtype), dims)


def read_meta_graph(export_dir: str) -> meta_graph_pb2.MetaGraphDef:
    """The ``serve``-tagged MetaGraphDef of a SavedModel, as TF Serving loads it.

    Raises:
        ServingError: NOT_FOUND when `export_dir` has no saved_model.pb, or no meta graph
            tagged `serve`; DATA_LOSS when saved_model.pb does not parse (a corrupt or
            half-copied version), which the status API then reports for the version.
    """
    path = os.path.join(export_dir, "saved_model.pb")
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            content = f.read()
    except tf.errors.NotFoundError:
        raise ServingError(Code.NOT_FOUND, f"Could not find SavedModel .pb at supplied "
                                           f"export directory path: {export_dir}") from None
    with warnings.catch_warnings(record=True) as caught:  # protobuf warns on trailing junk
        warnings.simplefilter("always")
        try:
            saved_model = saved_model_pb2.SavedModel.FromString(content)
        except DecodeError as err:
            caught.append(err)
    problems = [str(getattr(w, "message", w)) for w in caught
                if isinstance(w, DecodeError) or issubclass(w.category, RuntimeWarning)]
    if problems:
        raise ServingError(Code.DATA_LOSS, f"Could not parse {path}: {problems[0]}")
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ServingError(Code.NOT_FOUND, f"Could not find meta graph def matching supplied "
                                       f"tags: {{ {SERVE_TAG} }} in {export_dir}")


def _session_config(threads: tuple[int, int]) -> "tf.compat.v1.ConfigProto":
    """Graph optimisation off: a version answers sooner after a push; `threads` (intra-op,
    inter-op; 0 = TensorFlow's choice) as `ServerOptions.session_threads` says. TensorFlow
    sizes its pools once per process, from the first session's config, which is why the
    server gives every version of a process the same numbers.

    Each first run of a subgraph (restoring variables, table initialisers, the warm-up
    call) is optimised before it runs; for a Transform + Keras graph that is a third of the
    load-to-answer time, against batch calls a few per cent slower, which the request path
    (parsing, batching) hides (bench/serving; figures in docs/performance.md).
    """
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads[0],
                                      inter_op_parallelism_threads=threads[1])
    config.graph_options.rewrite_options.disable_meta_optimizer = True
    config.graph_options.optimizer_options.opt_level = tf.compat.v1.OptimizerOptions.L0
    return config


# RunOptions for one-row calls, made once: TF_SessionRun only reads it, from any thread.
_ON_CALLING_THREAD = tf_session.TF_NewBufferFromString(
    tf.compat.v1.RunOptions(inter_op_thread_pool=-1).SerializeToString())


class _SignatureCall:
    """One signature's feeds and fetches, resolved in the graph once, and its call.

    Does what ``Session.run`` does per feed (dtype conversion, the shape check with the
    same message, the feedable check) against values computed here once, then calls the
    session's C run function through ``Session._do_call``, which gives TensorFlow's errors
    the same text as ``Session.run``'s.

    A call of one row runs its ops on the calling thread (``RunOptions``
    ``inter_op_thread_pool=-1``) rather than handing them to TensorFlow's inter-op pool:
    a fifth less time per call for the pipeline's model. Batches keep the pool: with the
    whole session on calling threads, batched REST throughput fell (bench/serving; figures
    in docs/performance.md).
    """

    def __init__(self, session: "tf.compat.v1.Session", graph: tf.Graph,
                 signature_def: meta_graph_pb2.SignatureDef, signature: "Signature") -> None:
        self._session = session
        # Per input, in name order: (name, its TensorSpec, graph tensor, C output, rank or
        # None when unknown, the (axis, size) pairs the shape fixes, whether it is feedable).
        self._feeds = []
        outputs: dict[str, object] = {}  # tensor name -> C output: aliases feed it once
        for key in sorted(signature_def.inputs):
            tensor = graph.get_tensor_by_name(signature_def.inputs[key].name)
            output = outputs.setdefault(tensor.name, tensor._as_tf_output())
            shape = tensor.get_shape()
            rank = shape.rank
            fixed = () if rank is None else tuple(
                (axis, size) for axis, size in enumerate(shape.as_list()) if size is not None)
            self._feeds.append((key, signature.inputs[key], tensor, output, rank, fixed,
                                graph.is_feedable(tensor)))
        self.out_names = sorted(signature_def.outputs)
        fetched = [graph.get_tensor_by_name(signature_def.outputs[k].name)
                   for k in self.out_names]
        unique = list(dict.fromkeys(tensor.name for tensor in fetched))  # fetched once each
        self._fetches = [graph.get_tensor_by_name(name)._as_tf_output() for name in unique]
        self._positions = [unique.index(tensor.name) for tensor in fetched]
        session._extend_graph()  # the graph is complete: later calls need not check

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds, one_row = {}, True
        for key, spec, tensor, output, rank, fixed, feedable in self._feeds:
            try:
                array = np.asarray(inputs[key], dtype=spec.numpy_dtype)
            except (TypeError, ValueError) as err:
                raise invalid_argument(f"input '{key}' cannot be read as {spec.dtype.name}: "
                                       f"{err}") from None
            if rank is not None and (array.ndim != rank or fixed and any(
                    array.shape[axis] != size for axis, size in fixed)):
                raise invalid_argument(f"Cannot feed value of shape {array.shape} for Tensor "
                                       f"{tensor.name}, which has shape {tensor.get_shape()}")
            if not feedable:
                raise invalid_argument(f"Tensor {tensor.name} may not be fed.")
            feeds[output] = array
            one_row = one_row and (array.ndim == 0 or array.shape[0] <= 1)
        session = self._session
        try:
            values = session._do_call(session._call_tf_sessionrun,
                                      _ON_CALLING_THREAD if one_row else None, feeds,
                                      self._fetches, [], None)
        except tf.errors.OpError as err:
            raise ServingError(_code_of(err), err.message) from None
        except (TypeError, ValueError) as err:  # values the C layer cannot convert
            raise invalid_argument(str(err).splitlines()[0]) from None
        return {name: values[position]
                for name, position in zip(self.out_names, self._positions)}


class Servable:
    """A model version in memory. Thread-safe: requests call it from worker threads."""

    def __init__(self, name: str, version: int, path: str,
                 threads: tuple[int, int] = (0, 0)) -> None:
        """Loads the SavedModel at `path`; `threads`: the session's (intra-op, inter-op)
        pool sizes, 0 for TensorFlow's choice."""
        self.name = name
        self.version = version
        self.path = path
        meta_graph = read_meta_graph(path)
        self.signature_defs = dict(meta_graph.signature_def)  # all of them, for metadata
        self._graph = tf.Graph()
        self._session = tf.compat.v1.Session(graph=self._graph, config=_session_config(threads))
        with self._graph.as_default():
            tf.compat.v1.saved_model.loader.load(self._session, [SERVE_TAG], path)
        # The callable ones (not e.g. "__saved_model_init_op"), for requests.
        self.signatures: dict[str, Signature] = {
            key: Signature(key, sig.method_name,
                           {k: _tensor_spec(k, v) for k, v in sig.inputs.items()},
                           {k: _tensor_spec(k, v) for k, v in sig.outputs.items()})
            for key, sig in meta_graph.signature_def.items() if sig.inputs and sig.outputs}
        self._functions = {
            key: _SignatureCall(self._session, self._graph, meta_graph.signature_def[key],
                                signature)
            for key, signature in self.signatures.items()}

    def signature(self, name: str) -> Signature:
        """The callable signature `name` ("" = serving_default).

        Raises:
            ServingError: FAILED_PRECONDITION when the version has no such callable
                signature (TF Serving's code and message for it).
        """
        key = name or DEFAULT_SIGNATURE
        if key not in self.signatures:
            raise failed_precondition(f'Serving signature key "{key}" not found.')
        return self.signatures[key]

    def run(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Calls a signature on a batch (the data plane has checked the input names).

        Raises:
            ServingError: as `signature`; INVALID_ARGUMENT for a value that cannot take
                the input's dtype or shape, an input that may not be fed, or an error the
                model raises on the values (a failed check, a vocabulary miss); TensorFlow's
                other errors with their canonical code (INTERNAL when it has none here).
        """
        return self._functions[self.signature(signature_name).name](inputs)


def _code_of(error: "tf.errors.OpError") -> Code:
    name = type(error).__name__  # TF raises the OpError subclass of the error's code
    by_exception = {"InvalidArgumentError": Code.INVALID_ARGUMENT,
                    "FailedPreconditionError": Code.FAILED_PRECONDITION,
                    "OutOfRangeError": Code.OUT_OF_RANGE,
                    "NotFoundError": Code.INVALID_ARGUMENT,  # e.g. a vocabulary lookup miss
                    "ResourceExhaustedError": Code.RESOURCE_EXHAUSTED,
                    "DeadlineExceededError": Code.DEADLINE_EXCEEDED,
                    "UnimplementedError": Code.UNIMPLEMENTED}
    return by_exception.get(name, Code.INTERNAL)


def load_error_code(error: BaseException) -> str:
    """The canonical code name for a version that failed to load, for the status API."""
    if isinstance(error, ServingError):
        return error.code.value
    if isinstance(error, tf.errors.OpError):
        return error_codes_pb2.Code.Name(error.error_code)
    return "UNKNOWN"
