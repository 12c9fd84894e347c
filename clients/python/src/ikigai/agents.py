"""The agent registry (§16) and the admin's agent and debug ops (§7): `platform.agents`,
`platform.debug`."""

from __future__ import annotations

from typing import cast

from .connection import Connection
from .transaction import wire_args
from .types import JSON, AgentEntry, AgentFile, AgentToken, Deployed


class Agents:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def deploy(
        self, manifest: dict[str, JSON], files: list[AgentFile] | None = None
    ) -> Deployed:
        reply = await self._connection.call(
            "agents.deploy", wire_args(manifest=manifest, files=files)
        )
        return cast(Deployed, reply)

    async def list(self) -> list[AgentEntry]:
        reply = await self._connection.call("agents.list", {})
        return cast(list[AgentEntry], reply["agents"])

    async def get(self, name: str) -> AgentEntry:
        return cast(AgentEntry, await self._connection.call("agents.get", {"name": name}))

    async def start(self, name: str) -> None:
        await self._connection.call("agents.start", {"name": name})

    async def stop(self, name: str) -> None:
        await self._connection.call("agents.stop", {"name": name})

    async def restart(self, name: str) -> None:
        await self._connection.call("agents.restart", {"name": name})

    async def undeploy(self, name: str) -> None:
        await self._connection.call("agents.undeploy", {"name": name})

    async def heartbeat(self) -> None:
        """The caller's own heartbeat (it restarts its hang timer)."""
        await self._connection.call("agents.heartbeat", {})

    async def token(self, name: str) -> str:
        """Admin: a token of agent `name` (the one on file, else a new one)."""
        reply = cast(AgentToken, await self._connection.call("agents.token", {"name": name}))
        return reply["token"]


class Debug:
    """Fault injection, admin only and only with `[debug] fault_injection = true`."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def panic_mailbox(self, mailbox: str) -> None:
        await self._connection.call("debug.panic_mailbox", {"mailbox": mailbox})

    async def panic_agent(self, name: str) -> None:
        await self._connection.call("debug.panic_agent", {"name": name})
