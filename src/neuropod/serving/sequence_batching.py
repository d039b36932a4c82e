"""A stateful model's ``sequence_batching`` setting: Triton's ``ModelSequenceBatching`` fields.

Given under ``"sequence_batching"`` in a model's ``neuropod-serve.json`` or in its ``config``
(``neuropod.serving.config_override``), in Triton's JSON form::

    "sequence_batching": {
        "max_sequence_idle_microseconds": 5000000,     free a sequence idle this long (0 or
                                                        unset: 1 s, Triton's default)
        "control_input": [                              inputs the server fills in
            {"name": "START", "control": [{"kind": "CONTROL_SEQUENCE_START", "int32_false_true": [0, 1]}]},
            {"name": "END", "control": [{"kind": "CONTROL_SEQUENCE_END", "bool_false_true": [false, true]}]},
            {"name": "READY", "control": [{"kind": "CONTROL_SEQUENCE_READY", "fp32_false_true": [0, 1]}]},
            {"name": "CORRID", "control": [{"kind": "CONTROL_SEQUENCE_CORRID", "data_type": "TYPE_UINT64"}]}
        ],
        "state": [                                      implicit state, kept by the server
            {"input_name": "ACC_IN", "output_name": "ACC_OUT", "data_type": "TYPE_INT32", "dims": [1],
             "initial_state": [{"name": "zeros", "data_type": "TYPE_INT32", "dims": [1], "zero_data": true}]}
        ],
        "direct": {}                                    the strategy (the only one served)
    }

Every field is checked here; the names are checked against the model's specs when it is served
(``neuropod.serving.sequences``). The form a server reports (``to_config``) is accepted back, so
a configuration read from ``GET /v2/models/{m}/config`` can be given to another load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuropod.errors import OptionError, ProtocolError
from neuropod.protocol.binary import tensor_from_raw
from neuropod.protocol.datatypes import (
    BYTES,
    config_type_to_datatype,
    datatype_to_config_type,
    datatype_to_numpy,
)
from neuropod.serving.config_override import json_object, known_fields

START = "CONTROL_SEQUENCE_START"
END = "CONTROL_SEQUENCE_END"
READY = "CONTROL_SEQUENCE_READY"
CORRID = "CONTROL_SEQUENCE_CORRID"
#: The kinds of control inputs, as Triton names them.
CONTROL_KINDS = (START, END, READY, CORRID)
#: The datatypes a ``CONTROL_SEQUENCE_CORRID`` input may have.
CORRID_DATATYPES = ("UINT64", "INT64", "UINT32", "INT32", BYTES)
#: Triton's idle limit when none is set (``SEQUENCE_IDLE_DEFAULT_MICROSECONDS``).
DEFAULT_IDLE_MICROSECONDS = 1_000_000

# The field giving a flag control its false and true values, and the datatype that field implies.
_FLAG_FIELDS = {"int32_false_true": "INT32", "fp32_false_true": "FP32", "bool_false_true": "BOOL"}
_INVALID = "TYPE_INVALID"
_KEYS = ("control_input", "direct", "iterative_sequence", "max_sequence_idle_microseconds", "state")
_CONTROL_KEYS = ("data_type", "kind", *_FLAG_FIELDS)
_STATE_KEYS = (
    "data_type",
    "dims",
    "initial_state",
    "input_name",
    "output_name",
    "use_growable_memory",
    "use_same_buffer_for_input_output",
)
_INITIAL_KEYS = ("data_file", "data_type", "dims", "name", "zero_data")
_DIRECT_KEYS = ("max_queue_delay_microseconds", "minimum_slot_utilization")


@dataclass(frozen=True)
class Control:
    """A model input that the server fills in for each request of a sequence.

    Args:
        name: the model input.
        kind: one of ``CONTROL_KINDS``.
        datatype: the tensor's protocol datatype.
        false_true: for START, END and READY, the values meaning false and true (``None`` for
            CORRID).
    """

    name: str
    kind: str
    datatype: str
    false_true: tuple[Any, Any] | None = None

    def to_config(self) -> dict[str, Any]:
        """The ``control_input`` entry, every field printed as Triton prints it."""
        control: dict[str, Any] = {"kind": self.kind}
        for key, datatype in _FLAG_FIELDS.items():
            given = self.false_true is not None and datatype == self.datatype
            control[key] = list(self.false_true) if given and self.false_true is not None else []
        control["data_type"] = datatype_to_config_type(self.datatype) if self.kind == CORRID else _INVALID
        return {"name": self.name, "control": [control]}


@dataclass(frozen=True)
class State:
    """Implicit state: what the model returns as ``output_name`` is its ``input_name`` next time.

    Args:
        input_name: the model input that receives the state.
        output_name: the model output that gives the next state.
        datatype: its protocol datatype.
        dims: its dims, without the batch dim when the model batches (``-1``: any size).
        initial: the state of a sequence's first request (``None``: zeros, with ``-1`` dims as 1).
        initial_name: the ``initial_state`` entry's name, as reported.
        initial_file: the ``data_file`` it was read from (``None``: ``zero_data``).
        same_buffer: ``use_same_buffer_for_input_output``, reported; no effect here.
        growable: ``use_growable_memory``, reported; no effect here.
    """

    input_name: str
    output_name: str
    datatype: str
    dims: tuple[int, ...]
    initial: np.ndarray | None = None
    initial_name: str = ""
    initial_file: str | None = None
    same_buffer: bool = False
    growable: bool = False

    def first(self) -> np.ndarray:
        """The state a sequence starts with, without the batch dim."""
        if self.initial is not None:
            return self.initial
        shape = tuple(1 if dim == -1 else dim for dim in self.dims)
        if self.datatype == BYTES:
            return np.full(shape, "", dtype=np.str_)
        return np.zeros(shape, _numpy(self.datatype))

    def to_config(self) -> dict[str, Any]:
        """The ``state`` entry, every field printed as Triton prints it."""
        initial = []
        if self.initial is not None:
            entry: dict[str, Any] = {
                "data_type": datatype_to_config_type(self.datatype),
                "dims": list(self.initial.shape),
                "name": self.initial_name,
            }
            if self.initial_file is None:
                entry["zero_data"] = True
            else:
                entry["data_file"] = self.initial_file
            initial.append(entry)
        return {
            "input_name": self.input_name,
            "output_name": self.output_name,
            "data_type": datatype_to_config_type(self.datatype),
            "dims": list(self.dims),
            "initial_state": initial,
            "use_same_buffer_for_input_output": self.same_buffer,
            "use_growable_memory": self.growable,
        }


@dataclass(frozen=True)
class SequenceBatching:
    """A stateful model's setting (see the module docstring).

    Args:
        max_sequence_idle_microseconds: how long a sequence may go without a request before
            the server frees it.
        controls: the control inputs.
        states: the implicit states.
        direct: the ``direct`` strategy's fields, reported as given (they tune how Triton
            batches requests of different sequences together; this server runs each request
            on its own).
    """

    max_sequence_idle_microseconds: int = DEFAULT_IDLE_MICROSECONDS
    controls: tuple[Control, ...] = ()
    states: tuple[State, ...] = ()
    direct: Mapping[str, float] = field(default_factory=dict)

    @property
    def idle_seconds(self) -> float:
        """``max_sequence_idle_microseconds`` in seconds."""
        return self.max_sequence_idle_microseconds / 1e6

    def to_config(self) -> dict[str, Any]:
        """The model configuration's ``sequence_batching`` section, as Triton reports it."""
        return {
            "max_sequence_idle_microseconds": self.max_sequence_idle_microseconds,
            "control_input": [control.to_config() for control in self.controls],
            "state": [state.to_config() for state in self.states],
            "direct": {
                "max_queue_delay_microseconds": int(self.direct.get("max_queue_delay_microseconds", 0)),
                "minimum_slot_utilization": float(self.direct.get("minimum_slot_utilization", 0.0)),
            },
            "iterative_sequence": False,
        }


