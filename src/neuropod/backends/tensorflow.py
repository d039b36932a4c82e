"""Backend of platform ``tensorflow``: a TF1-style graph (``0/data/model.pb``) or a SavedModel.

Graphs run in a ``tf.compat.v1.Session``. Measured with TF 2.21 on the addition model, a
session call costs about 190 us, against about 550 us for the same graph as a pruned
``wrap_function`` (whose arguments must also be converted to tensors first, which copies them:
see ``tf_interop``). The session also feeds aligned inputs without a copy and takes its thread
counts per model. SavedModels run through their ``serving_default`` signature, in eager mode:
as fast as the same SavedModel in a session (about 186 us each), without the deprecated TF1
loader, but with TensorFlow's process-wide thread pools.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from neuropod.backends.base import Backend
from neuropod.backends.options import TensorFlowOptions
from neuropod.backends.tf_interop import (
    device_for,
    eager_to_numpy,
    load_custom_ops,
    set_process_threads,
    to_eager,
)
from neuropod.errors import PackageError
from neuropod.package.package import Package
from neuropod.spec.elements import BytesConformer

GRAPH_FILE = "model.pb"
SAVED_MODEL_DIR = "savedmodel"
SIGNATURE = "serving_default"


class TensorFlowBackend(Backend):
    """Runs a frozen graph or GraphDef (with ``0/config.json``) or a SavedModel.

    Custom ops in ``0/ops`` are loaded before the model. With ``visible_gpu`` set and a GPU
    visible to TensorFlow, the model runs on that GPU (ops without a GPU kernel fall back to the
    CPU); otherwise on the CPU. ``input_tensor_device`` is not needed: TensorFlow moves inputs
    to the ops that consume them.

    Copies (see ``tf_interop``): an input whose data is 64-byte aligned and C-contiguous (and,
    for SavedModels, writeable) reaches TensorFlow without a copy, and every other input is
    copied once (TensorFlow's kernels need the alignment, and numpy aligns to 16 bytes only).
    Outputs are views of TensorFlow's buffers (read-only for SavedModels); ``string`` tensors
    are encoded and decoded (UTF-8), which copies them; ``bytes`` tensors pass as object arrays
    of ``bytes``, exactly.

    Args:
        package: the opened package.
        visible_gpu: ``None`` for the CPU, else the index of the GPU to run on.
        **options: see ``TensorFlowOptions``: ``intra_op_threads``, threads one op may use (0:
            TensorFlow decides), set per model for graphs; for SavedModels it is TensorFlow's
            process-wide setting, which can only be chosen before TensorFlow first runs.
            ``inter_op_threads``: ops that may run at once, per model or process-wide likewise.

    Raises:
        PackageError: the model, its settings or a custom op is missing or cannot be loaded.
        OptionError: a thread count is invalid or can no longer be applied, or ``visible_gpu``
            names a GPU that does not exist.
    """

    load_options = TensorFlowOptions

    def __init__(self, package: Package, *, visible_gpu: int | None = None, **options: Any):
        super().__init__(package, visible_gpu=visible_gpu)
        settings: TensorFlowOptions = TensorFlowOptions.parse(options)
        intra_op_threads, inter_op_threads = settings.intra_op_threads, settings.inter_op_threads
        saved_model = package.data_dir / SAVED_MODEL_DIR
        if saved_model.is_dir():
            # Must come before anything that may start TensorFlow's eager runtime.
            set_process_threads(intra_op_threads, inter_op_threads)
        load_custom_ops(package)
        device = device_for(visible_gpu)
        self._conform_outputs = BytesConformer(package.config.outputs, "output")
        self._runner: _GraphRunner | _SavedModelRunner
        if saved_model.is_dir():
            self._runner = _SavedModelRunner(package, device)
        elif (package.data_dir / GRAPH_FILE).is_file():
            self._runner = _GraphRunner(package, device, intra_op_threads, inter_op_threads)
        else:
            raise PackageError(
                f"{package.path}: a tensorflow package needs 0/data/{GRAPH_FILE} (a GraphDef) or "
                f"0/data/{SAVED_MODEL_DIR}/ (a SavedModel); neither exists"
            )

    def infer(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = self._conform_outputs(self._runner.run(inputs))
        return outputs

    def close(self) -> None:
        self._runner.close()


def tensor_name(node: str) -> str:
    """A graph tensor name: ``"x"`` means the node's first output, ``"x:0"``."""
    return node if ":" in node else f"{node}:0"


class _GraphRunner:
    """A GraphDef imported into its own graph and run by a ``Session``."""

    def __init__(
        self,
        package: Package,
        device: str | None,
        intra_op_threads: int | None,
        inter_op_threads: int | None,
    ):
        where = f"{package.path}: 0/config.json"
        settings = package.backend_config()
        mapping = settings.get("node_name_mapping")
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise PackageError(
                f"{where} must map each tensor name to a graph node in 'node_name_mapping', got {mapping!r}"
            )
        init_ops = settings.get("init_op_names", [])
        if not isinstance(init_ops, list) or not all(isinstance(op, str) for op in init_ops):
            raise PackageError(f"{where}: 'init_op_names' must be a list of op names, got {init_ops!r}")
        graph_def = _read_graph_def(package)
        for node in graph_def.node:
            # Placement is decided at load (visible_gpu), not by the machine that froze the graph.
            node.device = ""
        self.graph = tf.Graph()
        with self.graph.as_default(), tf.device(device or ""):
            tf.compat.v1.import_graph_def(graph_def, name="")
        config = package.config
        self._inputs = {spec.name: self._tensor(package, mapping, spec.name) for spec in config.inputs}
        self._output_names = [spec.name for spec in config.outputs]
        self._fetches = [self._tensor(package, mapping, name) for name in self._output_names]
        session_config = tf.compat.v1.ConfigProto(
            allow_soft_placement=True,
            intra_op_parallelism_threads=intra_op_threads or 0,
            inter_op_parallelism_threads=inter_op_threads or 0,
        )
        if device is None or device.startswith("/CPU"):
            session_config.device_count["GPU"] = 0
        self.session = tf.compat.v1.Session(graph=self.graph, config=session_config)
        self._callables: dict[tuple[str, ...], Callable[..., Sequence[Any]]] = {}
        if init_ops:
            try:
                self.session.run([op.split(":")[0] for op in init_ops])
            except (tf.errors.OpError, ValueError, KeyError) as exc:
                self.session.close()
                raise PackageError(f"{package.path}: running init_op_names {init_ops} failed: {exc}") from exc

    def _tensor(self, package: Package, mapping: Mapping[str, str], name: str) -> tf.Tensor:
        node = mapping.get(name)
        if node is None:
            raise PackageError(
                f"{package.path}: 0/config.json's node_name_mapping has no node for tensor '{name}'"
            )
        try:
            return self.graph.get_tensor_by_name(tensor_name(node))
        except (KeyError, ValueError) as exc:
            raise PackageError(
                f"{package.path}: tensor '{name}' maps to '{node}', which is not in the graph: {exc}"
            ) from None

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = tuple(inputs)
        call = self._callables.get(names)
        if call is None:
            # A callable skips run()'s per-call parsing of feeds and fetches; one per input set,
            # since the spec lets callers leave inputs out.
            call = self.session.make_callable(self._fetches, [self._inputs[n] for n in names])
            self._callables[names] = call
        values = call(*inputs.values())
        # Scalars come back as numpy scalars (or bytes), which asarray makes 0-d arrays.
        return {name: np.asarray(value) for name, value in zip(self._output_names, values, strict=True)}

    def close(self) -> None:
        self._callables.clear()
        self.session.close()


def _read_graph_def(package: Package) -> Any:
    path = package.data_dir / GRAPH_FILE
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(path.read_bytes())
    except (DecodeError, OSError) as exc:
        raise PackageError(f"{package.path}: 0/data/{GRAPH_FILE} is not a GraphDef: {exc}") from exc
    return graph_def


class _SavedModelRunner:
    """A SavedModel run eagerly through its ``serving_default`` signature."""

    def __init__(self, package: Package, device: str | None):
        path = package.data_dir / SAVED_MODEL_DIR
        self.device = device
        try:
            with tf.device(device or ""):
                self._loaded = tf.saved_model.load(str(path))
        except (OSError, ValueError, tf.errors.OpError) as exc:
            raise PackageError(
                f"{package.path}: cannot load the SavedModel 0/data/{SAVED_MODEL_DIR}: {exc}"
            ) from exc
        signature = self._loaded.signatures.get(SIGNATURE)
        if signature is None:
            raise PackageError(
                f"{package.path}: the SavedModel has no '{SIGNATURE}' signature "
                f"(it has: {', '.join(self._loaded.signatures) or 'none'})"
            )
        accepted = set(signature.structured_input_signature[1])
        returned = set(signature.structured_outputs)
        config = package.config
        missing_in = [spec.name for spec in config.inputs if spec.name not in accepted]
        missing_out = [spec.name for spec in config.outputs if spec.name not in returned]
        if missing_in or missing_out:
            raise PackageError(
                f"{package.path}: the '{SIGNATURE}' signature (inputs {sorted(accepted)}, outputs "
                f"{sorted(returned)}) lacks the spec's tensor(s) {', '.join(missing_in + missing_out)}"
            )
        self._signature = signature
        self._output_names = [spec.name for spec in config.outputs]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = {name: to_eager(array) for name, array in inputs.items()}
        if self.device is None:
            out = self._signature(**tensors)
        else:
            with tf.device(self.device):
                out = self._signature(**tensors)
        return {name: eager_to_numpy(out[name]) for name in self._output_names}

    def close(self) -> None:
        del self._signature, self._loaded
