"""Backend of platform ``jax``: a function serialized with ``jax.export``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax import export

from neuropod.alignment import ALIGNMENT, aligned_copy, is_aligned
from neuropod.backends.base import Backend
from neuropod.backends.devices import choose_gpu
from neuropod.errors import InferenceError, PackageError
from neuropod.options import NoOptions
from neuropod.package.package import Package

MODEL_FILE = "model.jax"
PARAMS_DIR = "params"

#: XLA's CPU client uses a host buffer in place only when its data is aligned to this.
CPU_ALIGNMENT = ALIGNMENT

# Below this size, handing the numpy array to the jitted call (whose C++ path transfers it) is
# cheaper than a Python-level device_put; above it, device_put's fixed cost is noise.
_DEVICE_PUT_MIN_BYTES = 1 << 20


class JaxBackend(Backend):
    """Runs a ``jax.export.Exported`` function with its stored parameters.

    The function is called as ``fn(params, *inputs)`` (``fn(*inputs)`` without params), the
    inputs in input spec order; every input must be given, except those packaged as
    ``optional_inputs`` (a program was exported for each combination of them). It runs on
    ``jax.devices("gpu")[visible_gpu]`` when ``visible_gpu`` is set and JAX sees a GPU,
    otherwise on the CPU.

    On the CPU, an input of 1 MiB or more whose data is 64-byte aligned reaches the function
    without a copy (``jax.device_put`` aliases it); an unaligned one is copied once into an
    aligned buffer by numpy, which is several times faster than XLA's own copy. Outputs are
    returned as read-only numpy views of JAX's buffers on the CPU, without a copy.

    Threads: XLA sizes its CPU thread pools once per process, from the number of cores; set
    ``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"`` in the
    environment before JAX is first used to run on one thread. There is no per-model setting,
    so this backend takes no thread options.
    """

    load_options = NoOptions

    def __init__(self, package: Package, *, visible_gpu: int | None = None):
        super().__init__(package, visible_gpu=visible_gpu)
        settings = package.backend_config()
        self.device = _choose_device(visible_gpu)
        exported = self._deserialize(MODEL_FILE)
        self._x64: Callable[[], Any] = (
            (lambda: jax.enable_x64(True)) if settings.get("enable_x64") else contextlib.nullcontext
        )
        self._params: tuple[Any, ...] = ()
        if settings.get("has_params"):
            with self._x64():
                self._params = (self._load_params(exported, int(settings.get("num_params", 0))),)
        self._input_names = [spec.name for spec in package.config.inputs]
        output_names = [spec.name for spec in package.config.outputs]
        self._program = (jax.jit(exported.call), _output_names(exported, output_names))
        # Programs exported for absent optional inputs, by the names of the absent ones.
        self._variants: dict[frozenset[str], tuple[Any, str | list[str]]] = {}
        for variant in settings.get("variants", []):
            program = self._deserialize(variant["file"])
            self._variants[frozenset(variant["missing"])] = (
                jax.jit(program.call),
                _output_names(program, output_names),
            )

    def _deserialize(self, name: str) -> Any:
        path = self.package.data_dir / name
        if not path.is_file():
            raise PackageError(f"{self.package.path}: the exported JAX function 0/data/{name} is missing")
        try:
            exported = export.deserialize(bytearray(path.read_bytes()))
        except Exception as exc:
            raise PackageError(f"{self.package.path}: cannot deserialize 0/data/{name}: {exc}") from exc
        runnable = {"cpu"} if self.device.platform == "cpu" else {"cuda", "rocm"}
        if not runnable & set(exported.platforms):
            raise PackageError(
                f"{self.package.path}: the function was exported for {', '.join(exported.platforms)}, "
                f"which cannot run on {self.device}; package it again with the platforms= it needs"
            )
        return exported

    def _load_params(self, exported: Any, count: int) -> Any:
        params_tree = exported.in_tree.children()[0].children()[0]
        if params_tree.num_leaves != count:
            raise PackageError(
                f"{self.package.path}: the function takes {params_tree.num_leaves} parameter arrays, "
                f"but 0/config.json lists {count}"
            )
        leaves = []
        for i, aval in enumerate(exported.in_avals[:count]):
            path = self.package.data_dir / PARAMS_DIR / f"{i:06d}.npy"
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise PackageError(
                    f"{self.package.path}: cannot read parameter file {path.name}: {exc}"
                ) from exc
            if array.dtype != aval.dtype and array.dtype.itemsize == np.dtype(aval.dtype).itemsize:
                array = array.view(aval.dtype)  # .npy stores bfloat16 and friends as raw bytes ("V2")
            if array.shape != aval.shape or array.dtype != aval.dtype:
                raise PackageError(
                    f"{self.package.path}: parameter file {path.name} holds "
                    f"{array.dtype}{list(array.shape)}, but the function takes {aval.str_short()}"
                )
            leaves.append(to_jax(array, self.device, min_bytes=0))
        return jax.tree_util.tree_unflatten(params_tree, leaves)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            args = [to_jax(inputs[name], self.device) for name in self._input_names]
            call, names = self._program
        except KeyError:
            missing = frozenset(name for name in self._input_names if name not in inputs)
            if missing not in self._variants:
                optional = sorted(set().union(*self._variants)) if self._variants else []
                raise InferenceError(
                    f"JAX model inputs can only be left out when packaged in optional_inputs "
                    f"(here: {', '.join(map(repr, optional)) or 'none'}); missing "
                    f"{', '.join(map(repr, sorted(missing)))}"
                ) from None
            call, names = self._variants[missing]
            args = [
                None if name in missing else to_jax(inputs[name], self.device) for name in self._input_names
            ]
        with jax.default_device(self.device), self._x64():
            out = call(*self._params, *args)
        if isinstance(names, str):
            return {names: np.asarray(out)}
        if isinstance(out, dict):
            return {name: np.asarray(value) for name, value in out.items()}
        return {name: np.asarray(value) for name, value in zip(names, out, strict=True)}


def to_jax(array: np.ndarray, device: Any, min_bytes: int = _DEVICE_PUT_MIN_BYTES) -> Any:
    """Put an input array on ``device``, without a copy on the CPU when its data allows.

    Arrays smaller than ``min_bytes`` are returned as they are, for the jitted call to transfer.
    Larger ones on the CPU are copied into a 64-byte aligned buffer when they are not aligned
    (or not contiguous) and then aliased by ``jax.device_put``, which keeps the buffer alive.

    Args:
        array: the numpy array.
        device: the JAX device to run on.
        min_bytes: the size from which the array is put on the device here.

    Returns:
        A ``jax.Array`` on ``device``, or ``array`` itself when it is small.
    """
    if array.nbytes < min_bytes:
        return array
    if device.platform == "cpu" and not is_aligned(array):
        array = aligned_copy(array)
    return jax.device_put(array, device)


def _choose_device(visible_gpu: int | None) -> Any:
    gpu = choose_gpu(visible_gpu, lambda: len(_gpus()), "JAX")
    return jax.devices("cpu")[0] if gpu is None else _gpus()[gpu]


def _gpus() -> list[Any]:
    try:
        return list(jax.devices("gpu"))
    except RuntimeError:  # JAX raises where it has no GPU platform at all
        return []


def _output_names(exported: Any, spec_names: list[str]) -> str | list[str]:
    """How to name the function's outputs: one name for a single array, else names in order."""
    structure = jax.tree_util.tree_unflatten(exported.out_tree, range(exported.out_tree.num_leaves))
    if isinstance(structure, dict):
        return list(structure)
    if isinstance(structure, (tuple, list)):
        if len(structure) != len(spec_names):
            raise PackageError(
                f"The function returns {len(structure)} arrays, but the output spec has "
                f"{len(spec_names)} tensors"
            )
        return spec_names
    if len(spec_names) != 1:
        raise PackageError(
            f"The function returns one array, but the output spec has {len(spec_names)} tensors"
        )
    return spec_names[0]
