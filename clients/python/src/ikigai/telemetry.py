"""Telemetry (§12): `platform.telemetry.emit` and `query`."""

from __future__ import annotations

from typing import cast

from .connection import Connection
from .transaction import wire_args
from .types import JSON, Event


class Telemetry:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def emit(self, event_type: str, payload: JSON) -> None:
        await self._connection.call(
            "telemetry.emit", {"event_type": event_type, "payload": payload}
        )

    async def query(
        self,
        *,
        agent: str | None = None,
        event_type: str | None = None,
        since: str | None = None,
        until: str | None = None,
        text: str | None = None,
        limit: int | None = None,
    ) -> list[Event]:
        """Events, newest first (the caller's own; admin: any agent's)."""
        args = wire_args(
            agent=agent, event_type=event_type, since=since, until=until, text=text, limit=limit
        )
        reply = await self._connection.call("telemetry.query", args)
        return cast(list[Event], reply["events"])
