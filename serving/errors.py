"""Errors of the serving data plane, and their one mapping to HTTP and gRPC status codes.

Every layer raises :class:`ServingError` with a canonical code (the codes TF Serving uses);
the REST and gRPC adapters translate it here and nowhere else, so a client's mistake is a
4xx / INVALID_ARGUMENT on both APIs and only the server's own faults become 500 / INTERNAL.
"""
from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


class Code(enum.Enum):
    """The canonical codes serving uses; the value is the gRPC StatusCode's name."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    NOT_FOUND = "NOT_FOUND"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    UNAVAILABLE = "UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    INTERNAL = "INTERNAL"
    DATA_LOSS = "DATA_LOSS"  # a model's files are corrupt: a load error, never a request's


# As TF Serving's HTTP handler maps canonical codes (tensorflow_serving/util/net_http).
_HTTP_STATUS = {
    Code.INVALID_ARGUMENT: 400,
    Code.FAILED_PRECONDITION: 400,
    Code.OUT_OF_RANGE: 400,
    Code.NOT_FOUND: 404,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.UNIMPLEMENTED: 501,
    Code.UNAVAILABLE: 503,
    Code.DEADLINE_EXCEEDED: 504,
    Code.INTERNAL: 500,
    Code.DATA_LOSS: 500,
}


class ServingError(Exception):
    """A request that cannot be answered, with the canonical code saying whose fault it is."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The REST status, as TF Serving's HTTP handler maps the code."""
        return _HTTP_STATUS[self.code]

    @property
    def grpc_status(self) -> "grpc.StatusCode":
        """The gRPC status code of the same name."""
        import grpc  # here, not at the top: flags are parsed before gRPC reads its log level

        return grpc.StatusCode[self.code.value]


def invalid_argument(message: str) -> ServingError:
    """The request (or a file an operator gave) is wrong: HTTP 400; raise what it returns."""
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    """The model, version or label asked for is not served: HTTP 404."""
    return ServingError(Code.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    """The model exists but cannot answer this (e.g. no such signature): HTTP 400."""
    return ServingError(Code.FAILED_PRECONDITION, message)
