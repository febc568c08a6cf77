"""Protocol Buffers varints: the one copy the encoder (``_encoder``) and the request
assembly (``_assemble``) share. No imports beyond the standard library, so importing it
costs a cold start nothing (the encoder itself is loaded on the first export)."""

from __future__ import annotations


def varint_slow(value: int) -> bytes:
    """Varint of a non-negative int, computed (see :func:`varint` for the usual path)."""
    if value < 0x200000:  # up to 3 bytes, unrolled
        if value < 0x80:
            return bytes((value,))
        if value < 0x4000:
            return bytes((value & 0x7F | 0x80, value >> 7))
        return bytes((value & 0x7F | 0x80, (value >> 7) & 0x7F | 0x80, value >> 14))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


TABLE_SIZE = 1 << 12
VARINTS: tuple[bytes, ...] = tuple(varint_slow(i) for i in range(TABLE_SIZE))
"""Varint encodings of 0..4095: the length of every key, short value and small span."""


def varint(value: int) -> bytes:
    """Varint of a non-negative int (lengths, counts)."""
    if value < TABLE_SIZE:
        return VARINTS[value]
    return varint_slow(value)


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``data[pos:]`` and the position after it."""
    value = 0
    shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
