#!/usr/bin/env python
"""Servers that answer at once, for the floor of a one-client round trip on this machine.

    .venv/bin/python bench/loopback_floor.py http   # prints its port, answers until killed
    .venv/bin/python bench/loopback_floor.py grpc

``http``: a blocking socket that answers every read with one fixed HTTP/1.1 response, no
parsing (a one-client load generator sends one request at a time, so a read is a
request). What remains is the kernel's loopback, the process wake-ups and the load
generator's own work: no server written in any language answers a request in less.
``grpc``: grpc.aio's server on the embedded server's event loop, whose Predict answers
an empty ``scores`` output: what gRPC itself costs a request before the model is reached.

bench/serving --latency-only measures both with the clients it measures the embedded
server with, and prints them beside its figures.
"""
from __future__ import annotations

import socket
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


if __name__ == "__main__":
    {"http": serve_http, "grpc": serve_grpc}[sys.argv[1]]()
