"""Task queues (§13, §14): `platform.queue(name)` pushes and claims; a claimed `Task` settles
itself with complete, fail, extend or release."""

from __future__ import annotations

from typing import Any, cast

from .connection import Connection
from .transaction import TxRef, wire_args
from .types import JSON, Pushed, QueueStats, TaskPage, TaskRecord, TaskSpec


class Task:
    """A claimed task: its fields as `record` (and `id`, `payload`, `attempts` at hand)."""

    def __init__(self, connection: Connection, record: TaskRecord) -> None:
        self._connection = connection
        self.record = record
        self.id = record["id"]
        self.payload: JSON = record["payload"]
        self.attempts = record["attempts"]
        self.settled = False

    def __repr__(self) -> str:
        return f"Task(id={self.id!r}, queue={self.record['queue']!r}, payload={self.payload!r})"

    async def complete(self, result: JSON = None, *, tx: TxRef = None) -> TaskRecord:
        args = wire_args(id=self.id, tx=tx)
        args["result"] = result
        return await self._settle("queue.complete", args)

    async def fail(
        self, error: str, *, retry_in_ms: int | None = None, tx: TxRef = None
    ) -> TaskRecord:
        return await self._settle(
            "queue.fail", wire_args(id=self.id, error=error, retry_in_ms=retry_in_ms, tx=tx)
        )

    async def release(self, *, tx: TxRef = None) -> TaskRecord:
        return await self._settle("queue.release", wire_args(id=self.id, tx=tx))

    async def extend(self, lease_ms: int, *, tx: TxRef = None) -> str:
        """Moves the lease to `lease_ms` from now; returns the new `lease_until`."""
        reply = await self._connection.call(
            "queue.extend", wire_args(id=self.id, lease_ms=lease_ms, tx=tx)
        )
        return cast(str, reply["lease_until"])

    async def _settle(self, op: str, args: dict[str, Any]) -> TaskRecord:
        record = cast(TaskRecord, await self._connection.call(op, args))
        self.settled = True
        self.record = record
        return record


class Queue:
    """A named queue, platform-wide."""

    def __init__(self, connection: Connection, name: str) -> None:
        self._connection = connection
        self.name = name

    async def push(
        self,
        payload: JSON,
        *,
        priority: int | None = None,
        scheduled_for: str | None = None,
        delay_ms: int | None = None,
        max_attempts: int | None = None,
        dedup_key: str | None = None,
        tx: TxRef = None,
    ) -> Pushed:
        args = wire_args(
            queue=self.name,
            priority=priority,
            scheduled_for=scheduled_for,
            delay_ms=delay_ms,
            max_attempts=max_attempts,
            dedup_key=dedup_key,
            tx=tx,
        )
        args["payload"] = payload
        return cast(Pushed, await self._connection.call("queue.push", args))

    async def push_many(self, tasks: list[TaskSpec], *, tx: TxRef = None) -> list[Pushed]:
        reply = await self._connection.call(
            "queue.push_many", wire_args(queue=self.name, tasks=tasks, tx=tx)
        )
        return cast(list[Pushed], reply["tasks"])

    async def claim(
        self, *, wait_ms: int = 0, lease_ms: int | None = None, tx: TxRef = None
    ) -> Task | None:
        """One task, or None if none became claimable within `wait_ms`."""
        tasks = await self.claim_many(1, wait_ms=wait_ms, lease_ms=lease_ms, tx=tx)
        return tasks[0] if tasks else None

    async def claim_many(
        self, max: int, *, wait_ms: int = 0, lease_ms: int | None = None, tx: TxRef = None
    ) -> list[Task]:
        """Up to `max` tasks; a waiting claim resumes on the next connection if the daemon
        restarts meanwhile (a claim inside a transaction cannot wait, nor resume)."""
        args = wire_args(queue=self.name, max=max, wait_ms=wait_ms, lease_ms=lease_ms, tx=tx)
        reply = await self._connection.call("queue.claim", args, resumable=tx is None)
        return [Task(self._connection, record) for record in reply["tasks"]]

    async def stats(self) -> QueueStats:
        return cast(QueueStats, await self._connection.call("queue.stats", {"queue": self.name}))

    async def list(
        self, *, state: str | None = None, after: int | None = None, limit: int | None = None
    ) -> TaskPage:
        args = wire_args(queue=self.name, state=state, after=after, limit=limit)
        return cast(TaskPage, await self._connection.call("queue.list", args))
