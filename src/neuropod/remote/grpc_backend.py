"""Calling a model over gRPC: one channel per model, tensors as raw contents.

The channel (one HTTP/2 connection, multiplexing concurrent calls) stays open between calls
and is safe to share between threads. Its message size limits are lifted as the protocol
needs (grpc's default receive limit is 4 MB). ``infer_stream`` sends its request on a
``ModelStreamInfer`` call of its own and yields each response as it arrives.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import grpc
import numpy as np

from neuropod.errors import InferenceError, NeuropodError, ValidationError
from neuropod.protocol import grpc_codec
from neuropod.protocol.grpc import MESSAGE_SIZE_OPTIONS, service_pb2, service_pb2_grpc
from neuropod.protocol.infer import InferRequest, InferResponse
from neuropod.protocol.keys import EMPTY_FINAL_RESPONSE, FINAL_RESPONSE, NEUROPOD_PLATFORM, SPEC_PARAMETERS
from neuropod.remote.backend import GrpcOptions, RemoteBackend
from neuropod.remote.errors import error_for_code, timeout_error

_MODEL_INFER = "/inference.GRPCInferenceService/ModelInfer"
_MODEL_STREAM_INFER = "/inference.GRPCInferenceService/ModelStreamInfer"


class GrpcBackend(RemoteBackend):
    """A remote model over gRPC (options: ``GrpcOptions``).

    ``timeout`` is each call's deadline; headers travel as gRPC metadata (names lowercased, as
    gRPC needs).
    """

    load_options = GrpcOptions

    def _connect(self) -> None:
        url = self._url
        self._metadata = tuple((key.lower(), value) for key, value in self._headers.items())
        if url.tls:
            self._channel = grpc.secure_channel(
                url.authority, grpc.ssl_channel_credentials(), options=MESSAGE_SIZE_OPTIONS
            )
        else:
            self._channel = grpc.insecure_channel(url.authority, options=MESSAGE_SIZE_OPTIONS)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        # Inference sends and reads encoded messages: see neuropod.protocol.grpc_framing.
        self._infer = self._channel.unary_unary(_MODEL_INFER)
        self._stream = self._channel.stream_stream(_MODEL_STREAM_INFER)

    def model_metadata(self) -> dict[str, Any]:
        """The model's metadata in the protocol's JSON form, with the exact specs where known.

        The ``ModelMetadata`` call has no parameters, so a neuropod server's specs are read
        from Triton's ``ModelConfig`` call; a server without that call is read from its
        metadata alone.

        Raises:
            PackageError: no answer, or an error answer (timeouts raise ``InferenceTimeout``).
        """
        request = service_pb2.ModelMetadataRequest(name=self._url.model, version=self._url.version)
        reply = self._call(self._stub.ModelMetadata, request, loading=True)
        metadata: dict[str, Any] = {
            "name": reply.name,
            "platform": reply.platform,
            "inputs": [_tensor_metadata(tensor) for tensor in reply.inputs],
            "outputs": [_tensor_metadata(tensor) for tensor in reply.outputs],
        }
        try:
            config = self._stub.ModelConfig(
                service_pb2.ModelConfigRequest(name=self._url.model, version=self._url.version),
                timeout=self._timeout,
                metadata=self._metadata,
            ).config
        except grpc.RpcError:
            return metadata  # not a neuropod server (or an old one): its metadata will do
        metadata["decoupled"] = config.model_transaction_policy.decoupled
        parameters = {}
        for key in SPEC_PARAMETERS:
            if key in config.parameters:
                text = config.parameters[key].string_value
                try:
                    parameters[key] = text if key == NEUROPOD_PLATFORM else json.loads(text)
                except ValueError:
                    return metadata
        if parameters:
            metadata["parameters"] = parameters
        return metadata

    def infer(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on the server.

        Raises:
            ValidationError: the server refused the request (INVALID_ARGUMENT, RESOURCE_EXHAUSTED).
            PackageError: the server no longer serves the model (NOT_FOUND).
            InferenceTimeout: the timeout ran out (DEADLINE_EXCEEDED).
            InferenceError: the model failed, or the connection did.
        """
        request = InferRequest(dict(inputs), model_name=self._url.model, model_version=self._url.version)
        data = self._call(self._infer, grpc_codec.encode_request(request))
        try:
            outputs = self._outputs(grpc_codec.decode_response(data))
        except ValidationError as exc:  # a ProtocolError, or a string output that is not UTF-8
            raise InferenceError(f"The server's answer for {self._where} breaks the protocol: {exc}") from exc
        return outputs

    def infer_stream(self, inputs: dict[str, np.ndarray]) -> Iterator[dict[str, np.ndarray]]:
        """Run the model on the server over a ``ModelStreamInfer`` call, yielding each response
        as it arrives, until the server flags the last one (``triton_final_response``).

        The request asks for an empty final response, so that the end of a decoupled model's
        stream is seen; that empty response is not yielded. ``timeout`` bounds the whole call.
        Closing the iterator early cancels the call.

        Raises:
            InferenceError: the server answered an error in the stream, or the connection failed.
            ValidationError, PackageError, InferenceTimeout: as ``infer``, for the call's status.
        """
        request = InferRequest(
            dict(inputs),
            model_name=self._url.model,
            model_version=self._url.version,
            parameters={EMPTY_FINAL_RESPONSE: True},
        )
        call = self._stream(
            iter((grpc_codec.encode_request(request),)), timeout=self._timeout, metadata=self._metadata
        )
        decoupled = self.config.decoupled
        try:
            for data in call:
                try:
                    error, response = grpc_codec.decode_stream_response(data)
                    if error:
                        raise InferenceError(f"The server answered an error for {self._where}: {error}")
                    # A reply without the flag is final, as Triton's C++ client reads it.
                    final = (response.parameters or {}).get(FINAL_RESPONSE, True) is True
                    outputs = None
                    if response.outputs or not final or not decoupled:
                        outputs = self._outputs(response)
                except ValidationError as exc:  # a ProtocolError, or a string output that is not UTF-8
                    raise InferenceError(
                        f"The server's answer for {self._where} breaks the protocol: {exc}"
                    ) from exc
                if outputs is not None:
                    yield outputs
                if final:
                    return
        except grpc.RpcError as exc:
            raise self._error(exc, False) from exc
        finally:
            call.cancel()  # a no-op once the server ended the call; else it stops the model

    def _outputs(self, response: InferResponse) -> dict[str, np.ndarray]:
        # Raw contents are bytes, which numpy views read-only; local models return arrays the
        # caller may write to.
        outputs: dict[str, np.ndarray] = self._conform_outputs(
            {
                tensor.name: tensor.array if tensor.array.flags.writeable else tensor.array.copy()
                for tensor in response.outputs
            }
        )
        return outputs

    def _call(self, method: Any, request: Any, *, loading: bool = False) -> Any:
        try:
            return method(request, timeout=self._timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            raise self._error(exc, loading) from exc

    def _error(self, exc: grpc.RpcError, loading: bool) -> NeuropodError:
        code = exc.code() if isinstance(exc, grpc.Call) else None
        details = exc.details() if isinstance(exc, grpc.Call) else None
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and details == "Deadline Exceeded":
            return timeout_error(self._timeout, self._where)  # our own deadline, not the server's
        name = code.name if code is not None else "UNKNOWN"
        return error_for_code(name, details or str(exc), self._where, loading=loading)

    def close(self) -> None:
        """Close the channel. Idempotent."""
        self._channel.close()


def _tensor_metadata(tensor: Any) -> dict[str, Any]:
    return {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
