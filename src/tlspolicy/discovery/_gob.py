"""A reader for Go's ``encoding/gob`` streams, enough for a policy daemon's cache file.

Gob is self-describing: a stream is a sequence of messages, each a byte count,
a type id and either a type definition (negative id) or a value (positive id).
This reader decodes the definitions it meets and then values of struct, map,
slice, array and the basic types; a type with its own gob encoding (such as
Go's ``time.Time``) comes back as its bytes, which :func:`go_time` decodes for
``time.Time``.  Interface values are refused.  Every length is checked against
the bytes left, and nesting is bounded, so a hostile file cannot make it loop or
allocate without bound.  Decoded structs are dicts keyed by field name; a field
the encoder left out (Go omits zero values) is absent.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = ["GobError", "go_time", "read_gob"]

_MAX_DEPTH: Final = 32
# Predefined type ids of encoding/gob.
_BOOL, _INT, _UINT, _FLOAT, _BYTES, _STRING, _COMPLEX, _INTERFACE = 1, 2, 3, 4, 5, 6, 7, 8
_WIRE_TYPE: Final = 16
# Ids below this are gob's own; a stream defines only ids from here on.
_FIRST_USER_ID: Final = 64
_BASIC: Final = {_BOOL, _INT, _UINT, _FLOAT, _BYTES, _STRING, _COMPLEX}
# Seconds from 0001-01-01 to 1970-01-01, the epoch of time.Time's binary form.
_GO_EPOCH_OFFSET: Final = 62135596800


class GobError(ValueError):
    """The bytes are not a gob stream this reader can decode."""


class _Reader:
    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise GobError("unexpected end of data")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > self.end:
            raise GobError(f"length {count} runs past the end of the data")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def uint(self) -> int:
        first = self.byte()
        if first < 0x80:
            return first
        count = 256 - first
        if count > 8:
            raise GobError(f"integer of {count} bytes")
        return int.from_bytes(self.take(count), "big")

    def int(self) -> int:
        raw = self.uint()
        return ~(raw >> 1) if raw & 1 else raw >> 1

    def float(self) -> float:
        raw = self.uint()
        # Gob sends a float64's bits byte-reversed so that common values are short.
        return float(struct.unpack("<d", raw.to_bytes(8, "big"))[0])

    def string_bytes(self) -> bytes:
        return self.take(self.uint())


class _Types:
    def __init__(self) -> None:
        # id -> ("struct", [(name, id)]) | ("map", key, elem) | ("slice", elem)
        #       | ("array", elem, length) | ("gobencoder",)
        self.defs: dict[int, tuple[Any, ...]] = {}

    def define(self, type_id: int, wire: dict[str, Any]) -> None:
        if type_id < _FIRST_USER_ID:
            raise GobError(f"a stream cannot redefine gob's own type {type_id}")
        if type_id in self.defs:
            raise GobError(f"type {type_id} defined twice")
        if "StructT" in wire:
            fields = [(str(f.get("Name", "")), int(f.get("Id", 0)))
                      for f in wire["StructT"].get("Field", [])]
            self.defs[type_id] = ("struct", fields)
        elif "MapT" in wire:
            self.defs[type_id] = ("map", int(wire["MapT"].get("Key", 0)),
                                  int(wire["MapT"].get("Elem", 0)))
        elif "SliceT" in wire:
            self.defs[type_id] = ("slice", int(wire["SliceT"].get("Elem", 0)))
        elif "ArrayT" in wire:
            self.defs[type_id] = ("array", int(wire["ArrayT"].get("Elem", 0)),
                                  int(wire["ArrayT"].get("Len", 0)))
        elif any(k in wire for k in ("GobEncoderT", "BinaryMarshalerT", "TextMarshalerT")):
            self.defs[type_id] = ("gobencoder",)
        else:
            raise GobError(f"type {type_id}: unsupported wire type {sorted(wire)}")


# The wire types that describe types, as gob predefines them (field names in order).
_BOOTSTRAP: Final[dict[int, tuple[Any, ...]]] = {
    _WIRE_TYPE: ("struct", [("ArrayT", 17), ("SliceT", 19), ("StructT", 20), ("MapT", 23),
                            ("GobEncoderT", 24), ("BinaryMarshalerT", 24),
                            ("TextMarshalerT", 24)]),
    17: ("struct", [("CommonType", 18), ("Elem", _INT), ("Len", _INT)]),
    18: ("struct", [("Name", _STRING), ("Id", _INT)]),
    19: ("struct", [("CommonType", 18), ("Elem", _INT)]),
    20: ("struct", [("CommonType", 18), ("Field", 22)]),
    21: ("struct", [("Name", _STRING), ("Id", _INT)]),
    22: ("slice", 21),
    23: ("struct", [("CommonType", 18), ("Key", _INT), ("Elem", _INT)]),
    24: ("struct", [("CommonType", 18)]),
}


def _value(reader: _Reader, type_id: int, types: _Types, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise GobError("values nested too deeply")
    if type_id == _BOOL:
        return reader.uint() != 0
    if type_id == _INT:
        return reader.int()
    if type_id == _UINT:
        return reader.uint()
    if type_id == _FLOAT:
        return reader.float()
    if type_id == _BYTES:
        return reader.string_bytes()
    if type_id == _STRING:
        return reader.string_bytes().decode("utf-8", errors="replace")
    if type_id == _COMPLEX:
        return complex(reader.float(), reader.float())
    if type_id == _INTERFACE:
        raise GobError("interface values are not supported")
    definition = (_BOOTSTRAP if type_id < _FIRST_USER_ID else types.defs).get(type_id)
    if definition is None:
        raise GobError(f"value of undefined type {type_id}")
    kind = definition[0]
    if kind == "struct":
        return _struct(reader, definition[1], types, depth)
    if kind == "map":
        count = reader.uint()
        if count > reader.end - reader.pos:
            raise GobError(f"map of {count} entries in fewer bytes")
        result: dict[Any, Any] = {}
        for _ in range(count):
            key = _value(reader, definition[1], types, depth + 1)
            if isinstance(key, dict | list):
                raise GobError("map keys of struct, map or slice type are not supported")
            result[key] = _value(reader, definition[2], types, depth + 1)
        return result
    if kind in ("slice", "array"):
        count = reader.uint()
        if count > reader.end - reader.pos:
            raise GobError(f"list of {count} items in fewer bytes")
        return [_value(reader, definition[1], types, depth + 1) for _ in range(count)]
    # A type with its own encoding: its bytes.
    return reader.string_bytes()


def _struct(reader: _Reader, fields: list[tuple[str, int]], types: _Types,
            depth: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    index = -1
    while True:
        delta = reader.uint()
        if delta == 0:
            return result
        index += delta
        if index >= len(fields):
            raise GobError(f"field {index} of a struct with {len(fields)} fields")
        name, field_type = fields[index]
        result[name] = _value(reader, field_type, types, depth + 1)


def read_gob(data: bytes, *, max_messages: int = 10_000) -> list[Any]:
    """Every value of the gob stream ``data``, in order (type definitions applied)."""
    reader = _Reader(data)
    types = _Types()
    values: list[Any] = []
    for _ in range(max_messages):
        if reader.pos >= reader.end:
            return values
        length = reader.uint()
        message = _Reader(data, reader.pos, reader.pos + length)
        if message.end > reader.end:
            raise GobError(f"message of {length} bytes runs past the end of the data")
        reader.pos = message.end
        type_id = message.int()
        if type_id < 0:
            wire = _value(message, _WIRE_TYPE, types, 0)
            types.define(-type_id, wire)
            continue
        definition = types.defs.get(type_id)
        if definition is None and type_id not in _BASIC:
            raise GobError(f"value of undefined type {type_id}")
        # A top-level value that is not a struct follows a zero byte.
        if (definition is None or definition[0] != "struct") and message.uint() != 0:
            raise GobError("missing the zero byte before a top-level value")
        values.append(_value(message, type_id, types, 0))
    raise GobError(f"more than {max_messages} messages")


def go_time(raw: bytes) -> datetime:
    """A Go ``time.Time`` from its binary form (versions 1 and 2), as an aware UTC datetime."""
    if len(raw) not in (15, 16) or raw[0] not in (1, 2) or (raw[0] == 2) != (len(raw) == 16):
        raise GobError(f"not a Go time value: {raw.hex()}")
    seconds = int.from_bytes(raw[1:9], "big", signed=True) - _GO_EPOCH_OFFSET
    nanoseconds = int.from_bytes(raw[9:13], "big")
    try:
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds,
                                                            microseconds=nanoseconds // 1000)
    except OverflowError:
        raise GobError(f"Go time out of range: {raw.hex()}") from None
