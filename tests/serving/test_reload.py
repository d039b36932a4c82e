"""A failed reload keeps the loaded model serving, as Triton does (issue 12 item 10)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neuropod.serving import Server
from neuropod.serving.options import OPTIONS_FILE
from tests.serving.helpers import build_model

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("packages")
    return build_model(root, "adder", root / "adder.zip")


@pytest.fixture(scope="module")
def repository(tmp_path_factory, package) -> Path:
    repository = tmp_path_factory.mktemp("repository")
    folder = repository / "adder"
    folder.mkdir()
    (folder / "model.zip").write_bytes(package.read_bytes())
    (folder / OPTIONS_FILE).write_text("{}")
    return repository


@pytest.fixture(scope="module")
def client(repository):
    with Server(repository=repository, http_port=0, grpc_port=None) as server:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
        yield client
        client.close()


def add(client) -> np.ndarray:
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    inputs = [httpclient.InferInput("x", [2, 3], "FP32"), httpclient.InferInput("y", [2, 3], "FP32")]
    for tensor in inputs:
        tensor.set_data_from_numpy(x)
    result = client.infer("adder", inputs)
    np.testing.assert_array_equal(result.as_numpy("sum"), x + x)
    return x


def test_a_failed_reload_keeps_the_loaded_model(client, repository):
    add(client)
    options = repository / "adder" / OPTIONS_FILE
    options.write_text(json.dumps({"instances": "two"}))
    try:
        with pytest.raises(InferenceServerException) as info:
            client.load_model("adder")
        assert str(info.value.status()) == "400"
        assert info.value.message().startswith("load failed for model 'adder'")
        assert client.is_model_ready("adder")
        add(client)  # still the old one
    finally:
        options.write_text("{}")
    client.load_model("adder")
    assert client.is_model_ready("adder")
    add(client)


def test_a_failed_upload_keeps_the_loaded_model(client, package):
    with pytest.raises(InferenceServerException) as info:
        client.load_model("adder", files={"file:1/model.zip": b"not a zip"})
    assert str(info.value.status()) == "400"
    assert client.is_model_ready("adder")
    add(client)
    client.load_model("adder", files={"file:1/model.zip": package.read_bytes()})
    add(client)
    with pytest.raises(InferenceServerException):
        client.load_model("adder", files={"file:1/model.zip": b"not a zip either"})
    client.unload_model("adder")
    client.load_model("adder")  # from the upload that worked, kept beside the failed one
    add(client)
