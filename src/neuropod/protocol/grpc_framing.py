"""Raw tensor contents in and out of encoded inference messages, without copying them.

``ModelInferRequest.raw_input_contents`` and ``ModelInferResponse.raw_output_contents`` carry
tensors as ``repeated bytes``. Parsing a message with the generated class copies every entry
twice (into the message, then into a ``bytes`` object when read), and serializing one copies
the data in twice more: for a 4 MB tensor that is most of a call's time. So the inference RPCs
take and give the encoded message:

- ``split_raw_contents`` walks the message's top-level fields (their tags and lengths only),
  hands out the raw entries as views of the received buffer, and parses everything else with
  the generated class;
- ``join_raw_contents`` serializes a message without its raw entries and appends them as
  fields of their own, which is a valid encoding of the whole message (protobuf parsers accept
  fields in any order, and repeated entries keep theirs), for one copy of the data.

Small messages, where the walk would cost more than the copies, are parsed whole.

>>> from neuropod.protocol.grpc import service_pb2
>>> reply = service_pb2.ModelInferResponse(model_name="m")
>>> data = join_raw_contents(reply, RAW_OUTPUT_FIELD, [b"\\x00" * 8])
>>> message, raws = split_raw_contents(data, service_pb2.ModelInferResponse, RAW_OUTPUT_FIELD)
>>> message.model_name, [bytes(raw) for raw in raws]
('m', [b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from neuropod.protocol.errors import ProtocolError
from neuropod.protocol.grpc import service_pb2

Message = TypeVar("Message")
Buffer = bytes | bytearray | memoryview

#: Field number of ``ModelInferRequest.raw_input_contents``.
RAW_INPUT_FIELD: int = service_pb2.ModelInferRequest.DESCRIPTOR.fields_by_name["raw_input_contents"].number
#: Field number of ``ModelInferResponse.raw_output_contents``.
RAW_OUTPUT_FIELD: int = service_pb2.ModelInferResponse.DESCRIPTOR.fields_by_name["raw_output_contents"].number

#: Messages up to this size are parsed by the generated class alone.
SPLIT_THRESHOLD = 64 * 1024

# Protobuf wire types.
_VARINT, _FIXED64, _LENGTH_DELIMITED, _FIXED32 = 0, 1, 2, 5


def split_raw_contents(data: Buffer, message_type: type[Message], field: int) -> tuple[Message, list[Buffer]]:
    """Parse an encoded message, leaving its raw contents where they are.

    Args:
        data: the encoded message.
        message_type: its generated class (``service_pb2.ModelInferRequest``...).
        field: the number of its ``repeated bytes`` field of raw contents.

    Returns:
        ``(message, raws)``: the message without its raw contents, and those in order, as
        read-only views of ``data`` (``bytes`` for small messages).

    Raises:
        ProtocolError: ``data`` is not a valid encoding.
    """
    parse: Any = message_type.FromString  # type: ignore[attr-defined]
    if len(data) <= SPLIT_THRESHOLD:
        try:
            message = parse(data)
        except Exception as exc:  # protobuf's DecodeError, whatever the implementation
            raise ProtocolError(f"The message is not a valid {_type_name(message_type)}: {exc}") from None
        raws = getattr(message, _field_name(message_type, field))
        contents: list[Buffer] = list(raws)
        del raws[:]
        return message, contents
    view = memoryview(data)
    contents = []
    rest: list[Buffer] = []
    rest_start = 0
    for number, field_start, start, stop in _length_delimited_fields(
        view, f"The message is not a valid {_type_name(message_type)}: "
    ):
        if number == field:
            contents.append(view[start:stop])
            rest.append(data[rest_start:field_start])
            rest_start = stop
    rest.append(data[rest_start:])
    try:
        message = parse(b"".join(rest))
    except Exception as exc:
        raise ProtocolError(f"The message is not a valid {_type_name(message_type)}: {exc}") from None
    return message, contents


def join_raw_contents(message: Any, field: int, raws: Sequence[Buffer]) -> bytes:
    """Encode a message with raw contents appended, copying each of them once.

    Args:
        message: the message, with nothing in its raw contents field.
        field: the number of that field.
        raws: the entries to encode in it, in order (any buffer; numeric tensors' memoryviews
            are used as they are).

    Returns:
        The encoded message.
    """
    return b"".join(raw_contents_parts(message, field, raws))


def raw_contents_parts(message: Any, field: int, raws: Sequence[Buffer]) -> list[Buffer]:
    """``join_raw_contents``'s parts, not joined yet."""
    parts: list[Buffer] = [message.SerializeToString()]
    key = varint((field << 3) | _LENGTH_DELIMITED)
    for raw in raws:
        size = raw.nbytes if isinstance(raw, memoryview) else len(raw)
        parts.append(key + varint(size))
        parts.append(raw)
    return parts


