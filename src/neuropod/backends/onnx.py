"""Backend of platform ``onnx``: an ONNX model run by onnxruntime."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from neuropod.backends.base import Backend
from neuropod.backends.custom_ops import op_path
from neuropod.backends.devices import choose_gpu
from neuropod.backends.options import OnnxOptions
from neuropod.errors import InferenceError, ModelClosedError, OptionError, PackageError
from neuropod.package.package import Package
from neuropod.spec.dtypes import BYTES, STRING
from neuropod.spec.elements import as_bytes

MODEL_FILE = "model.onnx"
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

Provider = str | tuple[str, dict[str, Any]]


class OnnxBackend(Backend):
    """Runs an ONNX model with an onnxruntime ``InferenceSession``.

    Numpy arrays go to ``InferenceSession.run`` as they are: onnxruntime reads contiguous CPU
    arrays in place and returns outputs that wrap its own buffers, so neither side is copied
    (measured faster than ``OrtValue``s or IO binding at small and large sizes). String
    tensors go in as numpy unicode arrays and come out as unicode arrays.

    ``bytes`` tensors (an ONNX ``STRING`` spec'd ``bytes``) carry UTF-8 bytes only:
    onnxruntime's Python API converts every string element through Python ``str`` (it reads an
    object array's ``bytes`` as their ``repr``, and cuts numpy ``S`` elements at the first
    NUL), so their elements are decoded on the way in and encoded on the way out, and an
    element that is not UTF-8 fails the call with an ``InferenceError`` naming it.

    Args:
        package: the opened package.
        visible_gpu: ``None`` for the CPU; else the CUDA device to run on (when onnxruntime
            has the CUDA provider; otherwise the CPU, with a warning).
        **options: see ``OnnxOptions``: ``providers``, execution providers in order of
            preference, as onnxruntime takes them (names, or ``(name, options)`` pairs);
            default ``["CPUExecutionProvider"]``, or CUDA first when ``visible_gpu`` is set. A
            CUDA provider given by name alone runs on ``visible_gpu``. ``intra_op_threads``:
            threads that one operator may use (``None`` or 0: onnxruntime's default, one per
            core); ``inter_op_threads``: threads that run independent operators in parallel
            (``None`` or 0: onnxruntime's default).

    Raises:
        OptionError: a provider is not available, or a thread count is not an int >= 0.
        PackageError: the model is missing, or onnxruntime cannot load it or its custom ops.
    """

    load_options = OnnxOptions

    def __init__(self, package: Package, *, visible_gpu: int | None = None, **options: Any):
        super().__init__(package, visible_gpu=visible_gpu)
        settings: OnnxOptions = OnnxOptions.parse(options)
        session_options = ort.SessionOptions()
        if settings.intra_op_threads is not None:
            session_options.intra_op_num_threads = settings.intra_op_threads
        if settings.inter_op_threads is not None:
            session_options.inter_op_num_threads = settings.inter_op_threads
        # Custom op libraries are registered per session, so each model registers its own.
        for op in package.config.custom_ops:
            library = op_path(package, op)
            try:
                session_options.register_custom_ops_library(str(library))
            except Exception as exc:
                raise PackageError(f"{package.path}: cannot load custom op 0/ops/{op}: {exc}") from exc
        path = package.data_dir / MODEL_FILE
        if not path.is_file():
            raise PackageError(f"{package.path}: the ONNX model 0/data/{MODEL_FILE} is missing")
        chosen = _choose_providers(settings.providers, visible_gpu)
        try:
            self._session: ort.InferenceSession | None = ort.InferenceSession(
                str(path), sess_options=session_options, providers=chosen
            )
        except Exception as exc:
            raise PackageError(f"{package.path}: onnxruntime cannot load 0/data/{MODEL_FILE}: {exc}") from exc
        self._output_names = [spec.name for spec in package.config.outputs]
        self._string_outputs = frozenset(s.name for s in package.config.outputs if s.dtype == STRING)
        self._bytes_inputs = frozenset(s.name for s in package.config.inputs if s.dtype == BYTES)
        self._bytes_outputs = frozenset(s.name for s in package.config.outputs if s.dtype == BYTES)

    @property
    def providers(self) -> list[str]:
        """The execution providers the session uses, in order."""
        return self._session.get_providers() if self._session is not None else []

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self._session
        if session is None:
            raise ModelClosedError(f"The ONNX session of {self.package.path} is closed")
        for name in self._bytes_inputs.intersection(inputs):
            inputs[name] = _decoded(name, inputs[name])
        values = session.run(self._output_names, inputs)
        outputs = dict(zip(self._output_names, values, strict=True))
        for name in self._string_outputs:
            # onnxruntime returns strings as an object array of str.
            outputs[name] = outputs[name].astype(str)
        for name in self._bytes_outputs:
            outputs[name] = as_bytes(outputs[name])
        return outputs

    def close(self) -> None:
        self._session = None


def _decoded(name: str, array: np.ndarray) -> np.ndarray:
    """A bytes input as the object array of str that onnxruntime reads correctly."""
    out = np.empty(array.shape, dtype=object)
    for index, item in np.ndenumerate(array):
        try:
            out[index] = item.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InferenceError(
                f"Tensor '{name}': element {list(index)} is not UTF-8 ({exc.reason} at byte "
                f"{exc.start}); onnxruntime's Python API passes string tensors as UTF-8 text, so "
                f"the bytes inputs of an ONNX model take UTF-8 bytes only"
            ) from None
    return out


def _choose_providers(providers: Sequence[Provider] | None, visible_gpu: int | None) -> list[Provider]:
    available = ort.get_available_providers()
    if providers is None:
        # onnxruntime cannot count the GPUs; CUDA's provider says whether there are any.
        gpu = choose_gpu(
            visible_gpu, lambda: None if CUDA in available else 0, f"onnxruntime without {CUDA}"
        )
        return [CPU] if gpu is None else [(CUDA, {"device_id": gpu}), CPU]
    chosen: list[Provider] = []
    for provider in providers:
        name = provider if isinstance(provider, str) else provider[0]
        if name not in available:
            raise OptionError(
                f"Execution provider {name!r} is not available in this onnxruntime; available: "
                f"{', '.join(available)}"
            )
        if provider == CUDA and visible_gpu is not None:
            provider = (CUDA, {"device_id": visible_gpu})
        chosen.append(provider)
    return chosen
