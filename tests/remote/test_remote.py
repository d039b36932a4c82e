"""Remote models: ``load_neuropod(url)`` against a real server on loopback, over HTTP and gRPC.

One server (``neuropod.serving.Server``, embedded) serves every model of the module; each test
runs once per protocol. The server requires a bearer token, so every load passes ``headers``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from neuropod import (
    BackendUnavailable,
    InferenceError,
    ModelClosedError,
    NeuropodModel,
    OptionError,
    PackageError,
    ValidationError,
    load_neuropod,
)
from neuropod.errors import InferenceTimeout
from neuropod.packagers import create_python_neuropod
from neuropod.remote import is_remote_url, parse_model_url
from neuropod.remote.metadata import config_from_metadata

pytest.importorskip("grpc")
pytest.importorskip("httpx")
pytest.importorskip("tritonclient.grpc")

from neuropod.serving import ModelOptions, Server
from tests.models import ADDITION_SPEC, BYTES_SPEC, FIXED_SPEC, RAW_BYTES, STRING_SPEC, byte_array
from tests.models.python import BYTES, STRINGS

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

#: tests.models' addition model, with two ways to misbehave that the remote errors need.
ADDITION = """
    import time


    def get_model(data_dir):
        def addition(x, y=None):
            if x.size and x.flat[0] < 0:
                raise ValueError("x starts negative")
            if x.size and x.flat[0] > 1000:
                time.sleep(float(x.flat[0]) / 1e4)  # 10000 -> 1 s, for timeouts
            return {"out": x.copy() if y is None else x + y}

        return addition