def parse_sequence_batching(value: object, where: str, folder: Path | None = None) -> SequenceBatching:
    """Read a ``sequence_batching`` object.

    Args:
        value: the parsed JSON value.
        where: where it came from, for messages.
        folder: the model's folder: an initial state's ``data_file`` is in its ``initial_state``
            folder (``None``: in ``initial_state`` of the working directory).

    Returns:
        The setting.

    Raises:
        OptionError: a malformed or unsupported field, or an initial state file that cannot be
            read or does not fit its dims.
    """
    where = f"{where}: sequence_batching"
    given = json_object(value, where)
    if "oldest" in given:
        raise OptionError(
            f"{where}: the 'oldest' strategy is not supported; this server runs each sequence on one "
            f"instance, one request at a time, in order (the 'direct' strategy)"
        )
    known_fields(given, _KEYS, where)
    if given.get("iterative_sequence", False) is not False:
        raise OptionError(f"{where}: 'iterative_sequence' is not supported (only false)")
    idle = given.get("max_sequence_idle_microseconds", 0)
    if type(idle) is not int or idle < 0:
        raise OptionError(f"{where}: 'max_sequence_idle_microseconds' must be an integer >= 0, got {idle!r}")
    direct = json_object(given.get("direct", {}), f"{where}: 'direct'")
    known_fields(direct, _DIRECT_KEYS, f"{where}: 'direct'")
    for key, number in direct.items():
        if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
            raise OptionError(f"{where}: 'direct' '{key}' must be a number >= 0, got {number!r}")
    controls = tuple(_control(entry, where) for entry in _list(given, "control_input", where))
    kinds = [control.kind for control in controls]
    for kind in CONTROL_KINDS:
        if kinds.count(kind) > 1:
            raise OptionError(
                f"{where}: control kind {kind} is given {kinds.count(kind)} times; give it once"
            )
    states = tuple(_state(entry, where, folder) for entry in _list(given, "state", where))
    names = [control.name for control in controls] + [state.input_name for state in states]
    for name in names:
        if names.count(name) > 1:
            raise OptionError(f"{where}: input '{name}' is filled by more than one control or state")
    outputs = [state.output_name for state in states]
    for name in outputs:
        if outputs.count(name) > 1:
            raise OptionError(f"{where}: output '{name}' is the output of more than one state")
    return SequenceBatching(idle or DEFAULT_IDLE_MICROSECONDS, controls, states, dict(direct))