def embedded_fields(data: Buffer) -> dict[int, memoryview]:
    """The length-delimited fields of an encoded message (strings, bytes, messages), by number.

    For a wrapper such as ``ModelStreamInferResponse``: the message it embeds is read from a
    view of ``data``, not from a copy. Of a repeated field, the last entry is returned.

    Raises:
        ProtocolError: ``data`` is not a valid encoding.
    """
    view = memoryview(data)
    return {
        number: view[start:stop]
        for number, _, start, stop in _length_delimited_fields(view, "The message is not valid: ")
    }


def _length_delimited_fields(view: memoryview, invalid: str) -> Iterator[tuple[int, int, int, int]]:
    """Walk an encoded message: ``(number, field start, value start, value end)`` of each of its
    length-delimited fields, in order (the other wire types are skipped).

    Raises:
        ProtocolError: ``invalid`` and what is wrong: a wire type the protocol does not use, or a
            field that runs past the end.
    """
    position, end = 0, len(view)
    while position < end:
        field_start = position
        key, position = _read_varint(view, position)
        wire_type = key & 7
        if wire_type == _VARINT:
            _, position = _read_varint(view, position)
        elif wire_type == _FIXED64:
            position += 8
        elif wire_type == _FIXED32:
            position += 4
        elif wire_type == _LENGTH_DELIMITED:
            length, position = _read_varint(view, position)
            if position + length <= end:
                yield key >> 3, field_start, position, position + length
            position += length
        else:
            raise ProtocolError(f"{invalid}wire type {wire_type} at byte {field_start}")
    if position > end:
        raise ProtocolError(f"{invalid}it ends inside a field")


def length_delimited(field: int, parts: Sequence[Buffer]) -> list[Buffer]:
    """``parts``, an encoded message, as field ``field`` of a wrapping message (its key and
    length first): the parts are not joined, so that the caller copies them once."""
    size = sum(part.nbytes if isinstance(part, memoryview) else len(part) for part in parts)
    return [varint((field << 3) | _LENGTH_DELIMITED) + varint(size), *parts]


def _read_varint(data: Buffer, position: int) -> tuple[int, int]:
    value = shift = 0
    end = len(data)
    while True:
        if position >= end:
            raise ProtocolError("The message ends inside a varint")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
        if shift > 63:
            raise ProtocolError("The message holds a varint longer than 10 bytes")


def varint(value: int) -> bytes:
    """The protobuf varint encoding of a non-negative int."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field_name(message_type: Any, field: int) -> str:
    return str(message_type.DESCRIPTOR.fields_by_number[field].name)


def _type_name(message_type: Any) -> str:
    return str(message_type.DESCRIPTOR.name)


__all__ = [
    "RAW_INPUT_FIELD",
    "RAW_OUTPUT_FIELD",
    "embedded_fields",
    "join_raw_contents",
    "length_delimited",
    "raw_contents_parts",
    "split_raw_contents",
    "varint",
]
