"""The connection: one pipelined socket to the daemon, replies matched by id, pushes dispatched
to their owners, and reconnection with backoff (a fresh `hello`) when the daemon goes away.

Requests written in one turn of the event loop leave in one write. A call in flight when the
connection drops fails with `unavailable` (retriable), except resumable ones (waiting receives
and claims), which are sent again on the next connection with what is left of their wait.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .errors import IkigaiError, connection_lost
from .frame import FrameReader, encode_request

PROTOCOL_VERSION = 1

PushHandler = Callable[[str, Any], None]
"""Receives `(push name, data)` of a push addressed to a request or a subscription."""

ReconnectHook = Callable[[], Awaitable[None]]


class _Wire(asyncio.Protocol):
    """One socket: buffers outgoing frames per loop turn, decodes incoming ones."""

    def __init__(self, owner: Connection) -> None:
        self._owner = owner
        self._reader = FrameReader()
        self._out = bytearray()
        self._writable = asyncio.Event()
        self._writable.set()
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except ValueError:
            self.close()
            return
        for frame in frames:
            self._owner._dispatch(self, frame)

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(connection_lost())
        self.pending.clear()
        self._writable.set()
        if not self.lost.done():
            self.lost.set_result(None)
        self._owner._lost(self)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    def write(self, frame: bytes) -> None:
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out += frame

    def _flush(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes(self._out))
        self._out.clear()

    def paused(self) -> bool:
        return not self._writable.is_set()

    async def drained(self) -> None:
        await self._writable.wait()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Connection:
    """The client side of a session: survives daemon restarts by reconnecting."""

    def __init__(
        self,
        socket: str,
        agent: str,
        token: str,
        *,
        reconnect: bool = True,
        reconnect_timeout: float = 30.0,
    ) -> None:
        self.socket = socket
        self.agent = agent
        self._token = token
        self._reconnect = reconnect
        self._reconnect_timeout = reconnect_timeout
        self._ids = itertools.count(1)
        self._wire: _Wire | None = None
        self._ready = asyncio.Event()
        self._closed: IkigaiError | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._request_pushes: dict[int, PushHandler] = {}
        self.subscription_pushes: dict[str, PushHandler] = {}
        self._hooks: list[ReconnectHook] = []
        self.hello: dict[str, Any] = {}

    async def open(self) -> None:
        """Connects and says `hello`; raises what the daemon answered."""
        loop = asyncio.get_running_loop()
        _, wire = await loop.create_unix_connection(lambda: _Wire(self), self.socket)
        args = {"protocol": PROTOCOL_VERSION, "agent": self.agent, "token": self._token}
        try:
            self.hello = await self._send(wire, "hello", args, None)
        except BaseException:
            wire.close()
            raise
        self._wire = wire
        self._ready.set()

    def on_reconnect(self, hook: ReconnectHook) -> None:
        """Runs `hook` after each successful reconnection (to resubscribe, for instance)."""
        self._hooks.append(hook)

    async def call(
        self,
        op: str,
        args: dict[str, Any],
        *,
        resumable: bool = False,
        on_push: PushHandler | None = None,
    ) -> Any:
        """Sends `op` and returns its `ok` value; raises `IkigaiError` on its `err`."""
        deadline = time.monotonic() + args.get("wait_ms", 0) / 1000
        while True:
            wire = await self._connected()
            try:
                return await self._send(wire, op, args, on_push)
            except IkigaiError:
                if not (resumable and self._reconnect and wire.lost.done()):
                    raise
                if "wait_ms" in args:
                    args = {**args, "wait_ms": max(0, int((deadline - time.monotonic()) * 1000))}

    async def _send(
        self, wire: _Wire, op: str, args: dict[str, Any], on_push: PushHandler | None
    ) -> Any:
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        wire.pending[request_id] = future
        if on_push is not None:
            self._request_pushes[request_id] = on_push
        try:
            wire.write(encode_request(request_id, op, args))
            if wire.paused():
                await wire.drained()
            return await future
        finally:
            wire.pending.pop(request_id, None)
            self._request_pushes.pop(request_id, None)

    def _dispatch(self, wire: _Wire, frame: Any) -> None:
        if not isinstance(frame, dict):
            return
        if "push" in frame:
            self._push(frame["push"], frame.get("data"))
            return
        future = wire.pending.pop(frame.get("id", 0), None)
        if future is None:
            if "err" in frame:
                self._fail_all(wire, IkigaiError.from_wire(frame["err"]))
            return
        if future.done():
            return
        if "err" in frame:
            future.set_exception(IkigaiError.from_wire(frame["err"]))
        else:
            future.set_result(frame.get("ok"))

    def _push(self, name: str, data: Any) -> None:
        if name in ("llm.delta", "llm.tool_call") and isinstance(data, dict):
            handler = self._request_pushes.get(data.get("request", -1))
        else:
            handler = self.subscription_pushes.get(name)
        if handler is not None:
            handler(name, data)

    @staticmethod
    def _fail_all(wire: _Wire, error: IkigaiError) -> None:
        """An error no request owns (id 0: `bad_frame`) is every caller's."""
        for future in wire.pending.values():
            if not future.done():
                future.set_exception(error)
        wire.pending.clear()

    async def _connected(self) -> _Wire:
        if self._closed is not None:
            raise self._closed
        if self._wire is None:
            try:
                await asyncio.wait_for(self._ready.wait(), self._reconnect_timeout)
            except TimeoutError:
                raise IkigaiError("unavailable", "daemon unreachable", retriable=True) from None
            if self._closed is not None:
                raise self._closed
        assert self._wire is not None
        return self._wire

    def _lost(self, wire: _Wire) -> None:
        if wire is not self._wire:
            return
        self._wire = None
        self._ready.clear()
        if self._closed is not None:
            return
        if not self._reconnect:
            self._end(connection_lost("connection to the daemon closed"))
            return
        self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 0.05
        while self._closed is None:
            await asyncio.sleep(delay)
            try:
                await self.open()
            except (OSError, IkigaiError) as error:
                if isinstance(error, IkigaiError) and not error.retriable:
                    self._end(error)
                    return
                delay = min(delay * 2, 2.0)
                continue
            try:
                for hook in self._hooks:
                    await hook()
            except IkigaiError:
                pass  # lost again: the next reconnection runs the hooks again
            return

    def _end(self, error: IkigaiError) -> None:
        self._closed = error
        self._ready.set()

    async def close(self) -> None:
        """Closes the connection for good; calls in flight fail with `unavailable`."""
        self._end(connection_lost("the client was closed"))
        if self._reconnecting is not None:
            self._reconnecting.cancel()
        wire, self._wire = self._wire, None
        if wire is not None:
            wire.close()
            await wire.lost