def _control(value: object, where: str) -> Control:
    entry = json_object(value, f"{where}: each 'control_input' entry")
    known_fields(entry, ("control", "name"), f"{where}: control_input")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise OptionError(f"{where}: each 'control_input' entry needs a 'name' string, got {entry!r}")
    context = f"{where}: control_input '{name}'"
    controls = entry.get("control")
    if not isinstance(controls, list) or len(controls) != 1:
        raise OptionError(f"{context}: 'control' must be a list of exactly one control, got {controls!r}")
    control = json_object(controls[0], f"{context}: its control")
    known_fields(control, _CONTROL_KEYS, context)
    kind = control.get("kind")
    if kind not in CONTROL_KINDS:
        raise OptionError(f"{context}: 'kind' must be one of {', '.join(CONTROL_KINDS)}, got {kind!r}")
    data_type = control.get("data_type", _INVALID)
    flags = {key: control[key] for key in _FLAG_FIELDS if control.get(key) not in (None, [])}
    if kind == CORRID:
        if flags:
            raise OptionError(f"{context}: a {CORRID} control takes 'data_type', not {', '.join(flags)}")
        datatype = _datatype(data_type, context)
        if datatype not in CORRID_DATATYPES:
            raise OptionError(
                f"{context}: a {CORRID} control's 'data_type' must be one of "
                f"{', '.join(datatype_to_config_type(d) for d in CORRID_DATATYPES)}, got {data_type!r}"
            )
        return Control(name, kind, datatype)
    if data_type != _INVALID:
        raise OptionError(
            f"{context}: a {kind} control takes one of {', '.join(_FLAG_FIELDS)}, not 'data_type'"
        )
    if len(flags) != 1:
        raise OptionError(
            f"{context}: a {kind} control must set exactly one of {', '.join(_FLAG_FIELDS)}, got "
            f"{', '.join(flags) or 'none'}"
        )
    ((key, pair),) = flags.items()
    datatype = _FLAG_FIELDS[key]
    if not isinstance(pair, list) or len(pair) != 2 or not all(_fits(value, datatype) for value in pair):
        raise OptionError(f"{context}: '{key}' must be two values, false then true, got {pair!r}")
    return Control(name, kind, datatype, (pair[0], pair[1]))


def _fits(value: object, datatype: str) -> bool:
    """Whether a false/true value is one of a flag control's datatype."""
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if datatype == "INT32":
        return isinstance(value, int) and -(2**31) <= value < 2**31
    return isinstance(value, (int, float))


