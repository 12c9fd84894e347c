"""Framing (§2): a u32 big-endian length, then one msgpack map; nothing else touches msgpack."""

from __future__ import annotations

from typing import Any

import msgpack

_packer = msgpack.Packer(autoreset=True)


def encode_request(request_id: int, op: str, args: dict[str, Any]) -> bytes:
    """The frame of one request."""
    body: bytes = _packer.pack({"id": request_id, "op": op, "args": args})
    return len(body).to_bytes(4, "big") + body


class FrameReader:
    """Accumulates bytes from the socket and yields each complete frame's decoded body."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """Appends `data`; returns the bodies of the frames it completed, in order. Raises
        `ValueError` (msgpack's errors derive from it) on a body that is not msgpack."""
        buffer = self._buffer
        buffer += data
        bodies: list[Any] = []
        offset, end = 0, len(buffer)
        with memoryview(buffer) as view:
            while end - offset >= 4:
                length = int.from_bytes(view[offset : offset + 4], "big")
                if end - offset - 4 < length:
                    break
                start = offset + 4
                offset = start + length
                bodies.append(msgpack.unpackb(view[start:offset], raw=False, strict_map_key=False))
        del buffer[:offset]
        return bodies
