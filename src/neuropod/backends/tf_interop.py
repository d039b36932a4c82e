"""What the TensorFlow and Keras backends share: tensors in and out, devices, threads, custom ops.

Numpy -> TensorFlow. TensorFlow's kernels assume buffers aligned to 64 bytes
(``EIGEN_MAX_ALIGN_BYTES`` in ``tf.sysconfig.get_compile_flags()``), while numpy aligns its
allocations to 16 bytes only. Measured with TF 2.21 on a 256 MB float32 input:

- ``tf.convert_to_tensor`` (what a signature does with a numpy argument) always copies, aligned
  or not, and slowly (about 70 ms, 1.5x a plain ``memcpy``);
- ``tf.experimental.dlpack.from_dlpack`` wraps the array's memory without a copy (microseconds);
- ``Session.run`` feeds an aligned, C-contiguous array without a copy and copies any other.

So eager inputs (SavedModels, Keras) go through DLPack, after one copy into an aligned buffer
for arrays that are unaligned, not C-contiguous or read-only (DLPack cannot mark a buffer
read-only, and TensorFlow must never be handed the caller's read-only memory). Strings are
encoded to UTF-8 by TensorFlow, which is a copy by nature.

TensorFlow -> numpy. ``np.asarray(eager_tensor)`` is a read-only view of the tensor's buffer;
``EagerTensor.numpy()`` would copy it. ``Session.run`` returns arrays that view TensorFlow's
buffers already. String tensors (``tf.string`` holds bytes) come back as object arrays of
``bytes``: the backends make text of those the spec calls ``string`` (``neuropod.spec.elements``)
and return the others as they are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from neuropod import alignment
from neuropod.backends import custom_ops
from neuropod.backends.devices import choose_gpu
from neuropod.errors import OptionError
from neuropod.package.package import Package

# Element kinds DLPack carries: bool, signed and unsigned integers, floats.
_DLPACK_KINDS = frozenset("biuf")


def is_aligned(array: np.ndarray) -> bool:
    """Whether TensorFlow can use ``array``'s memory as it is (aligned, and writeable: see above)."""
    return bool(array.flags.writeable) and alignment.is_aligned(array)


def to_eager(array: np.ndarray) -> tf.Tensor:
    """An eager tensor holding ``array``: a view of its memory where TensorFlow allows one."""
    if array.dtype.kind not in _DLPACK_KINDS:
        return tf.convert_to_tensor(array)
    if not is_aligned(array):
        array = alignment.aligned_copy(array)
    # The capsule holds a reference to ``array``, released when TensorFlow frees the tensor.
    return tf.experimental.dlpack.from_dlpack(array.__dlpack__())


def eager_to_numpy(tensor: Any) -> np.ndarray:
    """A numpy array of an eager tensor's value: a read-only view, or an object array of
    ``bytes`` for strings."""
    return np.asarray(tensor)


def device_for(visible_gpu: int | None) -> str | None:
    """The TensorFlow device to run on, or ``None`` when there is only the CPU anyway.

    Raises:
        OptionError: ``visible_gpu`` is not the index of a GPU TensorFlow sees.
    """
    gpus = tf.config.list_physical_devices("GPU")
    gpu = choose_gpu(visible_gpu, lambda: len(gpus), "TensorFlow")
    if gpu is None:
        return "/CPU:0" if gpus else None
    return f"/GPU:{gpu}"


def set_process_threads(intra_op_threads: int | None, inter_op_threads: int | None) -> None:
    """Apply thread counts to TensorFlow's process-wide eager runtime.

    The eager runtime has one pair of thread pools per process, sized when TensorFlow first
    runs an op. A count can be set before that, or be the one already in force.

    Args:
        intra_op_threads: ``None`` (leave it), 0 (TensorFlow decides) or a positive int, checked
            by the backend's option declaration.
        inter_op_threads: likewise.

    Raises:
        OptionError: a value differs from the one TensorFlow already started with.
    """
    threading_config = tf.config.threading
    settings = (
        (
            "intra_op_threads",
            intra_op_threads,
            threading_config.get_intra_op_parallelism_threads,
            threading_config.set_intra_op_parallelism_threads,
        ),
        (
            "inter_op_threads",
            inter_op_threads,
            threading_config.get_inter_op_parallelism_threads,
            threading_config.set_inter_op_parallelism_threads,
        ),
    )
    for name, value, get, set_ in settings:
        if value is None or get() == value:
            continue
        try:
            set_(value)
        except RuntimeError as exc:
            current = get() or "TensorFlow's default"
            raise OptionError(
                f"{name}={value} cannot be applied: TensorFlow's eager thread pools are process-wide "
                f"and already started with {current}. Pass the option with the first TensorFlow "
                f"model loaded in the process, or load the model in a worker process"
            ) from exc


def load_custom_ops(package: Package) -> None:
    """Load every library of the config's ``custom_ops`` from ``0/ops`` with ``tf.load_op_library``.

    Raises:
        PackageError: a library is missing or TensorFlow cannot load it.
    """
    custom_ops.load_custom_ops(package, "tensorflow", tf.load_op_library, (tf.errors.OpError, OSError))