def _state(value: object, where: str, folder: Path | None) -> State:
    entry = json_object(value, f"{where}: each 'state' entry")
    names = [entry.get("input_name"), entry.get("output_name")]
    if not all(isinstance(name, str) and name for name in names):
        raise OptionError(
            f"{where}: each 'state' entry needs 'input_name' and 'output_name' strings, got {entry!r}"
        )
    context = f"{where}: state '{names[0]}'"
    known_fields(entry, _STATE_KEYS, context)
    datatype = _datatype(entry.get("data_type"), context)
    dims = _dims(entry.get("dims"), context, allow_variable=True)
    flags = {
        key: entry.get(key, False) for key in ("use_same_buffer_for_input_output", "use_growable_memory")
    }
    for key, flag in flags.items():
        if not isinstance(flag, bool):
            raise OptionError(f"{context}: '{key}' must be true or false, got {flag!r}")
    initial_entries = entry.get("initial_state", [])
    if not isinstance(initial_entries, list) or len(initial_entries) > 1:
        raise OptionError(
            f"{context}: 'initial_state' must be a list of at most one entry, got {initial_entries!r}"
        )
    initial, initial_name, initial_file = None, "", None
    if initial_entries:
        initial, initial_name, initial_file = _initial(initial_entries[0], datatype, dims, context, folder)
    return State(
        str(names[0]),
        str(names[1]),
        datatype,
        dims,
        initial,
        initial_name,
        initial_file,
        flags["use_same_buffer_for_input_output"],
        flags["use_growable_memory"],
    )


def _initial(
    value: object, datatype: str, dims: tuple[int, ...], where: str, folder: Path | None
) -> tuple[np.ndarray, str, str | None]:
    context = f"{where}: initial_state"
    entry = json_object(value, context)
    known_fields(entry, _INITIAL_KEYS, context)
    name = entry.get("name", "")
    if not isinstance(name, str):
        raise OptionError(f"{context}: 'name' must be a string, got {name!r}")
    if _datatype(entry.get("data_type"), context) != datatype:
        raise OptionError(
            f"{context}: 'data_type' {entry.get('data_type')!r} differs from the state's "
            f"{datatype_to_config_type(datatype)}"
        )
    shape = _dims(entry.get("dims"), context, allow_variable=False)
    if len(shape) != len(dims) or any(d not in (-1, s) for d, s in zip(dims, shape, strict=True)):
        raise OptionError(f"{context}: 'dims' {list(shape)} do not fit the state's dims {list(dims)}")
    zero, data_file = entry.get("zero_data", False), entry.get("data_file")
    if not isinstance(zero, bool) or (zero and data_file is not None) or (not zero and data_file is None):
        raise OptionError(f"{context}: give exactly one of 'zero_data': true and 'data_file'")
    if zero:
        if datatype == BYTES:
            return np.full(shape, "", dtype=np.str_), name, None
        return np.zeros(shape, _numpy(datatype)), name, None
    if not isinstance(data_file, str) or not data_file:
        raise OptionError(f"{context}: 'data_file' must be a file name, got {data_file!r}")
    base = (folder if folder is not None else Path.cwd()) / "initial_state"
    path = (base / data_file).resolve()
    if not path.is_relative_to(base.resolve()):
        raise OptionError(f"{context}: 'data_file' {data_file!r} is outside {base}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise OptionError(f"{context}: 'data_file' cannot be read: {exc}") from None
    try:
        array = tensor_from_raw(raw, datatype, shape)
    except ProtocolError as exc:
        raise OptionError(
            f"{context}: 'data_file' {path} does not hold a {datatype} tensor of dims {list(shape)}: {exc}"
        ) from None
    return np.array(array), name, data_file


def _numpy(datatype: str) -> np.dtype:
    dtype = datatype_to_numpy(datatype)
    assert dtype is not None  # BYTES is handled by the callers
    return dtype


def _datatype(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise OptionError(f"{where}: 'data_type' must be a type name such as TYPE_INT32, got {value!r}")
    try:
        return config_type_to_datatype(value)
    except ProtocolError as exc:
        raise OptionError(f"{where}: {exc}") from None


def _dims(value: object, where: str, *, allow_variable: bool) -> tuple[int, ...]:
    low = -1 if allow_variable else 0
    if not isinstance(value, list) or any(type(dim) is not int or dim < low for dim in value):
        raise OptionError(f"{where}: 'dims' must be a list of integers >= {low}, got {value!r}")
    return tuple(value)


def _list(given: Mapping[str, Any], key: str, where: str) -> list[Any]:
    entries = given.get(key, [])
    if not isinstance(entries, list):
        raise OptionError(f"{where}: '{key}' must be a list, got {entries!r}")
    return entries


__all__ = [
    "CONTROL_KINDS",
    "CORRID_DATATYPES",
    "DEFAULT_IDLE_MICROSECONDS",
    "Control",
    "SequenceBatching",
    "State",
    "parse_sequence_batching",
]
