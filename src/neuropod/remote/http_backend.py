"""Calling a model over HTTP/REST: one ``httpx.Client`` per model, binary tensors by default.

A request carries its tensors as binary data after the JSON header (the binary tensor
extension), and asks for binary outputs: no number is printed or parsed as text. With
``binary=False`` tensors travel as JSON ``data`` instead, for servers without the extension.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx
import numpy as np

from neuropod.errors import InferenceError, NeuropodError, PackageError, ValidationError
from neuropod.protocol import http_codec
from neuropod.protocol.binary import parse_header_length
from neuropod.protocol.infer import InferRequest
from neuropod.protocol.keys import HEADER_LENGTH
from neuropod.remote.backend import HttpOptions, RemoteBackend
from neuropod.remote.errors import connection_error, error_for_status, timeout_error

_JSON = "application/json"


class HttpBackend(RemoteBackend):
    """A remote model over HTTP/REST (options: ``HttpOptions``).

    The client keeps its connections open between calls and is safe to share between threads.
    ``timeout`` bounds each step of a call (connect, send, wait for the answer).
    """

    load_options = HttpOptions

    def _connect(self) -> None:
        url = self._url
        self._binary: bool = self._settings.binary
        self._client = httpx.Client(
            base_url=url.server, timeout=httpx.Timeout(self._timeout), headers=self._headers
        )
        self._model_path = url.model_path

    def model_metadata(self) -> dict[str, Any]:
        """The model's metadata (``GET /v2/models/NAME``).

        Raises:
            PackageError: no answer, or an error answer (timeouts raise ``InferenceTimeout``).
        """
        response = self._send("GET", self._model_path, loading=True)
        try:
            metadata = json.loads(response.content)
        except ValueError:
            metadata = None
        if not isinstance(metadata, dict):
            raise PackageError(
                f"The server's metadata for {self._where} is not a JSON object: "
                f"{bytes(response.content[:200])!r}"
            )
        return metadata

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on the server.

        Raises:
            ValidationError: the server refused the request (400, 413).
            PackageError: the server no longer serves the model (404).
            InferenceTimeout: the timeout ran out.
            InferenceError: the model failed, or the connection did.
        """
        request = InferRequest(dict(inputs), binary_data_output=self._binary)
        header, raws = http_codec.encode_request(request, binary=self._binary)
        if raws:
            # The tensors' bytes are sent from the arrays themselves, never joined into a copy.
            content: bytes | list[Any] = [header, *raws]
            size = len(header) + sum(raw.nbytes for raw in raws)
            headers = {
                HEADER_LENGTH: str(len(header)),
                "Content-Length": str(size),
                "Content-Type": "application/octet-stream",
            }
        else:
            content, headers = header, {"Content-Type": _JSON}
        response = self._send("POST", self._model_path + "/infer", content=content, headers=headers)
        try:
            return self._read_outputs(response)
        except ValidationError as exc:  # a ProtocolError, or a string output that is not UTF-8
            raise InferenceError(f"The server's answer for {self._where} breaks the protocol: {exc}") from exc

    def _read_outputs(self, response: _Answer) -> dict[str, np.ndarray]:
        header_length = parse_header_length(response.headers.get(HEADER_LENGTH))
        outputs: dict[str, np.ndarray] = self._conform_outputs(
            http_codec.decode_response(response.content, header_length).arrays()
        )
        return outputs

    def _send(self, method: str, path: str, *, loading: bool = False, **kwargs: Any) -> _Answer:
        try:
            with self._client.stream(method, path, **kwargs) as response:
                # A bytearray, not bytes: the outputs view it, and arrays over bytes would be read-only.
                content = bytearray().join(response.iter_bytes())
        except httpx.TimeoutException as exc:
            raise timeout_error(self._timeout, self._where) from exc
        except (httpx.TransportError, OSError) as exc:
            raise connection_error(exc, self._where, loading=loading) from exc
        answer = _Answer(response.status_code, response.headers, content)
        if answer.status != 200:
            raise answer.error(self._where, loading=loading)
        return answer

    def close(self) -> None:
        """Close the connections. Idempotent."""
        self._client.close()


class _Answer:
    """A response whose body was read into a bytearray."""

    def __init__(self, status: int, headers: httpx.Headers, content: bytearray):
        self.status = status
        self.headers = headers
        self.content = content

    def error(self, where: str, *, loading: bool) -> NeuropodError:
        try:
            message = json.loads(self.content)["error"]
        except (ValueError, KeyError, TypeError):
            message = self.content.decode("utf-8", "replace").strip() or "(no message)"
        return error_for_status(self.status, str(message), where, loading=loading)
