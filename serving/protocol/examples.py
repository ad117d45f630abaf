"""Serialized ``tf.Example``s for classify / regress, from REST JSON or from the gRPC Input.

TF Serving merges the optional context into every example (the example's own features win
on a name clash) before the classification or regression signature parses them.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import input_pb2

from serving.errors import invalid_argument
from serving.protocol.json_codec import example_features


def _example_from_json(example: Mapping[str, Any]) -> example_pb2.Example:
    proto = example_pb2.Example()
    for name, (kind, values) in example_features(example).items():
        feature = proto.features.feature[name]
        getattr(feature, f"{kind}_list").value.extend(values)
    return proto


def _merged(context: Optional[example_pb2.Example],
            example: example_pb2.Example) -> bytes:
    if context is None:
        return example.SerializeToString()
    merged = example_pb2.Example()
    merged.CopyFrom(context)
    merged.MergeFrom(example)
    return merged.SerializeToString()


def from_json(examples: Iterable[Mapping[str, Any]],
              context: Optional[Mapping[str, Any]]) -> list[bytes]:
    """REST classify / regress `examples` (and `context`) as serialized tf.Examples.

    Raises:
        ServingError: INVALID_ARGUMENT for a feature value JSON cannot type as TF Serving
            does (see `json_codec.example_features`).
    """
    context_proto = _example_from_json(context) if context else None
    return [_merged(context_proto, _example_from_json(example)) for example in examples]


def from_input(request_input: input_pb2.Input) -> list[bytes]:
    """A gRPC Input's examples, serialized, with its context merged into each.

    Raises:
        ServingError: INVALID_ARGUMENT ("Input is empty", TF Serving's text) when the Input
            holds no example list or an empty one.
    """
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        examples = list(request_input.example_list.examples)
        context = None
    elif kind == "example_list_with_context":
        examples = list(request_input.example_list_with_context.examples)
        context = request_input.example_list_with_context.context
    else:
        raise invalid_argument("Input is empty")
    if not examples:
        raise invalid_argument("Input is empty")
    return [_merged(context, example) for example in examples]
