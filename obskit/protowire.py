"""The protobuf wire format's varint, shared by the writers that encode protobuf by hand
(pprof profiles, OTLP spans)."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """``n`` as a base-128 varint; int64 negatives are ten-byte two's complement."""
    n &= (1 << 64) - 1
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
