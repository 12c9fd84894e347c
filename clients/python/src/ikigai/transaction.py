"""Transactions across services (§15): `tx.begin`, `tx.commit`, `tx.rollback`."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any

from .connection import Connection


class Transaction:
    """An open transaction; pass it as `tx=` to the writes that take one."""

    def __init__(self, connection: Connection, reply: dict[str, Any]) -> None:
        self._connection = connection
        self.id: str = reply["tx"]
        self.timeout_ms: int = reply["timeout_ms"]

    async def commit(self) -> None:
        await self._connection.call("tx.commit", {"tx": self.id})

    async def rollback(self) -> None:
        await self._connection.call("tx.rollback", {"tx": self.id})


class TransactionScope:
    """`async with platform.transaction() as tx`: commits on a normal exit, rolls back when the
    block raises (the block's exception propagates)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._tx: Transaction | None = None

    async def __aenter__(self) -> Transaction:
        self._tx = await begin(self._connection)
        return self._tx

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._tx is not None
        if error is None:
            await self._tx.commit()
            return
        # Already gone: aborted by the failing op, or the connection is lost.
        with contextlib.suppress(Exception):
            await self._tx.rollback()


async def begin(connection: Connection) -> Transaction:
    return Transaction(connection, await connection.call("tx.begin", {}))


TxRef = Transaction | str | None


def wire_args(**fields: Any) -> dict[str, Any]:
    """An op's args: the given fields without the unset (None) ones, a `tx` as its id."""
    args = {name: value for name, value in fields.items() if value is not None}
    tx = args.get("tx")
    if isinstance(tx, Transaction):
        args["tx"] = tx.id
    return args
