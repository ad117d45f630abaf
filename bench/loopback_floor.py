#!/usr/bin/env python
"""Servers that answer at once, for the floor of a one-client round trip on this machine.

    .venv/bin/python bench/loopback_floor.py http   # prints its port, answers until killed
    .venv/bin/python bench/loopback_floor.py grpc
    .venv/bin/python bench/loopback_floor.py rest-codec [--processes N]

``http``: a blocking socket that answers every read with one fixed HTTP/1.1 response, no
parsing (a one-client load generator sends one request at a time, so a read is a
request). What remains is the kernel's loopback, the process wake-ups and the load
generator's own work: no server written in any language answers a request in less.
``grpc``: grpc.aio's server on the embedded server's event loop, whose Predict answers
an empty ``scores`` output: what gRPC itself costs a request before the model is reached.

bench/serving --latency-only measures both with the clients it measures the embedded
server with, and prints them beside its figures.

For many connections (the ``http`` server above takes one at a time), the embedded
server's own REST layers without the model, on its event loop: ``rest-layer`` is its
HTTP layer (``serving.protocol.http``) answering a fixed body; ``rest-codec`` also
decodes each predict body into the signature's arrays and encodes a two-output answer
with ``serving.protocol.json_codec``, as the REST API does around the data plane. No
Python server of this shape carries more REST requests on this machine than these;
bench/serving prints them beside its many-client figures. ``--processes N``: N such
servers sharing the port (SO_REUSEPORT), as the embedded server's ``--rest_api_workers``
are: the most N processes of this shape carry (the first prints the port and starts the
others; stop them all by their process group).
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
_ANSWER_BODY = b'{"predictions": [[0.5]]}'
_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
           b"Content-Length: %d\r\n\r\n%s" % (len(_ANSWER_BODY), _ANSWER_BODY))


def serve_http() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        connection, _ = listener.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with connection:
            try:
                while connection.recv(65536):
                    connection.sendall(_ANSWER)
            except OSError:  # the client reset the connection: take the next one
                pass


def serve_grpc() -> None:
    sys.path.insert(0, str(REPO))
    import grpc
    from tensorflow.core.framework import tensor_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from serving import event_loop

    class EmptyPredictions(prediction_service_pb2_grpc.PredictionServiceServicer):
        async def Predict(self, request, context):
            return predict_pb2.PredictResponse(outputs={"scores": tensor_pb2.TensorProto()})

    async def serve() -> None:
        server = grpc.aio.server()
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            EmptyPredictions(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await server.wait_for_termination()

    event_loop.run(serve())


def serve_rest_layers(decode: bool, processes: int = 1, port: int = 0) -> None:
    """The embedded server's HTTP layer, answering a fixed body, or (``decode``) with the
    REST API's JSON codec on both sides of the call the model would make; ``processes``
    of them on one port (``port``: the one the first bound, for the others)."""
    sys.path.insert(0, str(REPO))
    import asyncio

    import numpy as np

    from serving import event_loop
    from serving.protocol import json_codec
    from serving.protocol.http import HttpServer, Limits

    answer = {"classes": np.array([[b"no_tip", b"tip"]], dtype=object),
              "scores": np.array([[0.21, 0.79]], dtype=np.float32)}
    fixed = json_codec.dumps(json_codec.predict_response(answer, json_codec.Format.ROW))
    dtypes: dict[str, np.dtype] = {}  # the inputs' dtypes, from the first instance

    def input_dtypes(instance: dict) -> dict[str, np.dtype]:
        if not dtypes:
            kinds = {str: object, int: np.int64, float: np.float32}
            dtypes.update({name: np.dtype(kinds[type(value)])
                           for name, value in instance.items()})
        return dtypes

    async def handler(method: str, path: str, body: bytes, headers=None) -> tuple:
        if not decode:
            return 200, "application/json", fixed
        request = json_codec.read_predict(body)
        json_codec.predict_inputs(request, input_dtypes(request.body["instances"][0]))
        return 200, "application/json", json_codec.dumps(
            json_codec.predict_response(answer, request.format))

    async def serve() -> None:
        server = HttpServer(handler, Limits(max_body_bytes=1 << 20))
        bound = await server.listen("127.0.0.1", port, reuse_port=processes > 1 or port > 0)
        if not port:
            for _ in range(processes - 1):
                subprocess.Popen([sys.executable, __file__, "rest-codec" if decode
                                  else "rest-layer", f"--port={bound}"])
            print(bound, flush=True)
        await asyncio.Event().wait()

    event_loop.run(serve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=("http", "grpc", "rest-layer", "rest-codec"))
    parser.add_argument("--processes", type=int, default=1,
                        help="rest-layer, rest-codec: servers sharing the port (default 1)")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)  # the others'
    args = parser.parse_args()
    if args.kind == "http":
        serve_http()
    elif args.kind == "grpc":
        serve_grpc()
    else:
        serve_rest_layers(args.kind == "rest-codec", args.processes, args.port)


if __name__ == "__main__":
    main()
