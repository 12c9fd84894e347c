"""The cache (§9): `platform.cache`, keys in the agent's namespace unless `shared=True`."""

from __future__ import annotations

from typing import cast

from .connection import Connection
from .transaction import TxRef, wire_args
from .types import JSON


class Cache:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def get(self, key: str, default: JSON = None, *, shared: bool = False) -> JSON:
        """The value at `key`, or `default` when it is absent or expired."""
        reply = await self._connection.call("cache.get", {"key": key, "shared": shared})
        return reply["value"] if reply["found"] else default

    async def get_many(self, keys: list[str], *, shared: bool = False) -> dict[str, JSON]:
        """The keys found, with their values."""
        reply = await self._connection.call("cache.get_many", {"keys": keys, "shared": shared})
        return cast(dict[str, JSON], reply["values"])

    async def set(
        self,
        key: str,
        value: JSON,
        *,
        ttl_ms: int | None = None,
        shared: bool = False,
        tx: TxRef = None,
    ) -> None:
        args = wire_args(key=key, ttl_ms=ttl_ms, shared=shared, tx=tx)
        args["value"] = value
        await self._connection.call("cache.set", args)

    async def delete(self, key: str, *, shared: bool = False) -> bool:
        reply = await self._connection.call("cache.delete", {"key": key, "shared": shared})
        return cast(bool, reply["deleted"])

    async def incr(self, key: str, by: int = 1, *, shared: bool = False) -> int:
        reply = await self._connection.call("cache.incr", {"key": key, "by": by, "shared": shared})
        return cast(int, reply["value"])
