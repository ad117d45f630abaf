"""TF Serving's two wire protocols over the one data plane (`serving/dataplane.py`).

`rest.py` is the REST API (paths, methods, status codes) served over `http.py` (an
asyncio HTTP/1.1 server on httptools) with TF Serving's JSON rules in `json_codec.py`;
`grpc_service.py` is the gRPC API (PredictionService, ModelService) with TensorProto
conversion in `tensors.py`; `examples.py` turns either protocol's classify / regress
input into serialized tf.Examples. The adapters import the data plane; the data plane
imports none of them (tests/test_boundaries.py).
"""
