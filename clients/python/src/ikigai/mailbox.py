"""Mailboxes (§7, §8): `platform.mailbox(name)` with send, receive, ack, peek and stats."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from .connection import Connection
from .transaction import TxRef, wire_args
from .types import JSON, MailboxStats, Message


class Mailbox:
    """A mailbox; only the agent named like it may receive from and ack in it."""

    def __init__(self, connection: Connection, name: str) -> None:
        self._connection = connection
        self.name = name

    async def send(self, payload: JSON, *, tx: TxRef = None) -> str:
        """Sends `payload`; returns the message id once it is committed."""
        args = wire_args(mailbox=self.name, tx=tx)
        args["payload"] = payload
        reply = await self._connection.call("mailbox.send", args)
        return cast(str, reply["id"])

    async def receive(
        self, *, max: int = 1, wait_ms: int = 0, visibility_ms: int | None = None
    ) -> list[Message]:
        """Up to `max` ready messages, waiting up to `wait_ms` for the first; the wait resumes
        on the next connection if the daemon restarts meanwhile."""
        args = wire_args(mailbox=self.name, max=max, wait_ms=wait_ms, visibility_ms=visibility_ms)
        reply = await self._connection.call("mailbox.receive", args, resumable=True)
        return cast(list[Message], reply["messages"])

    async def ack(self, ids: Iterable[str | Message], *, tx: TxRef = None) -> int:
        """Marks messages (or their ids) read; returns how many changed from unread."""
        keys = [m if isinstance(m, str) else m["id"] for m in ids]
        reply = await self._connection.call(
            "mailbox.ack", wire_args(mailbox=self.name, ids=keys, tx=tx)
        )
        return cast(int, reply["acked"])

    async def peek(self, *, limit: int | None = None) -> list[Message]:
        reply = await self._connection.call(
            "mailbox.peek", wire_args(mailbox=self.name, limit=limit)
        )
        return cast(list[Message], reply["messages"])

    async def stats(self) -> MailboxStats | None:
        """This mailbox's row, or None if it never stored a message."""
        rows = await mailbox_stats(self._connection, self.name)
        return rows[0] if rows else None


async def mailbox_stats(connection: Connection, name: str | None = None) -> list[MailboxStats]:
    """`mailbox.stats`: the caller's own row, or (admin, no name) every mailbox's."""
    reply: dict[str, Any] = await connection.call("mailbox.stats", wire_args(mailbox=name))
    return cast(list[MailboxStats], reply["mailboxes"])
