"""Fixtures shared by the serving tests: tritonclient clients of a module's ``server``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def http(server: Any) -> Iterator[Any]:
    """A tritonclient HTTP client of the module's ``server`` fixture."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"127.0.0.1:{server.http_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def grpc(server: Any) -> Iterator[Any]:
    """A tritonclient gRPC client of the module's ``server`` fixture."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_address)
    yield client
    client.close()
