"""Stateful models: the requests of a sequence, their control inputs, and the state kept between them.

A model served with ``sequence_batching`` (``neuropod.serving.sequence_batching``) gets requests
that carry a correlation id (``sequence_id``) and ``sequence_start`` / ``sequence_end`` flags
(``neuropod.protocol.sequence``). ``SequenceScheduler.run`` runs each such request as Triton's
``direct`` strategy does:

- A sequence begins with a request flagged start; it is then active until a request flagged end
  has run, or until it has gone ``max_sequence_idle_microseconds`` without a request (a reaper
  thread frees it). A start for an active id ends the earlier sequence and begins anew.
- Each sequence is pinned to one instance of the model (the one with the fewest active
  sequences when it began), and its requests run one at a time, in the order they arrived.
- The server fills in the control inputs (START, END, READY, CORRID) and each state input: the
  state output of a request is the state input of the next one of the sequence, and a
  sequence's first request gets the initial state (zeros unless its ``initial_state`` says
  otherwise). State outputs are not sent to clients; control and state inputs are not theirs to
  send, and the model metadata and configuration list neither.
- At most ``max_sequences`` sequences are active at once; a request that would begin one more is
  refused (503 / ``UNAVAILABLE``) until one ends or idles out.

Control and state tensors are ``[1]`` (state: its dims) per request; when the model batches
(``max_batch_size`` > 0) they have a batch dim in front, and every request must have batch size 1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from neuropod.errors import OptionError, ValidationError
from neuropod.protocol.datatypes import BYTES, datatype_to_numpy, spec_dtype_to_datatype
from neuropod.protocol.infer import InferRequest
from neuropod.protocol.sequence import SequenceFlags, read_sequence
from neuropod.serving.errors import BadRequest, InternalError, Unavailable
from neuropod.serving.sequence_batching import CORRID, END, START, Control, SequenceBatching, State
from neuropod.spec.tensor_spec import TensorSpec
from neuropod.spec.validation import TensorValidator

Arrays = dict[str, np.ndarray]
Result = tuple[Arrays, float, float]
#: ``call(inputs, instance) -> (outputs, queue_seconds, compute_seconds)``: runs the model.
Call = Callable[[Mapping[str, np.ndarray], int], Result]

_MASK_32 = 2**32 - 1


class _Sequence:
    """One active sequence: its instance, its state, and the turn of each of its requests."""

    __slots__ = (
        "corrid",
        "ended",
        "instance",
        "last_used",
        "next_ticket",
        "pending",
        "serving",
        "state",
        "turn",
    )

    def __init__(self, instance: int):
        self.instance = instance
        self.state: Arrays | None = None  # None: not started (or ended) when the next request runs
        self.ended = False
        self.next_ticket = 0  # the ticket the next request to arrive gets
        self.serving = 0  # the ticket whose turn it is
        self.pending = 0  # requests arrived and not finished; idle (reapable) only at 0
        self.turn = threading.Condition(threading.Lock())
        self.last_used = time.monotonic()
        self.corrid: np.ndarray | None = None  # the CORRID control's tensor, made once


class SequenceScheduler:
    """Runs a stateful model's requests (see the module docstring).

    Args:
        model: the served name, for messages.
        settings: the model's ``sequence_batching``.
        inputs: the model's input specs.
        outputs: its output specs.
        batched: the model batches (``max_batch_size`` > 0): control and state tensors get a
            batch dim of 1.
        instances: how many instances run it.
        max_sequences: the most sequences active at once.

    Raises:
        OptionError: a control or state names a tensor the model lacks, or its datatype or dims
            do not fit the model's spec.
    """

    def __init__(
        self,
        model: str,
        settings: SequenceBatching,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        *,
        batched: bool,
        instances: int,
        max_sequences: int,
    ):
        self.model = model
        self.settings = settings
        self.max_sequences = max_sequences
        self._batched = batched
        self._states = settings.states
        _check_specs(model, settings, inputs, outputs, batched)
        # (input name, kind, tensor meaning false, tensor meaning true) of START, END and READY.
        self._flags = [
            (control.name, control.kind, *_flag_tensors(control, batched))
            for control in settings.controls
            if control.kind != CORRID
        ]
        self._corrid = next((control for control in settings.controls if control.kind == CORRID), None)
        state_inputs = {state.input_name for state in self._states}
        # A state output that passed the output spec fits its input spec when both are the same:
        # then it is not checked again.
        input_specs = {spec.name: spec for spec in inputs}
        output_specs = {spec.name: spec for spec in outputs}
        same = all(
            (input_specs[s.input_name].dtype, input_specs[s.input_name].shape)
            == (output_specs[s.output_name].dtype, output_specs[s.output_name].shape)
            for s in self._states
        )
        self._state_check = (
            None if same else TensorValidator([spec for spec in inputs if spec.name in state_inputs], "input")
        )
        self.hidden_inputs = frozenset(
            [control.name for control in settings.controls] + [state.input_name for state in settings.states]
        )
        self.state_outputs = frozenset(state.output_name for state in settings.states)
        # A request that breaks the spec fails before it starts, or waits in, a sequence.
        self._input_check = TensorValidator(
            [spec for spec in inputs if spec.name not in self.hidden_inputs], "input"
        )
        self._sequences: dict[int | str, _Sequence] = {}
        self._load = [0] * instances  # active sequences per instance
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._reaper: threading.Thread | None = None  # started with the first sequence

    def client_specs(
        self, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
    ) -> tuple[list[TensorSpec], list[TensorSpec]]:
        """The specs that clients see: without control and state inputs, and state outputs."""
        return (
            [spec for spec in inputs if spec.name not in self.hidden_inputs],
            [spec for spec in outputs if spec.name not in self.state_outputs],
        )

    def config(self) -> dict[str, Any]:
        """The model configuration's ``sequence_batching`` section."""
        return self.settings.to_config()

    @property
    def active(self) -> int:
        """How many sequences are active."""
        return len(self._sequences)

    def run(self, request: InferRequest, inputs: Mapping[str, np.ndarray], call: Call) -> Result:
        """Run one request of a sequence: in its turn, on its sequence's instance, with its
        control inputs and state.

        Args:
            request: the decoded request (its parameters name the sequence).
            inputs: its inputs, read (shared memory resolved).
            call: runs the model on an instance.

        Returns:
            ``(outputs, queue_seconds, compute_seconds)``; the outputs without state outputs.

        Raises:
            ProtocolError: malformed sequence parameters.
            ValidationError: the inputs break the spec (the sequence is left as it was).
            BadRequest: no correlation id, a sequence that was not started, a control or state
                input sent by the client, a batch size other than 1, an id whose type the
                model's CORRID does not take.
            Unavailable: ``max_sequences`` sequences are active already, or the model is being
                unloaded.
            InternalError: the model did not return a state output, or one that does not fit.
            Exception: whatever the model raised.
        """
        flags = read_sequence(request.parameters)
        self._check_request(request, flags, inputs)
        self._input_check(inputs)
        entry, ticket = self._enter(flags)
        try:
            with entry.turn:
                while entry.serving != ticket:
                    entry.turn.wait()
            try:
                return self._run_turn(flags, entry, inputs, call)
            finally:
                if flags.end:
                    entry.ended, entry.state = True, None
                with entry.turn:
                    entry.serving += 1
                    entry.turn.notify_all()
        finally:
            self._leave(flags.id, entry)

    def _check_request(
        self, request: InferRequest, flags: SequenceFlags, inputs: Mapping[str, np.ndarray]
    ) -> None:
        model = self.model
        if not flags.in_sequence:
            raise BadRequest(
                f"inference request to model '{model}' must specify a non-zero or non-empty correlation ID"
            )
        for name in inputs:
            if name in self.hidden_inputs:
                raise BadRequest(f"unexpected inference input '{name}' for model '{model}'")
        if self._batched and any(array.shape[:1] != (1,) for array in inputs.values()):
            raise BadRequest(
                f"inference request to model '{model}' must specify batch-size 1 due to requirements "
                f"of sequence batcher"
            )
        corrid = self._corrid
        if corrid is not None and isinstance(flags.id, str) != (corrid.datatype == BYTES):
            given = BYTES if isinstance(flags.id, str) else "UINT64"
            raise BadRequest(
                f"[request id: {request.id or '<id_unknown>'}] sequence batching control '{corrid.name}' "
                f"data-type is '{given}', but model '{model}' expects '{corrid.datatype}'"
            )

    def _enter(self, flags: SequenceFlags) -> tuple[_Sequence, int]:
        with self._lock:
            entry = self._sequences.get(flags.id)
            if entry is None:
                if not flags.start:
                    raise self._not_started(flags.id)
                if len(self._sequences) >= self.max_sequences:
                    self._reap(time.monotonic())
                if len(self._sequences) >= self.max_sequences:
                    raise Unavailable(
                        f"Model '{self.model}' has {self.max_sequences} active sequences, its limit "
                        f"(max_sequences): end a sequence (sequence_end), or wait for idle ones to be "
                        f"freed after {self.settings.max_sequence_idle_microseconds} microseconds"
                    )
                if self._reaper is None and not self._stopped.is_set():
                    self._reaper = threading.Thread(
                        target=self._reap_loop, name=f"neuropod-sequences-{self.model}", daemon=True
                    )
                    self._reaper.start()
                load = self._load
                instance = load.index(min(load))
                load[instance] += 1
                entry = self._sequences[flags.id] = _Sequence(instance)
            ticket = entry.next_ticket
            entry.next_ticket += 1
            entry.pending += 1
            return entry, ticket

    def _leave(self, identifier: int | str, entry: _Sequence) -> None:
        with self._lock:
            entry.pending -= 1
            entry.last_used = time.monotonic()
            if entry.ended and entry.pending == 0 and self._sequences.get(identifier) is entry:
                self._drop(identifier, entry)

    def _run_turn(
        self, flags: SequenceFlags, entry: _Sequence, inputs: Mapping[str, np.ndarray], call: Call
    ) -> Result:
        if flags.start:
            entry.ended = False
            entry.state = {state.input_name: self._first_state(state) for state in self._states}
        elif entry.ended or entry.state is None:  # ended by a request that ran before this one
            raise self._not_started(flags.id)
        full = dict(inputs)
        for name, kind, false, true in self._flags:
            on = flags.start if kind == START else flags.end if kind == END else True  # READY: a real request
            full[name] = true if on else false
        if self._corrid is not None:
            if entry.corrid is None:
                entry.corrid = self._corrid_tensor(flags.id)
            full[self._corrid.name] = entry.corrid
        full.update(entry.state)
        outputs, queue, compute = call(full, entry.instance)
        entry.state = self._next_state(outputs)
        return (
            {name: array for name, array in outputs.items() if name not in self.state_outputs},
            queue,
            compute,
        )

    def _first_state(self, state: State) -> np.ndarray:
        first = np.array(state.first())  # a copy: the model may write to its inputs
        return first[np.newaxis] if self._batched else first

    def _next_state(self, outputs: Mapping[str, np.ndarray]) -> Arrays:
        state: Arrays = {}
        for spec in self._states:
            produced = outputs.get(spec.output_name)
            if produced is None:
                raise InternalError(
                    f"Model '{self.model}' did not return its state output '{spec.output_name}' "
                    f"(it returned: {', '.join(outputs) or 'nothing'})"
                )
            state[spec.input_name] = produced
        if self._state_check is None:
            return state
        try:
            self._state_check(state)
        except ValidationError as exc:
            raise InternalError(
                f"Model '{self.model}' returned a state that its state input cannot take back: {exc}"
            ) from None
        return state

    def _corrid_tensor(self, identifier: int | str) -> np.ndarray:
        control = self._corrid
        assert control is not None
        shape = (1, 1) if self._batched else (1,)
        if isinstance(identifier, str):
            text = np.array([identifier]).reshape(shape)
            text.setflags(write=False)
            return text
        datatype = control.datatype
        if datatype in ("UINT32", "INT32"):
            identifier &= _MASK_32
            unsigned = np.full(shape, identifier, np.uint32)
        else:
            unsigned = np.full(shape, identifier, np.uint64)
        dtype = datatype_to_numpy(datatype)
        assert dtype is not None
        tensor: np.ndarray = unsigned.view(dtype.newbyteorder("="))
        tensor.setflags(write=False)  # shared by the requests of the sequence
        return tensor

    def _not_started(self, identifier: int | str) -> BadRequest:
        return BadRequest(
            f"inference request for sequence {identifier} to model '{self.model}' must specify the "
            f"START flag on the first request of the sequence"
        )

    def _drop(self, identifier: int | str, entry: _Sequence) -> None:
        # Under self._lock.
        del self._sequences[identifier]
        self._load[entry.instance] -= 1
        entry.state = None

    def _reap(self, now: float) -> None:
        # Under self._lock: free the sequences with no request for longer than the idle limit.
        limit = self.settings.idle_seconds
        for identifier, entry in list(self._sequences.items()):
            if entry.pending == 0 and now - entry.last_used > limit:
                self._drop(identifier, entry)

    def _reap_loop(self) -> None:
        interval = min(max(self.settings.idle_seconds / 4, 0.005), 0.5)
        while not self._stopped.wait(interval):
            with self._lock:
                self._reap(time.monotonic())

    def close(self) -> None:
        """Stop the reaper and free every sequence's state. Idempotent."""
        with self._lock:
            self._stopped.set()
            reaper = self._reaper
        if reaper is not None and reaper is not threading.current_thread():
            reaper.join()
        with self._lock:
            for identifier, entry in list(self._sequences.items()):
                self._drop(identifier, entry)


