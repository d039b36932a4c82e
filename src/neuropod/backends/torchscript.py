"""Backend of platform ``torchscript``: a module saved with ``torch.jit.save``."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import torch

from neuropod.backends.base import Backend
from neuropod.errors import InferenceError, PackageError
from neuropod.package.manifest import sha256_file
from neuropod.package.package import Package
from neuropod.spec.dtypes import STRING

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"

# A custom op library registers its ops process-wide: loading a second copy of the same
# library (from another package) would register them twice.
_loaded_ops: set[str] = set()
_ops_lock = threading.Lock()


class TorchScriptBackend(Backend):
    """Runs a TorchScript module.

    ``forward`` receives the inputs by argument name, or as one ``Dict[str, Tensor]`` when that
    is its only argument; string tensors are passed as ``List[str]``. It may return a dict, a
    tensor (for a model with one output), a tuple in output spec order, a NamedTuple, or a
    tuple of dicts. Numpy arrays become tensors without a copy (read-only arrays are copied,
    since torch tensors are always writable) and CPU outputs become arrays without one.

    With ``visible_gpu`` set and CUDA available, the module runs on that GPU and inputs whose
    ``input_tensor_device`` is ``GPU`` are moved there; otherwise everything runs on the CPU,
    as in the original.
    """

    def __init__(self, package: Package, *, visible_gpu: int | None = None):
        super().__init__(package, visible_gpu=visible_gpu)
        config = package.config
        for op in config.custom_ops:
            _load_custom_op(package, op)
        self.device = _choose_device(visible_gpu)
        path = package.data_dir / MODEL_FILE
        if not path.is_file():
            raise PackageError(f"{package.path}: the TorchScript model 0/data/{MODEL_FILE} is missing")
        try:
            module = torch.jit.load(str(path), map_location=self.device)
        except RuntimeError as exc:
            raise PackageError(f"{package.path}: cannot load 0/data/{MODEL_FILE}: {exc}") from exc
        module.eval()
        # Inference never needs gradients; without them outputs convert to numpy directly.
        for param in module.parameters():
            param.requires_grad_(False)
        self.module = module
        arguments = module.forward.schema.arguments[1:]  # [0] is self
        self._takes_dict = len(arguments) == 1 and str(arguments[0].type).startswith("Dict(str, Tensor)")
        self._string_inputs = frozenset(s.name for s in config.inputs if s.dtype == STRING)
        on_gpu = self.device.type == "cuda"
        self._input_device = {
            name: self.device if on_gpu and device == "GPU" else None
            for name, device in config.input_tensor_device.items()
        }
        self._output_names = [spec.name for spec in config.outputs]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args: dict[str, Any] = {}
        for name, array in inputs.items():
            if name in self._string_inputs:
                args[name] = _to_string_list(name, array)
                continue
            tensor = _to_tensor(array)
            device = self._input_device.get(name)
            args[name] = tensor if device is None else tensor.to(device, non_blocking=True)
        out = self.module(args) if self._takes_dict else self.module(**args)
        return {name: _to_numpy(name, value) for name, value in self._name_outputs(out)}

    def _name_outputs(self, out: Any) -> list[tuple[str, Any]]:
        if isinstance(out, dict):
            return list(out.items())
        if isinstance(out, tuple) and hasattr(out, "_fields"):
            return list(zip(out._fields, out))
        if isinstance(out, tuple) and out and all(isinstance(item, dict) for item in out):
            merged: dict[str, Any] = {}
            for item in out:
                for name, value in item.items():
                    if name in merged:
                        raise InferenceError(f"The model returned output '{name}' more than once")
                    merged[name] = value
            return list(merged.items())
        if isinstance(out, tuple):
            if len(out) != len(self._output_names):
                raise InferenceError(
                    f"The model returned a tuple of {len(out)} values, but the output spec has "
                    f"{len(self._output_names)} tensors ({', '.join(self._output_names)})"
                )
            return list(zip(self._output_names, out))
        if len(self._output_names) != 1:
            raise InferenceError(
                f"The model returned a single {type(out).__name__}, but the output spec has "
                f"{len(self._output_names)} tensors; return a dict or a tuple"
            )
        return [(self._output_names[0], out)]


def _choose_device(visible_gpu: int | None) -> torch.device:
    if visible_gpu is None:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        logger.warning("visible_gpu=%d was requested but CUDA is not available; running on the CPU", visible_gpu)
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if visible_gpu >= count:
        raise PackageError(f"visible_gpu={visible_gpu} was requested, but only {count} GPU(s) are visible")
    return torch.device("cuda", visible_gpu)


def _load_custom_op(package: Package, name: str) -> None:
    path = package.ops_dir / name
    if not path.is_file():
        raise PackageError(f"{package.path}: custom op 0/ops/{name} listed in config.json is missing")
    digest = sha256_file(path)
    with _ops_lock:
        if digest in _loaded_ops:
            return
        try:
            torch.ops.load_library(str(path))
        except OSError as exc:
            raise PackageError(f"{package.path}: cannot load custom op 0/ops/{name}: {exc}") from exc
        _loaded_ops.add(digest)


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    if not array.flags.writeable or any(s < 0 for s in array.strides):
        # torch cannot view read-only memory or negative strides; this is the one copy.
        array = np.array(array)
    return torch.from_numpy(array)


def _to_string_list(name: str, array: np.ndarray) -> list[str]:
    if array.ndim != 1:
        raise InferenceError(
            f"String tensor '{name}' must be 1-D to reach TorchScript as List[str], but has shape {array.shape}"
        )
    return [str(item) for item in array.tolist()]


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        if value.requires_grad:
            value = value.detach()
        if value.device.type != "cpu":
            value = value.cpu()
        try:
            return value.numpy()
        except TypeError as exc:
            raise InferenceError(f"Output '{name}' of dtype {value.dtype} has no numpy equivalent") from exc
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return np.array(value, dtype=str)
    raise InferenceError(
        f"Output '{name}' is a {type(value).__name__}; TorchScript models must return tensors or List[str]"
    )
