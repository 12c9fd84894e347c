"""An agent's life: connect from the environment, heartbeat, serve a queue or a mailbox, and
stop gracefully on SIGTERM or SIGINT: no new work is taken, the work in hand is finished within
`grace_s` or released (a task) or left unacked (a message, delivered again), then it exits.

    from ikigai.agent import run_queue

    async def handle(task):
        return {"echo": task.payload}

    run_queue("my-tasks", handle)
"""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import IkigaiError
from .platform import Platform
from .queue import Task
from .types import JSON, Message

TaskHandler = Callable[[Task], Awaitable[JSON]]
MessageHandler = Callable[[Message], Awaitable[None]]


class Agent:
    def __init__(
        self, platform: Platform, *, heartbeat_s: float = 10.0, grace_s: float = 10.0
    ) -> None:
        self.platform = platform
        self.heartbeat_s = heartbeat_s
        self.grace_s = grace_s
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        """Takes no new work; what is in hand gets `grace_s` to finish."""
        self.stopping.set()

    async def heartbeat(self) -> None:
        """Sends `agents.heartbeat` every `heartbeat_s` until stopped (not at all for an agent
        that is not deployed)."""
        while not self.stopping.is_set():
            try:
                await self.platform.agents.heartbeat()
            except IkigaiError as error:
                if error.code == "not_found":
                    return
            try:
                await asyncio.wait_for(self.stopping.wait(), self.heartbeat_s)
            except TimeoutError:
                pass

    async def serve_queue(
        self, queue: str, handler: TaskHandler, *, wait_ms: int = 1000, lease_ms: int | None = None
    ) -> None:
        """Claims one task at a time: completes it with what `handler` returns, fails it with
        the exception it raises. A claim waits at most `wait_ms`, which bounds how long a stop
        waits for it (a task it returns after the stop is released)."""
        source = self.platform.queue(queue)
        while not self.stopping.is_set():
            task = await source.claim(wait_ms=wait_ms, lease_ms=lease_ms)
            if task is None:
                continue
            if self.stopping.is_set():
                await task.release()
                return
            await self._work(task, handler)

    async def _work(self, task: Task, handler: TaskHandler) -> None:
        outcome, result = await self._within_grace(lambda: handler(task))
        if outcome == "cancelled":
            await task.release()
        elif outcome == "error":
            await task.fail(str(result))
        else:
            await task.complete(result)

    async def serve_mailbox(self, handler: MessageHandler, *, wait_ms: int = 1000) -> None:
        """Receives from the agent's own mailbox; acks each message once `handler` returned."""
        box = self.platform.mailbox()
        while not self.stopping.is_set():
            for message in await box.receive(wait_ms=wait_ms):
                outcome, _ = await self._within_grace(functools.partial(handler, message))
                if outcome == "done":
                    await box.ack([message["id"]])
                if self.stopping.is_set():
                    return

    async def _within_grace(self, work: Callable[[], Awaitable[Any]]) -> tuple[str, Any]:
        """Runs `work`; once stopping, waits `grace_s` more, then cancels it.
        Returns ("done", result), ("error", exception) or ("cancelled", None)."""
        running = asyncio.ensure_future(work())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait({running, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not running.done():
            await asyncio.wait({running}, timeout=self.grace_s)
        if not running.done():
            running.cancel()
            return "cancelled", None
        error = running.exception()
        return ("error", error) if error is not None else ("done", running.result())


def run(main: Callable[[Agent], Awaitable[None]], **options: Any) -> None:
    """Connects from the environment, heartbeats, runs `main(agent)` until it returns or a
    SIGTERM/SIGINT has let it stop, then closes the connection and returns."""

    async def life() -> None:
        platform = await Platform.connect()
        agent = Agent(platform, **options)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, agent.stop)
        beating = asyncio.ensure_future(agent.heartbeat())
        try:
            await main(agent)
        finally:
            agent.stop()
            await beating
            await platform.close()

    try:
        asyncio.run(life())
    except IkigaiError as error:
        sys.exit(f"ikigai agent: {error}")


def run_queue(queue: str, handler: TaskHandler, **options: Any) -> None:
    """`run` serving `queue` with `handler`."""
    run(lambda agent: agent.serve_queue(queue, handler), **options)


def run_mailbox(handler: MessageHandler, **options: Any) -> None:
    """`run` serving the agent's own mailbox with `handler`."""
    run(lambda agent: agent.serve_mailbox(handler), **options)