def _flag_tensors(control: Control, batched: bool) -> tuple[np.ndarray, np.ndarray]:
    """A START, END or READY control's tensors meaning false and true (read-only, shared)."""
    assert control.false_true is not None
    dtype = datatype_to_numpy(control.datatype)
    shape = (1, 1) if batched else (1,)
    tensors = []
    for value in control.false_true:
        array = np.full(shape, value, dtype)
        array.setflags(write=False)
        tensors.append(array)
    return tensors[0], tensors[1]


def _check_specs(
    model: str,
    settings: SequenceBatching,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    batched: bool,
) -> None:
    """Check that the controls and states fit the model's specs, naming what does not."""
    input_specs = {spec.name: spec for spec in inputs}
    output_specs = {spec.name: spec for spec in outputs}
    where = f"model '{model}': sequence_batching"

    def spec_of(specs: dict[str, TensorSpec], name: str, kind: str, what: str) -> TensorSpec:
        if name not in specs:
            raise OptionError(
                f"{where}: {what} '{name}' is not an {kind} of the model "
                f"({kind}s: {', '.join(specs) or 'none'})"
            )
        return specs[name]

    def fits(spec: TensorSpec, datatype: str, sample: np.ndarray, what: str) -> None:
        declared = spec_dtype_to_datatype(spec.dtype)
        if declared != datatype:
            raise OptionError(
                f"{where}: {what} '{spec.name}' is {datatype}, but the model's spec says {declared}"
            )
        try:
            TensorValidator([spec], "input")({spec.name: sample})
        except ValidationError as exc:
            raise OptionError(f"{where}: {what} '{spec.name}' does not fit the model's spec: {exc}") from None

    shape = (1, 1) if batched else (1,)
    for control in settings.controls:
        spec = spec_of(input_specs, control.name, "input", f"control input ({control.kind})")
        if control.datatype == BYTES:
            sample = np.full(shape, "", np.str_)
        else:
            dtype = datatype_to_numpy(control.datatype)
            sample = np.zeros(shape, dtype)
        fits(spec, control.datatype, sample, "control input")
    for state in settings.states:
        first = state.first()
        sample = first[np.newaxis] if batched else first
        fits(
            spec_of(input_specs, state.input_name, "input", "state input"),
            state.datatype,
            sample,
            "state input",
        )
        output = spec_of(output_specs, state.output_name, "output", "state output")
        declared = spec_dtype_to_datatype(output.dtype)
        if declared != state.datatype:
            raise OptionError(
                f"{where}: state output '{output.name}' is {state.datatype}, but the model's spec "
                f"says {declared}"
            )


__all__ = ["SequenceScheduler"]
