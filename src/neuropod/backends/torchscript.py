"""Backend of platform ``torchscript``: a module saved with ``torch.jit.save``."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from neuropod.backends.base import Backend
from neuropod.backends.custom_ops import load_custom_ops, mapped_files
from neuropod.backends.devices import choose_gpu
from neuropod.backends.options import TorchScriptOptions
from neuropod.errors import InferenceError, OptionError, PackageError
from neuropod.package.package import Package
from neuropod.packagers.torchscript import NO_BYTES
from neuropod.spec.dtypes import BYTES, STRING
from neuropod.spec.tensor_spec import refuse_dtypes

MODEL_FILE = "model.pt"


class TorchScriptBackend(Backend):
    """Runs a TorchScript module.

    ``forward`` receives the inputs by argument name, or as one ``Dict[str, Tensor]`` when that
    is its only argument; string tensors (1-D) are passed as ``List[str]``. It may return a
    dict, a tensor or ``List[str]`` (for a model with one output), a tuple in output spec
    order, a NamedTuple, or a tuple of dicts. Numpy arrays become tensors without a copy
    (read-only and negative-stride arrays are copied, since torch cannot view them) and CPU
    outputs become arrays without one. The module runs without autograd.

    ``intra_op_threads`` and ``inter_op_threads`` set torch's thread pools. torch has one pool
    of each per process, so they apply to every torch model in it; the inter-op pool can only be
    sized before torch first uses it (a different size afterwards is an ``OptionError``).

    With ``visible_gpu`` set and CUDA available, the module runs on that GPU and inputs whose
    ``input_tensor_device`` is ``GPU`` are moved there; otherwise everything runs on the CPU,
    as in the original, and a warning is logged.

    Custom op libraries listed in the config are loaded before the module, once per process
    (a library whose bytes were already loaded, from any path, is not loaded again).

    Args:
        package: the opened package.
        visible_gpu: ``None`` for the CPU, else the index of the GPU to run on.
        **options: see ``TorchScriptOptions``.

    Raises:
        OptionError: an option is unknown or invalid, or ``visible_gpu`` is not a visible GPU.
        PackageError: the module or a custom op is missing or cannot be loaded.
    """

    load_options = TorchScriptOptions

    def __init__(self, package: Package, *, visible_gpu: int | None = None, **options: Any):
        super().__init__(package, visible_gpu=visible_gpu)
        settings: TorchScriptOptions = TorchScriptOptions.parse(options)
        _set_threads(settings.intra_op_threads, settings.inter_op_threads)
        config = package.config
        try:
            refuse_dtypes((*config.inputs, *config.outputs), [BYTES], NO_BYTES)
        except PackageError as exc:
            raise PackageError(f"{package.path}: {exc}") from None
        load_custom_ops(
            package,
            "torch",
            torch.ops.load_library,
            (OSError, RuntimeError),
            loaded_elsewhere=lambda: [*getattr(torch.ops, "loaded_libraries", ()), *mapped_files()],
        )
        gpu = choose_gpu(visible_gpu, _count_gpus, "torch")
        self.device = torch.device("cpu") if gpu is None else torch.device("cuda", gpu)
        path = package.data_dir / MODEL_FILE
        if not path.is_file():
            raise PackageError(f"{package.path}: the TorchScript model 0/data/{MODEL_FILE} is missing")
        try:
            with warnings.catch_warnings():
                # torch deprecates TorchScript in favour of torch.export; a package of platform
                # torchscript has no other way to run, so the warning would only be noise.
                warnings.filterwarnings("ignore", r"`torch\.jit\.load` is", DeprecationWarning)
                module = torch.jit.load(str(path), map_location=self.device)  # type: ignore[no-untyped-call]
        except RuntimeError as exc:
            raise PackageError(f"{package.path}: cannot load 0/data/{MODEL_FILE}: {exc}") from exc
        module.eval()
        # Inference never needs gradients: with frozen parameters autograd records nothing,
        # which is cheaper per call than entering torch.no_grad().
        for param in module.parameters():
            param.requires_grad_(False)
        self.module = module
        arguments = module.forward.schema.arguments[1:]  # [0] is self
        self._takes_dict = len(arguments) == 1 and _is_str_dict(arguments[0].type)
        self._arg_names = tuple(arg.name for arg in arguments)
        # Spec inputs that forward cannot take; checked per call only when there are any.
        spec_names = frozenset(spec.name for spec in config.inputs)
        self._not_arguments = frozenset() if self._takes_dict else spec_names - set(self._arg_names)
        self._string_inputs = frozenset(s.name for s in config.inputs if s.dtype == STRING)
        self._on_gpu = self.device.type == "cuda"
        self._input_device = {
            name: self.device
            for name, device in config.input_tensor_device.items()
            if self._on_gpu and device == "GPU"
        }
        self._output_names = [spec.name for spec in config.outputs]

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._not_arguments and not self._not_arguments.isdisjoint(inputs):
            unknown = sorted(self._not_arguments.intersection(inputs))
            raise InferenceError(
                f"The TorchScript model's forward({', '.join(self._arg_names)}) has no "
                f"argument(s) {', '.join(map(repr, unknown))}; name forward's arguments after "
                f"the input spec, or take every input as one Dict[str, Tensor]"
            )
        args: dict[str, Any] = {}
        for name, array in inputs.items():
            if name in self._string_inputs:
                args[name] = _to_string_list(name, array)
                continue
            tensor = _to_tensor(array)
            device = self._input_device.get(name)
            args[name] = tensor if device is None else tensor.to(device)
        if self._on_gpu:
            # The device context makes tensors the model creates with device="cuda" land on
            # the chosen GPU rather than on GPU 0.
            with torch.cuda.device(self.device):
                out = self._call(args)
        else:
            out = self._call(args)
        if type(out) is dict:
            return {name: _to_numpy(name, value) for name, value in out.items()}
        return {name: _to_numpy(name, value) for name, value in self._name_outputs(out)}

    def _call(self, args: dict[str, Any]) -> Any:
        if self._takes_dict:
            return self.module(args)
        if len(args) == len(self._arg_names):
            # Positional arguments skip TorchScript's keyword matching.
            return self.module(*[args[name] for name in self._arg_names])
        return self.module(**args)

    def _name_outputs(self, out: Any) -> list[tuple[str, Any]]:
        if isinstance(out, dict):
            return list(out.items())
        if isinstance(out, tuple) and hasattr(out, "_fields"):
            return list(zip(out._fields, out, strict=True))
        if isinstance(out, tuple) and out and all(isinstance(item, dict) for item in out):
            merged: dict[str, Any] = {}
            for item in out:
                for name, value in item.items():
                    if name in merged:
                        raise InferenceError(
                            f"The TorchScript model returned output '{name}' in more than one of its dicts"
                        )
                    merged[name] = value
            return list(merged.items())
        if isinstance(out, tuple):
            if len(out) != len(self._output_names):
                raise InferenceError(
                    f"The TorchScript model returned a tuple of {len(out)} values, but the output "
                    f"spec has {len(self._output_names)} tensors ({', '.join(self._output_names)})"
                )
            return list(zip(self._output_names, out, strict=True))
        if len(self._output_names) != 1:
            raise InferenceError(
                f"The TorchScript model returned a single {type(out).__name__}, but the output "
                f"spec has {len(self._output_names)} tensors; return a dict or a tuple"
            )
        return [(self._output_names[0], out)]


def _is_str_dict(arg_type: Any) -> bool:
    return bool(arg_type.kind() == "DictType" and arg_type.getKeyType().kind() == "StringType")


def _set_threads(intra_op_threads: int | None, inter_op_threads: int | None) -> None:
    if intra_op_threads is not None:
        torch.set_num_threads(intra_op_threads)
    if inter_op_threads is not None and inter_op_threads != torch.get_num_interop_threads():
        try:
            torch.set_num_interop_threads(inter_op_threads)
        except RuntimeError:
            raise OptionError(
                f"inter_op_threads={inter_op_threads} cannot be applied: torch's inter-op pool "
                f"already runs {torch.get_num_interop_threads()} threads in this process (it can "
                f"only be sized before torch first uses it)"
            ) from None


def _count_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    if array.flags.writeable:
        try:
            return torch.from_numpy(array)
        except ValueError:
            pass  # negative strides
    # torch cannot view read-only memory or negative strides; this is the one copy.
    return torch.from_numpy(np.array(array))


def _to_string_list(name: str, array: np.ndarray) -> list[str]:
    if array.ndim != 1:
        raise InferenceError(
            f"String tensor '{name}' must be 1-D to reach TorchScript as List[str], "
            f"but has shape {array.shape}"
        )
    return [str(item) for item in array.tolist()]


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        try:
            # A view of the tensor's memory; the array keeps the tensor alive through its base.
            return value.numpy()
        except (RuntimeError, TypeError):
            pass  # requires grad, not on the CPU, or no numpy dtype: take the slow path
        value = value.detach().cpu()
        try:
            array: np.ndarray = value.numpy()
            return array
        except TypeError as exc:
            raise InferenceError(f"Output '{name}' of dtype {value.dtype} has no numpy equivalent") from exc
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return np.array(value, dtype=str)
    raise InferenceError(
        f"Output '{name}' is a {type(value).__name__}; TorchScript models must return tensors or List[str]"
    )
