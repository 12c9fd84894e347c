"""Document storage (§11): `platform.storage`, versioned JSON documents of the agent."""

from __future__ import annotations

from typing import cast

from .connection import Connection
from .transaction import TxRef, wire_args
from .types import JSON, Document, DocumentPage


class Storage:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def put(
        self, key: str, value: JSON, *, if_version: int | None = None, tx: TxRef = None
    ) -> int:
        """Writes `value`; returns the new version. A stale `if_version` (0: only if absent)
        raises `conflict`."""
        args = wire_args(key=key, if_version=if_version, tx=tx)
        args["value"] = value
        reply = await self._connection.call("storage.put", args)
        return cast(int, reply["version"])

    async def get(self, key: str) -> Document | None:
        reply = await self._connection.call("storage.get", {"key": key})
        return cast(Document | None, reply["document"])

    async def delete(self, key: str, *, if_version: int | None = None, tx: TxRef = None) -> bool:
        reply = await self._connection.call(
            "storage.delete", wire_args(key=key, if_version=if_version, tx=tx)
        )
        return cast(bool, reply["deleted"])

    async def list(
        self, prefix: str = "", *, limit: int | None = None, after: str | None = None
    ) -> DocumentPage:
        args = wire_args(prefix=prefix, limit=limit, after=after)
        return cast(DocumentPage, await self._connection.call("storage.list", args))
