"""An inference request and its response as data, whatever wire format carried them.

``neuropod.protocol.http_codec`` reads and writes these from and to JSON bodies (with the
binary tensor extension), ``neuropod.protocol.grpc_codec`` from and to ``ModelInfer``
messages; servers and clients only ever handle the objects:

- ``InferRequest``: the inputs, each an array or a ``SharedMemoryInput`` (a reference into a
  region that only a server can resolve), and the ``RequestedOutput`` list (``None``: every
  output the model produces) with each output's parameters.
- ``InferResponse``: the ``OutputTensor`` list, each sent inline, as binary data, or written
  to a shared-memory region.

``respond`` builds a response from a model's outputs as the protocol says: the outputs asked
for, else every output the model produced.

>>> request = InferRequest({"x": np.ones(2, np.float32)}, outputs=[RequestedOutput("y")])
>>> response = respond(request, {"y": np.zeros(2, np.float32), "z": np.ones(1)}, "m")
>>> [tensor.name for tensor in response.outputs]
['y']
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from neuropod.protocol.classification import top_classes
from neuropod.protocol.datatypes import BYTES, array_datatype
from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.keys import SHARED_MEMORY_REGION

#: The version of every model a neuropod server serves: packages are not versioned.
VERSION = "1"


class SharedMemoryInput:
    """An input whose data lies in a registered shared-memory region.

    Args:
        datatype: the protocol datatype.
        shape: the shape.
        parameters: the tensor's parameters (``shared_memory_region``, ``..._byte_size``,
            ``..._offset``), checked when the region is looked up.
    """

    __slots__ = ("datatype", "parameters", "shape")

    def __init__(self, datatype: str, shape: tuple[int, ...], parameters: dict[str, Any]):
        self.datatype = datatype
        self.shape = shape
        self.parameters = parameters

    def __repr__(self) -> str:
        return f"SharedMemoryInput({self.datatype!r}, {self.shape!r}, {self.parameters!r})"


class RequestedOutput:
    """An output a request asks for.

    Args:
        name: the output's name.
        binary: send it as binary data (``None``: as the request's ``binary_data_output`` says).
        parameters: its parameters as sent (a shared-memory region to write it to...).
        class_count: send its top classes instead of its values (Triton's classification
            extension, see ``neuropod.protocol.classification``); 0: its values.
    """

    __slots__ = ("binary", "class_count", "name", "parameters")

    def __init__(
        self,
        name: str,
        binary: bool | None = None,
        parameters: dict[str, Any] | None = None,
        class_count: int = 0,
    ):
        self.name = name
        self.binary = binary
        self.parameters = parameters if parameters is not None else {}
        self.class_count = class_count

    def __repr__(self) -> str:
        counted = f", class_count={self.class_count!r}" if self.class_count else ""
        return (
            f"RequestedOutput({self.name!r}, binary={self.binary!r}, parameters={self.parameters!r}{counted})"
        )


class InferRequest:
    """An inference request.

    Args:
        inputs: input name -> array, or ``SharedMemoryInput`` for data in a region.
        outputs: the outputs asked for, in order (``None``: every output the model produces).
        id: the request's id, echoed in the response (``None``: none).
        binary_data_output: send outputs as binary data unless an output says otherwise.
        parameters: the request's other parameters, as sent.
        model_name: the model, where the wire format carries it (gRPC).
        model_version: its version (``""``: any).
    """

    __slots__ = ("binary_data_output", "id", "inputs", "model_name", "model_version", "outputs", "parameters")

    def __init__(
        self,
        inputs: dict[str, np.ndarray | SharedMemoryInput],
        *,
        outputs: list[RequestedOutput] | None = None,
        id: str | None = None,
        binary_data_output: bool = False,
        parameters: dict[str, Any] | None = None,
        model_name: str = "",
        model_version: str = "",
    ):
        self.inputs = inputs
        self.outputs = outputs
        self.id = id
        self.binary_data_output = binary_data_output
        self.parameters = parameters if parameters is not None else {}
        self.model_name = model_name
        self.model_version = model_version

    def check_outputs(self, names: Collection[str], model: str) -> None:
        """Check that every requested output is one of the model's.

        Args:
            names: the model's output names.
            model: its name, for messages.

        Raises:
            ProtocolError: an output is not the model's.
        """
        for output in self.outputs or ():
            if output.name not in names:
                raise ProtocolError(
                    f"Output '{output.name}' is not an output of model '{model}' "
                    f"(outputs: {', '.join(names)})"
                )


class OutputTensor:
    """An output in a response.

    Args:
        name: its name.
        array: its value (its shape is sent even when its data is in shared memory).
        datatype: the protocol datatype to send (``None``: the array's).
        binary: send the data as binary rather than inline JSON (HTTP only; gRPC always
            sends raw contents).
        shared_memory: the parameters of the region the data was written to, or ``None``.
    """

    __slots__ = ("array", "binary", "datatype", "name", "shared_memory")

    def __init__(
        self,
        name: str,
        array: np.ndarray,
        datatype: str | None = None,
        binary: bool = False,
        shared_memory: dict[str, Any] | None = None,
    ):
        self.name = name
        self.array = array
        self.datatype = datatype if datatype is not None else array_datatype(array)
        self.binary = binary
        self.shared_memory = shared_memory

    def __repr__(self) -> str:
        return f"OutputTensor({self.name!r}, datatype={self.datatype!r}, shape={list(self.array.shape)})"


class InferResponse:
    """The response to an inference request.

    Args:
        outputs: the outputs, in order.
        model_name: the model that answered.
        model_version: its version.
        id: the request's id (``None``: it had none).
        parameters: the response's parameters (``triton_final_response`` on a gRPC stream).
    """

    __slots__ = ("id", "model_name", "model_version", "outputs", "parameters")

    def __init__(
        self,
        outputs: list[OutputTensor],
        model_name: str = "",
        model_version: str = VERSION,
        id: str | None = None,
        parameters: dict[str, Any] | None = None,
    ):
        self.outputs = outputs
        self.model_name = model_name
        self.model_version = model_version
        self.id = id
        self.parameters = parameters

    def arrays(self) -> dict[str, np.ndarray]:
        """Output name -> array."""
        return {tensor.name: tensor.array for tensor in self.outputs}


def respond(
    request: InferRequest,
    outputs: Mapping[str, np.ndarray],
    model: str,
    datatypes: Mapping[str, str] | None = None,
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
    batched: bool = False,
) -> InferResponse:
    """The response to a request, from the outputs its model produced.

    Without ``outputs`` in the request every output the model produced comes back, in the
    model's order; otherwise the outputs asked for, in the order asked. Outputs that name a
    shared-memory region are marked so; the caller writes them there.

    Args:
        request: the request.
        outputs: what the model returned.
        model: the model's name, for the response and messages.
        datatypes: output name -> datatype to send (the spec's), else the arrays' own.
        labels: output name -> its class labels, for outputs asked for with a class count.
        batched: the model batches (its ``max_batch_size`` > 0): classification ranks each row
            of dim 0 on its own.

    Returns:
        The response.

    Raises:
        ProtocolError: an output asked for is not among those the model produced (answered
            400 / ``INVALID_ARGUMENT``: a model may leave optional outputs out, so it is the
            request that cannot be answered as asked), or one asked for with a class count
            cannot be ranked.
    """
    default = request.binary_data_output
    types = datatypes if datatypes is not None else {}
    if request.outputs is None:
        every = [OutputTensor(name, array, types.get(name), default) for name, array in outputs.items()]
        return InferResponse(every, model, VERSION, request.id)
    tensors: list[OutputTensor] = []
    for wanted in request.outputs:
        name = wanted.name
        produced = outputs.get(name)
        if produced is None:
            raise ProtocolError(
                f"Output '{name}' was requested, but model '{model}' did not produce it for this "
                f"request (it produced: {', '.join(outputs) or 'nothing'}); leave 'outputs' out "
                f"to get every output it produced"
            )
        parameters = wanted.parameters
        region = parameters if SHARED_MEMORY_REGION in parameters else None
        binary = default if wanted.binary is None else wanted.binary
        if wanted.class_count:
            classes = (labels or {}).get(name)
            ranked = top_classes(produced, wanted.class_count, classes, batched=batched)
            tensors.append(OutputTensor(name, ranked, BYTES, binary))
            continue
        tensors.append(OutputTensor(name, produced, types.get(name), binary, region))
    return InferResponse(tensors, model, VERSION, request.id)


__all__ = [
    "VERSION",
    "InferRequest",
    "InferResponse",
    "OutputTensor",
    "RequestedOutput",
    "SharedMemoryInput",
    "respond",
]
