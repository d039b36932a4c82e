"""The loaded model: one interface in front of every backend, where tensors are validated."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.backends.base import Backend
from neuropod.closing import Closing
from neuropod.errors import InferenceError, ModelClosedError, NeuropodError, ValidationError
from neuropod.options import BOOLEAN, Options, option
from neuropod.package.config import ModelConfig
from neuropod.package.package import Package
from neuropod.spec.dtypes import BYTES, numpy_dtype
from neuropod.spec.elements import as_bytes
from neuropod.spec.scalars import scalars_as_arrays
from neuropod.spec.tensor_spec import TensorSpec
from neuropod.spec.validation import TensorValidator


@dataclass(frozen=True)
class ModelOptions(Options):
    """The load options of every model, whatever its backend.

    Attributes:
        require_all_inputs: every input of the spec is mandatory (the original allowed missing
            inputs, and so does the default).
    """

    require_all_inputs: bool = option(False, BOOLEAN)


class NeuropodModel(Closing):
    """A model ready to run, whatever runs it. Made by ``load_neuropod``.

    ``infer`` checks the inputs against the input spec before the backend sees them and the
    outputs against the output spec before the caller does, so every backend reports the same
    mistake with the same error. A decoupled model (``decoupled``) answers with a stream of
    responses instead: run it with ``infer_stream``. Use it as a context manager, or call
    ``close``.

    Args:
        backend: what runs the model; its ``config`` and ``path`` are the model's.
        require_all_inputs: see ``ModelOptions``.
        package: the package the backend was loaded from, closed after the backend (``None``
            for a backend without one).
    """

    def __init__(self, backend: Backend, *, require_all_inputs: bool = False, package: Package | None = None):
        self._backend: Backend | None = backend
        self._package = package
        self._config = config = backend.config
        self._path = backend.path
        self._check_inputs = TensorValidator(config.inputs, "input", require_all=require_all_inputs)
        self._check_outputs = TensorValidator(config.outputs, "output")
        self._bytes_inputs = frozenset(spec.name for spec in config.inputs if spec.dtype == BYTES)
        self._bytes_outputs = frozenset(spec.name for spec in config.outputs if spec.dtype == BYTES)
        self._decoupled = config.decoupled

    @property
    def config(self) -> ModelConfig:
        """The model's config: name, platform, specs (as its backend read them)."""
        return self._config

    @property
    def name(self) -> str:
        """The model's name."""
        return self._config.name

    @property
    def platform(self) -> str:
        """The platform (backend) that runs the model, e.g. ``"torchscript"``."""
        return self._config.platform

    @property
    def path(self) -> Path | str:
        """Where the model was loaded from: the package's path, or a remote model's URL."""
        return self._path

    @property
    def decoupled(self) -> bool:
        """Whether the model answers a call with a stream of zero or more responses (run it with
        ``infer_stream``; ``infer`` refuses it), as Triton's decoupled models do."""
        return self._decoupled

    @property
    def input_specs(self) -> tuple[TensorSpec, ...]:
        """The input specs as ``TensorSpec`` values."""
        return self._config.inputs

    @property
    def output_specs(self) -> tuple[TensorSpec, ...]:
        """The output specs as ``TensorSpec`` values."""
        return self._config.outputs

    @property
    def inputs(self) -> list[dict[str, Any]]:
        """The input specs as the original's ``{"name", "dtype", "shape"}`` dicts."""
        return [spec.to_dict() for spec in self.input_specs]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        """The output specs as the original's ``{"name", "dtype", "shape"}`` dicts."""
        return [spec.to_dict() for spec in self.output_specs]

    @property
    def instances(self) -> int:
        """How many instances run the model (``use_ope=True``: its ``instances`` option; else 1)."""
        return self._open_backend().instances

    def infer(
        self, inputs: Mapping[str, np.ndarray], *, instance: int | None = None
    ) -> dict[str, np.ndarray]:
        """Run the model.

        Tensors of dtype ``bytes`` are object arrays of ``bytes`` on both sides: a numpy ``S``
        input is accepted and handed to the model as one, and so is an ``S`` output returned.

        Args:
            inputs: input name -> numpy array; never modified.
            instance: run on this instance (``0 <= instance < instances``) rather than the
                least busy one, e.g. so that the calls of one stateful session all reach the
                worker that holds its state.

        Returns:
            output name -> numpy array.

        Raises:
            ValidationError: an input or output breaks the spec (message names the tensor).
            InferenceError: the model itself failed; the framework's error is the ``__cause__``.
                Also raised for a decoupled model, which ``infer_stream`` runs.
            ModelClosedError: the model was closed.
            IndexError: ``instance`` is out of range.
        """
        backend = self._backend
        if backend is None:
            raise ModelClosedError(f"Model '{self.name}' is closed")
        if instance is not None and not 0 <= instance < backend.instances:
            raise IndexError(
                f"Model '{self.name}' has {backend.instances} instance(s); there is no instance {instance}"
            )
        if self._decoupled:
            raise InferenceError(
                f"Model '{self.name}' is decoupled: it answers with a stream of responses, so run "
                f"it with infer_stream(inputs), which yields them"
            )
        given = dict(self._valid_inputs(inputs))
        try:
            outputs = backend.infer(given) if instance is None else backend.infer_on(instance, given)
        except NeuropodError:
            raise
        except Exception as exc:
            raise self._failed(exc) from exc
        return self._valid_outputs(outputs)

    def infer_stream(self, inputs: Mapping[str, np.ndarray]) -> Generator[dict[str, np.ndarray], None, None]:
        """Run the model and iterate over its responses as it produces them.

        A decoupled model yields zero or more responses; any other model yields the one that
        ``infer`` returns. The inputs are checked now; each response is checked against the
        output spec before it is yielded. Closing the iterator (``close()``, leaving a ``for``
        loop with ``break`` and dropping it, or a ``with contextlib.closing(...)`` block) stops
        the call: the model's generator is closed, a worker (``use_ope=True``) is told to stop,
        a remote stream is cancelled.

        >>> from neuropod import load_neuropod
        >>> ones = np.ones((1, 3), np.float32)
        >>> with load_neuropod("adder.zip") as model:  # not decoupled: one response
        ...     for response in model.infer_stream({"x": ones, "y": ones}):
        ...         print(response)
        {'out': array([[2., 2., 2.]], dtype=float32)}

        Args:
            inputs: input name -> numpy array; never modified.

        Returns:
            A generator of dicts of output name -> numpy array.

        Raises:
            ValidationError: an input breaks the spec (raised here), or a response breaks the
                output spec (raised while iterating).
            InferenceError: the model failed (while iterating; the framework's error is the
                ``__cause__``).
            ModelClosedError: the model was closed.
        """
        backend = self._open_backend()
        return self._stream(backend, self._valid_inputs(inputs))

    def _stream(
        self, backend: Backend, inputs: Mapping[str, np.ndarray]
    ) -> Generator[dict[str, np.ndarray], None, None]:
        responses = backend.infer_stream(dict(inputs))
        try:
            while True:
                try:
                    outputs = next(responses)
                except StopIteration:
                    return
                except NeuropodError:
                    raise
                except Exception as exc:
                    raise self._failed(exc) from exc
                yield self._valid_outputs(outputs)
        finally:
            close = getattr(responses, "close", None)
            if close is not None:
                close()

    def _valid_inputs(self, inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        try:
            self._check_inputs(inputs)
        except ValidationError:
            # Only a call that fails the check pays for looking for numpy scalars.
            converted = scalars_as_arrays(inputs)
            if converted is inputs:
                raise
            self._check_inputs(converted)
            inputs = converted
        if self._bytes_inputs:
            inputs = _fixed_width_as_objects(inputs, self._bytes_inputs)
        return inputs

    def _valid_outputs(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            self._check_outputs(outputs)
        except ValidationError:
            converted = scalars_as_arrays(outputs, python_scalars=True)
            if converted is outputs:
                raise
            self._check_outputs(converted)
            outputs = converted
        if self._bytes_outputs:
            outputs = _fixed_width_as_objects(outputs, self._bytes_outputs)
        return outputs

    def _failed(self, exc: Exception) -> InferenceError:
        return InferenceError(f"Model '{self.name}' ({self.platform}) failed: {type(exc).__name__}: {exc}")

    def allocate(self, name: str, shape: Sequence[int]) -> np.ndarray:
        """An uninitialized array for input ``name``, of its spec's dtype, to fill and pass to ``infer``.

        Out of process (``use_ope=True``) the array lives in shared memory, so ``infer`` sends
        it without copying a byte, however large; the memory is reused once no array views it.
        In process it is an ordinary array, so code that allocates runs either way.

        Args:
            name: a numeric input of the spec (string widths are not known ahead).
            shape: the array's shape; it must fit the spec.

        Returns:
            The array, uninitialized. It may be filled and passed to ``infer`` any number of times.

        Raises:
            ValidationError: ``name`` is not a numeric input, or ``shape`` breaks its spec.
            ModelClosedError: the model was closed.
        """
        backend = self._open_backend()
        spec = self._input_spec(name)
        dtype = numpy_dtype(spec.dtype)
        if dtype is None:
            raise ValidationError(
                f"Tensor '{name}' in the input spec is a {spec.dtype} tensor; allocate() makes "
                f"numeric tensors only (pass {spec.dtype} to infer or seal)"
            )
        try:
            probe = np.broadcast_to(np.empty((), dtype), tuple(shape))  # a shape without memory
        except (TypeError, ValueError) as exc:
            raise ValidationError(
                f"allocate() got an invalid shape {shape!r} for tensor '{name}': {exc}"
            ) from None
        self._check_one(name, probe)
        return backend.allocate(dtype, probe.shape)

    def seal(self, name: str, array: np.ndarray) -> np.ndarray:
        """Say that input ``name`` is final, so that its transfer happens now rather than in ``infer``.

        Out of process, an array from ``allocate`` is returned as it is (it is in shared memory
        already); any other array is copied into shared memory now and the copy is returned, so
        the call that gets it sends no bytes. In process the array is returned as it is. Pass
        the returned array to ``infer`` and leave it unchanged while a call uses it.

        Args:
            name: an input of the spec.
            array: its value, checked against the spec now.

        Returns:
            The array to pass to ``infer`` as ``name``.

        Raises:
            ValidationError: the array breaks the spec, or ``name`` is not an input.
            ModelClosedError: the model was closed.
        """
        backend = self._open_backend()
        self._check_one(name, array)
        return backend.seal(array)

    def _open_backend(self) -> Backend:
        backend = self._backend
        if backend is None:
            raise ModelClosedError(f"Model '{self.name}' is closed")
        return backend

    def _input_spec(self, name: str) -> TensorSpec:
        specs = {spec.name: spec for spec in self.input_specs}
        if name not in specs:
            self._check_one(name, np.empty(0))  # raises the validator's "not found in the spec"
        return specs[name]

    def _check_one(self, name: str, array: np.ndarray) -> None:
        TensorValidator(self.input_specs, "input")({name: array})

    def close(self) -> None:
        """Release the backend and the package's extracted files. Idempotent."""
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                backend.close()
            finally:
                if self._package is not None:
                    self._package.close()

    def __repr__(self) -> str:
        state = "closed" if self._backend is None else "open"
        return f"<NeuropodModel {self.name!r} platform={self.platform!r} {state}>"


def _fixed_width_as_objects(tensors: Mapping[str, Any], names: frozenset[str]) -> Any:
    """``tensors`` with the numpy ``S`` arrays among ``names`` as object arrays of ``bytes``."""
    out = None
    for name in names:
        array = tensors.get(name)
        if isinstance(array, np.ndarray) and array.dtype.kind == "S":
            out = dict(tensors) if out is None else out
            out[name] = as_bytes(array)
    return tensors if out is None else out