"""


def _build(root: Path, name: str, source: str, spec: dict[str, Any]) -> Path:
    code = root / f"{name}-code" / "model_code"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text(textwrap.dedent(source))
    path = root / f"{name}.zip"
    create_python_neuropod(
        neuropod_path=path,
        model_name=name,
        code_path_spec=[{"python_root": str(code.parent), "dirs_to_package": ["model_code"]}],
        entrypoint_package="model_code",
        entrypoint="get_model",
        **spec,
    )
    return path


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("remote")
    return {
        "addition": _build(root, "addition", ADDITION, ADDITION_SPEC),
        "fixed": _build(root, "fixed", ADDITION, FIXED_SPEC),
        "strings": _build(root, "strings", STRINGS, STRING_SPEC),
        "bytes": _build(root, "bytes", BYTES, BYTES_SPEC),
        "strict": _build(root, "strict", ADDITION, ADDITION_SPEC),  # the server requires every input
        "spare": _build(root, "spare", ADDITION, ADDITION_SPEC),  # unloaded by a test
    }


@pytest.fixture(scope="module")
def server(packages: dict[str, Path]) -> Iterator[Server]:
    strict = ModelOptions(load_options={"require_all_inputs": True})
    with Server(
        list(packages.values()),
        http_port=0,
        grpc_port=0,
        auth_token=TOKEN,
        model_options={"strict": strict},
        max_body_size=1 << 24,
    ) as running:
        # Model options reach an explicit package only when it is (re)loaded by name.
        running.core.repository.load("strict")
        yield running


@pytest.fixture(scope="module", params=["http", "grpc"])
def protocol(request: pytest.FixtureRequest) -> str:
    return request.param


def _url(server: Server, protocol: str, model: str) -> str:
    base = server.http_url if protocol == "http" else f"grpc://{server.grpc_address}"
    return f"{base}/v2/models/{model}"


def _load(server: Server, protocol: str, model: str = "addition", **options: Any) -> NeuropodModel:
    return load_neuropod(_url(server, protocol, model), headers=AUTH, **options)


@pytest.fixture(scope="module")
def model(server: Server, protocol: str) -> Iterator[NeuropodModel]:
    with _load(server, protocol) as opened:
        yield opened


def _xy(batch: int = 2, width: int = 3) -> tuple[np.ndarray, np.ndarray]:
    x = np.arange(batch * width, dtype=np.float32).reshape(batch, width)
    return x, np.full((batch, width), 0.5, dtype=np.float32)


def _inference_count(server: Server, model: str) -> int:
    request = urllib.request.Request(f"{server.http_url}/v2/models/{model}/stats", headers=AUTH)
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["model_stats"][0]["inference_count"]


# --- Running -----------------------------------------------------------------------------


def test_addition(model: NeuropodModel) -> None:
    x, y = _xy()
    out = model.infer({"x": x, "y": y})
    assert set(out) == {"out"} and out["out"].dtype == np.float32
    np.testing.assert_array_equal(out["out"], x + y)
    x, y = _xy(batch=5)
    np.testing.assert_array_equal(model.infer({"y": y, "x": x})["out"], x + y)


def test_missing_optional_input(model: NeuropodModel) -> None:
    x, _ = _xy()
    np.testing.assert_array_equal(model.infer({"x": x})["out"], x)


def test_metadata_is_the_packages(
    model: NeuropodModel, server: Server, protocol: str, packages: dict[str, Path]
) -> None:
    with load_neuropod(packages["addition"]) as local:
        assert model.inputs == local.inputs
        assert model.outputs == local.outputs
        assert model.input_specs == local.input_specs
    assert model.inputs[0] == {"name": "x", "dtype": "float32", "shape": ["batch", None]}
    assert model.name == "addition"
    assert model.platform == "python"
    assert model.path == _url(server, protocol, "addition")
    assert repr(model) == "<NeuropodModel 'addition' platform='python' open>"


@pytest.mark.parametrize("dtype", [str, object])
def test_string_round_trip(server: Server, protocol: str, dtype: type) -> None:
    words = np.array(["héllo", "日本語", "", "a b"], dtype=dtype)
    with _load(server, protocol, "strings") as strings:
        out = strings.infer({"s": words})
    assert out["out"].dtype.kind == "U"
    assert out["out"].tolist() == ["<héllo>", "<日本語>", "<>", "<a b>"]


def test_bytes_round_trip(server: Server, protocol: str) -> None:
    with _load(server, protocol, "bytes") as remote:
        assert remote.input_specs[0].dtype == "bytes"
        out = remote.infer({"s": byte_array(RAW_BYTES)})["out"]
        assert out.dtype == object and out.tolist() == [b"<" + item + b">" for item in RAW_BYTES]
        assert remote.infer({"s": np.array([b"a\x00b"])})["out"].tolist() == [b"<a\x00b>"]


def test_bytes_as_json_are_utf8_only(server: Server) -> None:
    with _load(server, "http", "bytes", binary=False) as remote:
        assert remote.infer({"s": byte_array([b"a\x00", "é".encode()])})["out"].tolist() == [
            b"<a\x00>",
            "<é>".encode(),
        ]
        message = "Tensor 's': BYTES element 1 is not UTF-8 .* JSON cannot carry"
        with pytest.raises(ValidationError, match=message):
            remote.infer({"s": byte_array([b"ok", b"\xff"])})


def test_large_tensors(model: NeuropodModel) -> None:
    x = np.random.default_rng(0).random((2, 1 << 19), dtype=np.float32)  # 4 MB per tensor
    out = model.infer({"x": x, "y": x})
    np.testing.assert_array_equal(out["out"], x + x)


def test_outputs_are_writable_arrays(model: NeuropodModel) -> None:
    x, y = _xy()
    out = model.infer({"x": x, "y": y})["out"]
    out += 1  # as with a local model
    np.testing.assert_array_equal(out, x + y + 1)


def test_empty_batch(model: NeuropodModel) -> None:
    x, y = _xy(batch=0)
    assert model.infer({"x": x, "y": y})["out"].shape == (0, 3)


def test_json_tensors(server: Server) -> None:
    words = np.array(["héllo", "a"])
    with _load(server, "http", "strings", binary=False) as strings:
        assert strings.infer({"s": words})["out"].tolist() == ["<héllo>", "<a>"]
    with _load(server, "http", binary=False) as adder:
        x, y = _xy()
        np.testing.assert_array_equal(adder.infer({"x": x, "y": y})["out"], x + y)


def test_concurrent_calls_share_the_model(model: NeuropodModel) -> None:
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        x = np.full((1, 3), i, np.float32)
        results[i] = model.infer({"x": x, "y": x})["out"]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert {i: out.tolist() for i, out in results.items()} == {i: [[2.0 * i] * 3] for i in range(8)}


def test_a_version_in_the_url(server: Server, protocol: str) -> None:
    with load_neuropod(_url(server, protocol, "addition") + "/versions/1", headers=AUTH) as versioned:
        x, y = _xy()
        np.testing.assert_array_equal(versioned.infer({"x": x, "y": y})["out"], x + y)
    with pytest.raises(PackageError, match=r"404|NOT_FOUND"):
        load_neuropod(_url(server, protocol, "addition") + "/versions/7", headers=AUTH)


# --- Validation happens here, before anything is sent -----------------------------------


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"x": _xy()[0].astype(np.float64)},
            "Tensor 'x' in the input spec is expected to be of type float32, but was of type float64",
        ),
        ({"x": _xy()[0][None]}, "Tensor 'x' in the input spec is expected to have 2 dimensions, but had 3"),
        (
            {"x": _xy(batch=2)[0], "y": _xy(batch=3)[1]},
            "All dims with symbol 'batch' should be the same size",
        ),
        ({"x": _xy()[0], "z": _xy()[1]}, "Tensor name(s) 'z' are not found in the input spec"),
    ],
)
def test_validation_errors_are_raised_locally(
    model: NeuropodModel, server: Server, inputs: dict[str, np.ndarray], message: str
) -> None:
    before = _inference_count(server, "addition")
    with pytest.raises(ValidationError) as info:
        model.infer(inputs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, RuntimeError)
    assert _inference_count(server, "addition") == before


def test_fixed_dims_come_from_the_server(server: Server, protocol: str) -> None:
    with _load(server, protocol, "fixed") as fixed:
        x, y = _xy(width=3)
        with pytest.raises(
            ValidationError, match="Dim 1 of tensor 'x' in the input spec is expected to be of size 2"
        ):
            fixed.infer({"x": x, "y": y})
        x, y = _xy(width=2)
        np.testing.assert_array_equal(fixed.infer({"x": x, "y": y})["out"], x + y)


def test_require_all_inputs(server: Server, protocol: str) -> None:
    with (
        _load(server, protocol, require_all_inputs=True) as strict,
        pytest.raises(ValidationError, match="Tensor 'y' in the input spec is required"),
    ):
        strict.infer({"x": _xy()[0]})


# --- Server errors become the local exception types --------------------------------------


def test_a_request_the_server_refuses_is_a_validation_error(server: Server, protocol: str) -> None:
    # Valid here (y is optional), but the server loaded this model with require_all_inputs.
    with _load(server, protocol, "strict") as strict, pytest.raises(ValidationError) as info:
        strict.infer({"x": _xy()[0]})
    assert "Tensor 'y' in the input spec is required" in str(info.value)
    assert ("400" if protocol == "http" else "INVALID_ARGUMENT") in str(info.value)


def test_a_body_over_the_servers_limit_is_a_validation_error(model: NeuropodModel, protocol: str) -> None:
    x = np.zeros((1, 1 << 23), np.float32)  # 32 MB, over the server's 16 MB
    with pytest.raises(ValidationError, match="413" if protocol == "http" else "RESOURCE_EXHAUSTED"):
        model.infer({"x": x})


def test_a_failing_model_is_an_inference_error(model: NeuropodModel, protocol: str) -> None:
    x, y = _xy()
    with pytest.raises(InferenceError) as info:
        model.infer({"x": -x - 1, "y": y})
    assert "ValueError: x starts negative" in str(info.value)
    assert ("500" if protocol == "http" else "INTERNAL") in str(info.value)
    np.testing.assert_array_equal(model.infer({"x": x, "y": y})["out"], x + y)


def test_an_unknown_model_is_a_package_error(server: Server, protocol: str) -> None:
    with pytest.raises(PackageError) as info:
        _load(server, protocol, "nonexistent")
    assert "model 'nonexistent' at " in str(info.value)
    assert ("404" if protocol == "http" else "NOT_FOUND") in str(info.value)


def test_a_missing_token_is_refused_at_load(server: Server, protocol: str) -> None:
    with pytest.raises(PackageError, match="401" if protocol == "http" else "UNAUTHENTICATED"):
        load_neuropod(_url(server, protocol, "addition"))


def test_an_unloaded_model(server: Server, protocol: str) -> None:
    with _load(server, protocol, "spare") as spare:
        x, y = _xy()
        spare.infer({"x": x, "y": y})
        server.core.repository.unload("spare")
        try:
            with pytest.raises(InferenceError, match="not ready"):
                spare.infer({"x": x, "y": y})
            with pytest.raises(PackageError, match="not ready"):
                _load(server, protocol, "spare")
        finally:
            server.core.repository.load("spare")
        np.testing.assert_array_equal(spare.infer({"x": x, "y": y})["out"], x + y)


def test_no_server(protocol: str) -> None:
    url = f"{'http' if protocol == 'http' else 'grpc'}://127.0.0.1:9/v2/models/addition"
    with pytest.raises(PackageError) as info:
        load_neuropod(url, timeout=5)
    assert f"model 'addition' at {url}" in str(info.value)


def test_a_server_that_stops(packages: dict[str, Path], protocol: str) -> None:
    with Server([packages["addition"]], http_port=0, grpc_port=0) as short_lived:
        remote = load_neuropod(_url(short_lived, protocol, "addition"), timeout=5)
    x, y = _xy()
    with remote, pytest.raises(InferenceError, match="addition"):
        remote.infer({"x": x, "y": y})


# --- Timeouts --------------------------------------------------------------------------------


def test_timeout(server: Server, protocol: str) -> None:
    x = np.full((1, 3), 10_000, np.float32)  # the model sleeps 1 s
    with _load(server, protocol, timeout=0.2) as hasty:
        with pytest.raises(InferenceTimeout) as info:
            hasty.infer({"x": x})
        assert isinstance(info.value, TimeoutError)
        assert "No answer within the timeout of 0.2 s for model 'addition'" in str(info.value)
    with _load(server, protocol, timeout=30) as patient:  # waits for the sleeper, then runs
        np.testing.assert_array_equal(patient.infer({"x": _xy()[0]})["out"], _xy()[0])


# --- Lifetime ----------------------------------------------------------------------------------


def test_close_is_idempotent_and_final(server: Server, protocol: str) -> None:
    remote = _load(server, protocol)
    x, y = _xy()
    remote.infer({"x": x, "y": y})
    remote.close()
    remote.close()
    with pytest.raises(ModelClosedError, match="Model 'addition' is closed"):
        remote.infer({"x": x, "y": y})


def _client_ports(server_port: int) -> set[int]:
    """Local ports of the established TCP connections to ``server_port`` (IPv4 or IPv6)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, remote, state = line.split()[1:4]
            if state == "01" and int(remote.rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's connection table")
def test_one_connection_serves_every_call(server: Server, protocol: str) -> None:
    port = server.http_port if protocol == "http" else server.grpc_port
    assert port is not None
    before = _client_ports(port)
    x, y = _xy()
    with _load(server, protocol) as remote:
        after_load = _client_ports(port)
        for _ in range(5):
            remote.infer({"x": x, "y": y})
            assert _client_ports(port) == after_load
    # grpc shares a connection between channels to one server, so a gRPC model may open none
    assert len(after_load - before) == 1 if protocol == "http" else len(after_load - before) <= 1


# --- Options and URLs -------------------------------------------------------------------------


def test_unknown_options_are_named(server: Server, protocol: str) -> None:
    with pytest.raises(OptionError) as info:
        _load(server, protocol, instances=2, colour="blue")
    accepted = (
        "require_all_inputs, timeout, binary, headers"
        if protocol == "http"
        else "require_all_inputs, timeout, headers"
    )
    assert str(info.value) == (
        f"load_neuropod() got unknown option(s) 'colour', 'instances' for a remote {protocol} model; "
        f"accepted options: {accepted}"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"visible_gpu": 0}, "visible_gpu does not apply to a remote model"),
        ({"use_ope": True}, "use_ope does not apply to a remote model"),
        ({"timeout": 0}, "timeout must be None or a number of seconds > 0, got 0"),
        ({"headers": {"x": 1}}, "headers must be a dict of str to str"),
    ],
)
def test_invalid_options(server: Server, protocol: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(OptionError, match=message):
        load_neuropod(_url(server, protocol, "addition"), **options)


def test_binary_is_an_http_option(server: Server) -> None:
    with pytest.raises(OptionError, match=r"unknown option.*'binary' for a remote grpc model"):
        _load(server, "grpc", binary=False)


@pytest.mark.parametrize(
    ("url", "parts"),
    [
        ("http://h:8000/v2/models/m", ("http", "h", 8000, "", "m", "")),
        ("HTTPS://h/serving/v2/models/m/versions/3", ("https", "h", 443, "/serving", "m", "3")),
        ("grpc://[::1]:8001/v2/models/a%2Fb/", ("grpc", "::1", 8001, "", "a/b", "")),
        ("grpcs://h:9/v2/models/m", ("grpcs", "h", 9, "", "m", "")),
    ],
)
def test_model_urls(url: str, parts: tuple[Any, ...]) -> None:
    parsed = parse_model_url(url)
    assert (parsed.scheme, parsed.host, parsed.port, parsed.prefix, parsed.model, parsed.version) == parts
    assert is_remote_url(url)


def test_model_url_helpers() -> None:
    parsed = parse_model_url("grpc://[::1]:8001/v2/models/a%2Fb/versions/2")
    assert (parsed.protocol, parsed.tls, parsed.authority) == ("grpc", False, "[::1]:8001")
    assert parsed.model_path == "/v2/models/a%2Fb/versions/2"
    assert parse_model_url("https://h/p/v2/models/m").server == "https://h:443/p"
    assert not is_remote_url("models/addition.zip") and not is_remote_url(Path("http:/x"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:1/v1/models/m", "expected http://host:port/v2/models/NAME[/versions/VERSION]"),
        ("http://h:1/v2/models/m/ready", "expected http://host:port/v2/models/NAME"),
        ("http://h:1/v2/models/m?x=1", "it has a query or fragment"),
        ("http://:1/v2/models/m", "it names no host"),
        ("http://h:port/v2/models/m", "Port could not be cast"),
        ("grpc://h:1/p/v2/models/m", "a gRPC URL has no path before /v2"),
    ],
)
def test_malformed_urls(url: str, message: str) -> None:
    with pytest.raises(PackageError, match=message.replace("[", r"\[").replace("?", r"\?")):
        load_neuropod(url)


def test_specs_from_another_servers_metadata() -> None:
    metadata = {
        "name": "resnet",
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 3, 224, 224]}],
        "outputs": [{"name": "label", "datatype": "BYTES", "shape": [-1]}],
    }
    config = config_from_metadata(metadata, "resnet", "model 'resnet'")
    assert (config.name, config.platform) == ("resnet", "onnxruntime_onnx")
    assert [spec.to_dict() for spec in config.inputs] == [
        {"name": "image", "dtype": "float32", "shape": [None, 3, 224, 224]}
    ]
    assert [spec.to_dict() for spec in config.outputs] == [
        {"name": "label", "dtype": "string", "shape": [None]}
    ]
    metadata["inputs"][0]["datatype"] = "BF16"
    with pytest.raises(
        PackageError, match=r"The server's metadata for model 'resnet' is not usable: .*'BF16'"
    ):
        config_from_metadata(metadata, "resnet", "model 'resnet'")


def test_a_missing_client_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)  # makes "import httpx" fail
    monkeypatch.delitem(sys.modules, "neuropod.remote.http_backend", raising=False)
    with pytest.raises(BackendUnavailable, match=r"install it with: pip install 'neuropod\[remote\]'"):
        load_neuropod("http://127.0.0.1:9/v2/models/addition")


def test_importing_neuropod_imports_no_client_library() -> None:
    code = "import sys, neuropod, neuropod.remote; print(sorted({'httpx', 'grpc'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
