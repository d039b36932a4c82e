"""The server's own time per small inference request, in process: no sockets, no client.

Calls the HTTP front end (the ASGI application, as uvicorn would) and the gRPC servicer's
``ModelInfer`` (with encoded bytes, as grpc would) directly, so what is timed is routing,
decoding, the model wrapper, encoding and statistics: the part of a request neuropod owns.
Times are the process's CPU time, which other processes on a busy machine disturb less than
wall-clock time.

    python bench/serve_path.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.packagers.python import create_python_neuropod
from neuropod.protocol.grpc import service_pb2
from neuropod.serving.core import ServerCore
from neuropod.serving.grpc_service import InferenceServicer
from neuropod.serving.http_app import HttpApp
from neuropod.serving.repository import ModelRepository

_CODE = "def get_model(data_dir):\n    return lambda x, y: {'sum': x + y, 'diff': x - y}\n"


def _package(root: Path) -> Path:
    source = root / "src" / "bench_adder"
    source.mkdir(parents=True)
    (source / "__init__.py").write_text("")
    (source / "main.py").write_text(_CODE)
    spec = [{"name": n, "dtype": "float32", "shape": ["batch", None]} for n in ("x", "y")]
    out = [{"name": n, "dtype": "float32", "shape": ["batch", None]} for n in ("sum", "diff")]
    path = root / "adder"
    create_python_neuropod(
        neuropod_path=path,
        model_name="adder",
        input_spec=spec,
        output_spec=out,
        code_path_spec=[{"python_root": str(source.parent), "dirs_to_package": ["bench_adder"]}],
        entrypoint_package="bench_adder.main",
        entrypoint="get_model",
    )
    return path


def _http_bodies() -> dict[str, tuple[bytes, list[tuple[bytes, bytes]]]]:
    values = list(range(16))
    json_body = json.dumps(
        {
            "inputs": [
                {"name": n, "datatype": "FP32", "shape": [1, 16], "data": values} for n in ("x", "y")
            ]
        }
    ).encode()
    raw = np.arange(16, dtype=np.float32).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {"name": n, "datatype": "FP32", "shape": [1, 16], "parameters": {"binary_data_size": 64}}
                for n in ("x", "y")
            ],
            "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in ("sum", "diff")],
        }
    ).encode()
    return {
        "http-json": (json_body, [(b"content-type", b"application/json")]),
        "http-binary": (
            header + raw + raw,
            [(b"inference-header-content-length", str(len(header)).encode())],
        ),
    }


def _grpc_body() -> bytes:
    request = service_pb2.ModelInferRequest(model_name="adder")
    for name in ("x", "y"):
        tensor = request.inputs.add(name=name, datatype="FP32")
        tensor.shape.extend([1, 16])
        request.raw_input_contents.append(np.arange(16, dtype=np.float32).tobytes())
    return request.SerializeToString()


class _Context:
    def invocation_metadata(self) -> tuple[()]:
        return ()

    def abort(self, code: Any, message: str) -> None:
        raise RuntimeError(f"{code}: {message}")


def _time_http(app: HttpApp, body: bytes, headers: list[tuple[bytes, bytes]], count: int) -> float:
    scope = {"type": "http", "method": "POST", "path": "/v2/models/adder/infer", "headers": headers}
    message = {"type": "http.request", "body": body, "more_body": False}
    statuses = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(event: dict[str, Any]) -> None:
        if event["type"] == "http.response.start":
            statuses.append(event["status"])

    async def run() -> float:
        await app(scope, receive, send)
        started = time.process_time()
        for _ in range(count):
            await app(scope, receive, send)
        return time.process_time() - started

    took = asyncio.run(run())
    if set(statuses) != {200}:
        raise SystemExit(f"HTTP answered {set(statuses)}")
    return took


def _time_grpc(servicer: InferenceServicer, body: bytes, count: int) -> float:
    context = _Context()
    servicer.ModelInfer(body, context)
    started = time.process_time()
    for _ in range(count):
        servicer.ModelInfer(body, context)
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5, help="runs per path; the median is shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repository = ModelRepository([_package(Path(tmp))], None)
        repository.load_all()
        core = ServerCore(repository)
        app, servicer = HttpApp(core), InferenceServicer(core)
        rows = []
        for label, (body, headers) in _http_bodies().items():
            runs = [_time_http(app, body, headers, args.requests) for _ in range(args.repeats)]
            rows.append((label, runs))
        grpc_body = _grpc_body()
        rows.append(("grpc", [_time_grpc(servicer, grpc_body, args.requests) for _ in range(args.repeats)]))
        repository.close()
    print(f"{'path':<12} {'median CPU us/request':>22} {'min':>8} {'max':>8}")
    for label, runs in rows:
        per = [run / args.requests * 1e6 for run in runs]
        print(f"{label:<12} {statistics.median(per):>22.2f} {min(per):>8.2f} {max(per):>8.2f}")


if __name__ == "__main__":
    main()
