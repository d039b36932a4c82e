"""Backend of platform ``keras``: a Keras 3 model saved as ``0/data/model.keras``.

The model runs on whichever Keras backend the process uses (``KERAS_BACKEND``, read when
Keras is first imported), called directly in inference mode: no session, no ``predict`` loop.
Tested on the TensorFlow, JAX and PyTorch backends of Keras 3 (the latter two in fresh
processes, since the backend is chosen when Keras is imported). String tensors need the
TensorFlow backend (the others have no string type).

Custom objects (layers, subclassed models) come from the package's code: the modules of
``custom_object_modules`` in ``0/config.json`` are imported from ``0/code`` in a namespace of the
package's own (see ``code_namespace``) before the model loads. Keras finds a custom class by
its registered name (``"package>Class"``) alone, and its global registry outranks any custom
object scope for the layers inside a model, so what the code registers with
``keras.saving.register_keras_serializable`` stays in the global registry only while the model
loads (under the lock of ``CodeNamespace.aliased``); then the registry is as it was. Two
packages may thus ship different classes of one registered name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from neuropod.backends.base import Backend
from neuropod.backends.code_namespace import CodeNamespace, import_code_module
from neuropod.backends.devices import choose_gpu
from neuropod.backends.options import KerasOptions
from neuropod.errors import InferenceError, OptionError, PackageError
from neuropod.package.package import Package
from neuropod.spec.elements import BytesConformer

MODEL_FILE = "model.keras"

#: The key of ``0/config.json`` listing the modules to import before loading the model.
CUSTOM_OBJECT_MODULES = "custom_object_modules"


@dataclass(frozen=True)
class ModelIO:
    """How a Keras model takes its inputs and names its outputs.

    Args:
        input_kind: ``"dict"``, ``"list"`` or ``"single"``: the structure the model is called with.
        inputs: the inputs' names (dict keys or ``keras.Input`` names), with their tensors.
        outputs: the outputs' names (dict keys or output layer names), with their tensors.
    """

    input_kind: str
    inputs: tuple[tuple[str, Any], ...]
    outputs: tuple[tuple[str, Any], ...]

    @property
    def input_names(self) -> list[str]:
        """The input names, in the order the model takes them."""
        return [name for name, _ in self.inputs]

    @property
    def output_names(self) -> list[str]:
        """The output names, in the order the model returns them."""
        return [name for name, _ in self.outputs]


def model_io(model: Any) -> ModelIO | None:
    """The inputs and outputs of a functional or Sequential model; ``None`` for a subclassed one."""
    try:
        structure = model.input
    except (AttributeError, ValueError):
        # A Sequential model has flat ``inputs`` only; a subclassed model has neither.
        structure = getattr(model, "inputs", None)
        if structure is None:
            return None
        if len(structure) == 1:
            structure = structure[0]
    if isinstance(structure, Mapping):
        kind, inputs = "dict", tuple(structure.items())
    elif isinstance(structure, (list, tuple)):
        kind, inputs = "list", tuple((t.name, t) for t in structure)
    else:
        kind, inputs = "single", ((structure.name, structure),)
    try:
        out_structure = model.output
    except (AttributeError, ValueError):
        out_structure = model.outputs
    if isinstance(out_structure, Mapping):
        return ModelIO(kind, inputs, tuple(out_structure.items()))
    flat = list(out_structure) if isinstance(out_structure, (list, tuple)) else [out_structure]
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != len(flat):
        # Sequential models have no output_names: their one output is the last layer's.
        names = [model.layers[-1].name] if len(flat) == 1 and model.layers else [t.name for t in flat]
    return ModelIO(kind, inputs, tuple(zip(names, flat, strict=True)))


def match_names(
    spec_names: Sequence[str], model_names: Sequence[str], direction: str
) -> dict[str, str] | None:
    """Map spec names to model names: the same names, or one tensor on each side.

    Outputs may be a subset of the model's. Returns ``None`` when the names cannot be matched.
    """
    if len(spec_names) == 1 and len(model_names) == 1:
        return {spec_names[0]: model_names[0]}
    same = (
        set(spec_names) == set(model_names) if direction == "input" else set(spec_names) <= set(model_names)
    )
    return {name: name for name in spec_names} if same else None


class KerasBackend(Backend):
    """Runs a Keras 3 model, called directly (``model(inputs, training=False)``).

    Inputs reach the model in its own structure (a dict, a list in its input order, or one
    tensor), matched by name to the spec, or positionally when the model has one input. Outputs
    are named by the model's output dict keys or output layer names (the one output of a model
    with a single output takes the spec's name). On the TensorFlow backend inputs reach the model
    as in the ``tensorflow`` backend (a view of 64-byte aligned arrays, else one copy) and
    outputs are read-only views; other backends convert numpy inputs themselves.

    Args:
        package: the opened package.
        visible_gpu: ``None`` for the CPU, else the index of the GPU to run on (when Keras's
            backend sees one; else the CPU).
        **options: see ``KerasOptions``: ``intra_op_threads``, on the TensorFlow backend only,
            TensorFlow's process-wide op thread count, which can only be chosen before
            TensorFlow first runs (0: TensorFlow decides); ``inter_op_threads``: how many ops
            may run at once, likewise.

    Raises:
        PackageError: ``0/data/model.keras`` is missing or cannot be loaded, or its inputs and
            outputs do not match the spec; a custom object module is neither in the package's
            code nor installed, or importing it raised (its exception is the ``__cause__``).
        BackendUnavailable: a custom object module imports a module that is not installed.
        OptionError: a thread count on a backend other than TensorFlow, or one that can no
            longer be applied; ``visible_gpu`` names a GPU that does not exist.
    """

    load_options = KerasOptions

    def __init__(self, package: Package, *, visible_gpu: int | None = None, **options: Any):
        super().__init__(package, visible_gpu=visible_gpu)
        settings: KerasOptions = KerasOptions.parse(options)
        intra_op_threads, inter_op_threads = settings.intra_op_threads, settings.inter_op_threads
        self._namespace: CodeNamespace | None = None
        self.keras_backend = keras.backend.backend()
        self._convert_in: Callable[[np.ndarray], Any] = _unchanged
        self._convert_out: Callable[[Any], np.ndarray] = keras.ops.convert_to_numpy
        if self.keras_backend == "jax":
            self._convert_out = np.asarray  # a read-only view of the output buffer on the CPU
        elif self.keras_backend == "torch":
            self._convert_out = _torch_to_numpy
        if self.keras_backend == "tensorflow":
            from neuropod.backends import tf_interop

            tf_interop.set_process_threads(intra_op_threads, inter_op_threads)
            tf_interop.load_custom_ops(package)
            self._convert_in, self._convert_out = tf_interop.to_eager, tf_interop.eager_to_numpy
        elif intra_op_threads is not None or inter_op_threads is not None:
            raise OptionError(
                f"intra_op_threads and inter_op_threads apply to the TensorFlow backend of Keras, "
                f"but this process runs Keras on '{self.keras_backend}' (KERAS_BACKEND)"
            )
        elif package.config.custom_ops:
            raise PackageError(
                f"{package.path}: custom ops are TensorFlow libraries and need the TensorFlow "
                f"backend of Keras, but this process runs Keras on '{self.keras_backend}'"
            )
        self._device = _device_for(visible_gpu)
        # TensorFlow's strings come out as bytes: text for string outputs, as they are for bytes.
        self._conform_outputs = BytesConformer(package.config.outputs, "output")
        path = package.data_dir / MODEL_FILE
        if not path.is_file():
            raise PackageError(f"{package.path}: the Keras model 0/data/{MODEL_FILE} is missing")
        try:
            self.model = self._load(path, _custom_object_modules(package))
            self._match_spec()
        except BaseException:
            self.close()
            raise

    def _match_spec(self) -> None:
        config = self.package.config
        spec_inputs = [spec.name for spec in config.inputs]
        spec_outputs = [spec.name for spec in config.outputs]
        io = model_io(self.model)
        if io is None:
            # A subclassed model: called with a dict of the spec's names, or its one tensor.
            self._kind = "dict" if len(spec_inputs) > 1 else "single"
            self._inputs = {name: name for name in spec_inputs}
            self._input_order = spec_inputs
            self._model_outputs = spec_outputs
            self._outputs = {name: name for name in spec_outputs}
            return
        self._kind = io.input_kind
        self._model_outputs = io.output_names
        inputs = match_names(spec_inputs, io.input_names, "input")
        outputs = match_names(spec_outputs, io.output_names, "output")
        if inputs is None or outputs is None:
            raise PackageError(
                f"{self.package.path}: the Keras model takes {io.input_names} and returns "
                f"{io.output_names}, which do not match the spec's inputs {spec_inputs} and "
                f"outputs {spec_outputs}"
            )
        # model name -> spec name, so that inputs can be laid out in the model's order.
        self._inputs = {model: spec for spec, model in inputs.items()}
        self._input_order = io.input_names
        self._outputs = {model: spec for spec, model in outputs.items()}

    def _load(self, path: Path, modules: list[str]) -> Any:
        where = f"{self.package.path}: cannot load 0/data/{MODEL_FILE}"
        if not modules:
            with _scope(self._device):
                return _load_model(path, where, _SHIP_CODE_HINT)
        self._namespace = namespace = CodeNamespace([self.package.code_dir])
        imports = f"{self.package.path}: custom_object_modules"
        hint = f"the package's custom_object_modules {modules} do not register it"
        with namespace.aliased(), _registered(namespace, modules, imports), _scope(self._device):
            return _load_model(path, where, hint)

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        convert = self._convert_in
        if self._kind == "dict":
            args: Any = {
                model: convert(inputs[spec]) for model, spec in self._inputs.items() if spec in inputs
            }
        else:
            missing = [spec for spec in self._inputs.values() if spec not in inputs]
            if missing:
                raise InferenceError(
                    f"The Keras model needs every input; missing: {', '.join(map(repr, missing))}"
                )
            values = [convert(inputs[self._inputs[model]]) for model in self._input_order]
            args = values[0] if self._kind == "single" else values
        with _scope(self._device):
            out = self.model(args, training=False)
        if isinstance(out, Mapping):
            items = list(out.items())
        elif isinstance(out, (list, tuple)):
            items = list(zip(self._model_outputs, out, strict=True))
        else:
            items = [(self._model_outputs[0], out)]
        outputs: dict[str, np.ndarray] = self._conform_outputs(
            {self._outputs[name]: self._convert_out(value) for name, value in items if name in self._outputs}
        )
        return outputs

    def close(self) -> None:
        if self._namespace is not None:
            self._namespace.close()


_SHIP_CODE_HINT = (
    "package the code that registers the model's custom classes with "
    "create_keras_neuropod(code_path_spec=..., custom_object_modules=[...])"
)


def _custom_object_modules(package: Package) -> list[str]:
    modules = package.backend_config().get(CUSTOM_OBJECT_MODULES, [])
    if not isinstance(modules, list) or not all(isinstance(name, str) for name in modules):
        raise PackageError(
            f"{package.path}: {CUSTOM_OBJECT_MODULES} in 0/config.json must be a list of module "
            f"names, got {modules!r}"
        )
    return modules


@contextlib.contextmanager
def _registered(namespace: CodeNamespace, modules: list[str], where: str) -> Iterator[None]:
    """Import the modules; take what the package's code registered out of the registry on exit.

    Registrations by modules outside the code (installed ones) stay, as those modules stay imported.
    """
    registry = keras.saving.get_custom_objects()
    before = dict(registry)
    try:
        for name in modules:
            import_code_module(namespace, name, where)
        yield
    finally:
        for key, obj in list(registry.items()):
            if before.get(key) is not obj and namespace.defines(obj):
                if key in before:
                    registry[key] = before[key]
                else:
                    del registry[key]


def _load_model(path: Path, where: str, unregistered_hint: str) -> Any:
    try:
        return keras.saving.load_model(str(path), compile=False)
    except (ValueError, TypeError, OSError, KeyError) as exc:
        if "Could not locate" in str(exc):  # a class or function Keras has no registration for
            where = f"{where} ({unregistered_hint})"
        raise PackageError(f"{where}: {exc}") from exc


def _unchanged(array: np.ndarray) -> np.ndarray:
    # Keras's non-TensorFlow backends convert numpy arrays themselves.
    return array


def _torch_to_numpy(tensor: Any) -> np.ndarray:
    # Keras's own conversion goes through np.array(tensor), which warns under numpy 2.
    result: np.ndarray = tensor.detach().cpu().numpy()
    return result


def _device_for(visible_gpu: int | None) -> str | None:
    gpus = _gpus()
    gpu = choose_gpu(visible_gpu, lambda: len(gpus), "Keras")
    if gpu is None:
        return "cpu:0" if gpus else None
    return f"gpu:{gpu}"


def _gpus() -> Sequence[Any]:
    if keras.backend.backend() == "torch":  # Keras has no device listing for torch
        import torch

        return range(torch.cuda.device_count())
    try:
        devices: Sequence[Any] = keras.distribution.list_devices("gpu")
        return devices
    except RuntimeError:  # JAX raises where it has no GPU platform at all
        return []


def _scope(device: str | None) -> Any:
    return contextlib.nullcontext() if device is None else keras.device(device)
