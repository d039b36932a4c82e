"""A request's place in a sequence: Triton's ``sequence_id``, ``sequence_start`` and ``sequence_end``.

Over HTTP the three are JSON values of the request's ``parameters``: the id a number (read as
an unsigned 64-bit integer) or a string, the flags booleans. Over gRPC the id is an
``int64_param`` (its bits read as unsigned, as Triton does) or a ``string_param``, the flags
``bool_param``; ``check_grpc_types`` refuses other kinds with Triton's texts before
``read_sequence`` reads the values, which are then the same whatever carried them.

An id of 0 or ``""`` (or none) means the request is not part of a sequence.

>>> read_sequence({"sequence_id": 7, "sequence_start": True})
SequenceFlags(id=7, start=True, end=False)
>>> read_sequence({"sequence_id": "user-1", "sequence_end": True})
SequenceFlags(id='user-1', start=False, end=True)
>>> read_sequence({}) is NO_SEQUENCE
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.keys import SEQUENCE_END, SEQUENCE_ID, SEQUENCE_START

_UINT64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class SequenceFlags:
    """A request's sequence parameters.

    Args:
        id: the correlation id: an unsigned 64-bit integer or a string; 0 or ``""``: none.
        start: the request starts the sequence.
        end: the request ends it.
    """

    id: int | str = 0
    start: bool = False
    end: bool = False

    @property
    def in_sequence(self) -> bool:
        """Whether the request names a sequence (a non-zero, non-empty id)."""
        return self.id != 0 and self.id != ""


#: The flags of a request that has no sequence parameters.
NO_SEQUENCE = SequenceFlags()


def read_sequence(parameters: Mapping[str, Any]) -> SequenceFlags:
    """The sequence parameters of a request's ``parameters``.

    Args:
        parameters: the request's parameters, as decoded.

    Returns:
        The flags (``NO_SEQUENCE`` when none of the three is given).

    Raises:
        ProtocolError: an id that is neither an unsigned 64-bit integer nor a string, or a flag
            that is not a boolean (Triton's ``Unable to parse '<key>': ...``).
    """
    if not parameters or (
        SEQUENCE_ID not in parameters and SEQUENCE_START not in parameters and SEQUENCE_END not in parameters
    ):
        return NO_SEQUENCE
    identifier = parameters.get(SEQUENCE_ID, 0)
    if not isinstance(identifier, str) and not (
        isinstance(identifier, int) and not isinstance(identifier, bool) and 0 <= identifier <= _UINT64_MAX
    ):
        raise ProtocolError(
            f"Unable to parse '{SEQUENCE_ID}': expected an unsigned 64-bit integer or a string, "
            f"got {identifier!r}"
        )
    return SequenceFlags(identifier, _flag(parameters, SEQUENCE_START), _flag(parameters, SEQUENCE_END))


def _flag(parameters: Mapping[str, Any], key: str) -> bool:
    value = parameters.get(key, False)
    if not isinstance(value, bool):
        raise ProtocolError(f"Unable to parse '{key}': expected true or false, got {value!r}")
    return value


def check_grpc_types(message_parameters: Any, values: dict[str, Any]) -> None:
    """Check the kinds of a gRPC request's sequence parameters, as Triton does, and read an
    ``int64_param`` id as unsigned.

    Args:
        message_parameters: the request's ``map<string, InferParameter>``.
        values: the same parameters as plain values (``get_parameters``); an id is rewritten in
            place to its unsigned value.

    Raises:
        ProtocolError: the id is not an ``int64_param`` or ``string_param``, or a flag is not a
            ``bool_param``.
    """
    if SEQUENCE_ID in message_parameters:
        kind = message_parameters[SEQUENCE_ID].WhichOneof("parameter_choice")
        if kind not in ("int64_param", "string_param"):
            raise ProtocolError(
                f"invalid value type for '{SEQUENCE_ID}' parameter, expected int64_param or string_param."
            )
        if kind == "int64_param":
            values[SEQUENCE_ID] = values[SEQUENCE_ID] & _UINT64_MAX
    for key in (SEQUENCE_START, SEQUENCE_END):
        if (
            key in message_parameters
            and message_parameters[key].WhichOneof("parameter_choice") != "bool_param"
        ):
            raise ProtocolError(f"invalid value type for '{key}' parameter, expected bool_param.")


__all__ = ["NO_SEQUENCE", "SequenceFlags", "check_grpc_types", "read_sequence"]
