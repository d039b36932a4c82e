"""The Ray Serve deployment's HTTP handling: the protocol's codec, without a Ray cluster.

The replica class is built directly and its ``@serve.batch`` method (which needs a running
replica) is replaced by a direct call of the model; ``tests/integrations/test_ray.py`` runs the real thing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from tests.serving.helpers import build_model

pytest.importorskip("ray.serve")
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:Using extra keyword arguments on `Field`:DeprecationWarning:ray.serve"
    ),
]
from starlette.requests import Request  # noqa: E402


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    from neuropod.integrations.ray.package_source import PackageSource
    from neuropod.integrations.ray.serve import NeuropodDeployment

    path = build_model(tmp_path_factory.mktemp("models"), "partial")
    replica = NeuropodDeployment.func_or_class(PackageSource.at(path), {}, None, 4, 0.001)

    async def infer_batch(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return replica.model.infer(inputs)

    replica._infer_batch = infer_batch
    yield replica
    replica.model.close()


def post(replica: Any, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v2/models/partial/infer",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    response = asyncio.run(replica(Request(scope, receive)))
    headers = {key.decode(): value.decode() for key, value in response.raw_headers}
    return response.status_code, headers, bytes(response.body)


def request(**extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [-(2**63), 2]}], **extra}


def test_json_answers_what_the_model_produced(deployment):
    status, _, body = post(deployment, request(id="a"))
    assert status == 200
    assert json.loads(body) == {
        "model_name": "partial",
        "model_version": "1",
        "id": "a",
        "outputs": [{"name": "o_int", "datatype": "INT64", "shape": [2], "data": [0, 4]}],
    }


def test_binary_data_output_is_answered_in_binary(deployment):
    status, headers, body = post(deployment, request(parameters={"binary_data_output": True}))
    assert status == 200
    length = int(headers["inference-header-content-length"])
    assert json.loads(body[:length])["outputs"][0]["parameters"] == {"binary_data_size": 16}
    assert np.frombuffer(body[length:], "<i8").tolist() == [0, 4]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"outputs": [{"name": "o_bool"}]},
            "Output 'o_bool' was requested, but model 'partial' did not produce it for this request "
            "(it produced: o_int); leave 'outputs' out to get every output it produced",
        ),
        (
            {"outputs": [{"name": "nope"}]},
            "Output 'nope' is not an output of model 'partial' (outputs: o_int, o_bool)",
        ),
    ],
)
def test_outputs_that_cannot_be_answered_are_a_400(deployment, extra, message):
    status, _, body = post(deployment, request(**extra))
    assert (status, json.loads(body)) == (400, {"error": message})


def test_shared_memory_inputs_are_refused(deployment):
    body = {
        "inputs": [
            {
                "name": "x",
                "shape": [2],
                "datatype": "INT64",
                "parameters": {"shared_memory_region": "r", "shared_memory_byte_size": 16},
            }
        ]
    }
    status, _, answer = post(deployment, body)
    assert status == 400
    assert json.loads(answer) == {
        "error": "Input 'x' names a shared memory region, which a Ray Serve deployment cannot read; "
        "send its data in the request"
    }
