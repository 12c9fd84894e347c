"""`Platform`: the connected client, one attribute or method per service."""

from __future__ import annotations

import os
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, Literal, Self, cast, overload

from .agents import Agents, Debug
from .cache import Cache
from .connection import Connection
from .errors import IkigaiError
from .llm import IfBusy, Llm, PromptStream, Thread, Threads, Tools, prompt_args
from .mailbox import Mailbox, mailbox_stats
from .memory import StoredAssets, ThreadScope
from .pubsub import PubSub
from .queue import Queue
from .storage import Storage
from .telemetry import Telemetry
from .transaction import Transaction, TransactionScope, begin
from .types import JSON, ChatMessage, DaemonStatus, Hello, MailboxStats, PromptReply


class Platform:
    """`platform = await Platform.connect()`; every op of docs/protocol.md is a method here or
    on the objects it hands out (see `ikigai.ops.OPS`)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.agent = connection.agent
        self.cache = Cache(connection)
        self.pubsub = PubSub(connection)
        self.storage = Storage(connection)
        self.telemetry = Telemetry(connection)
        self.threads = Threads(connection)
        self.agents = Agents(connection)
        self.llm = Llm(connection)
        self.stored_assets = StoredAssets(connection)
        default = ThreadScope(connection, None)
        self.context = default.context
        """The default thread's context; `platform.thread(id).context`: another thread's."""
        self.conversation = default.conversation
        """The default thread's history; its `search` looks in every thread of the agent."""
        self.debug = Debug(connection)

    @classmethod
    async def connect(
        cls,
        socket: str | None = None,
        agent: str | None = None,
        token: str | None = None,
        *,
        reconnect: bool = True,
        reconnect_timeout: float = 30.0,
    ) -> Platform:
        """Connects and says hello. Defaults: `IKIGAI_SOCKET`, else `../../daemon.sock`
        (relative to the working directory); `IKIGAI_AGENT` and `IKIGAI_TOKEN`."""
        socket = socket or os.environ.get("IKIGAI_SOCKET") or "../../daemon.sock"
        agent = agent or _env("IKIGAI_AGENT")
        token = token or _env("IKIGAI_TOKEN")
        connection = Connection(
            socket, agent, token, reconnect=reconnect, reconnect_timeout=reconnect_timeout
        )
        await connection.open()
        return cls(connection)

    @property
    def hello(self) -> Hello:
        """The daemon's answer to this connection's latest `hello`."""
        return cast(Hello, self.connection.hello)

    async def close(self) -> None:
        await self.connection.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def ping(self) -> None:
        await self.connection.call("ping", {})

    async def status(self) -> DaemonStatus:
        return cast(DaemonStatus, await self.connection.call("daemon.status", {}))

    def queue(self, name: str) -> Queue:
        return Queue(self.connection, name)

    def mailbox(self, name: str | None = None) -> Mailbox:
        """A mailbox by name; by default the agent's own."""
        return Mailbox(self.connection, name or self.agent)

    def thread(self, thread: str | Thread) -> ThreadScope:
        """The context and conversation of a thread (from `threads.create`, or
        `DEFAULT_THREAD`)."""
        return ThreadScope(self.connection, thread)

    async def mailbox_stats(self, name: str | None = None) -> list[MailboxStats]:
        """Rows of `mailbox.stats`: the caller's own, or (admin, no name) every mailbox."""
        return await mailbox_stats(self.connection, name)

    def transaction(self) -> TransactionScope:
        """`async with platform.transaction() as tx:` commits on a normal exit, rolls back
        when the block raises."""
        return TransactionScope(self.connection)

    async def begin(self) -> Transaction:
        """Opens a transaction to end by hand with `commit()` or `rollback()`."""
        return await begin(self.connection)

    @overload
    def prompt(
        self,
        *,
        messages: Sequence[ChatMessage],
        model: str | None = None,
        thread: str | Thread | None = None,
        tools: Tools | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        metadata: Mapping[str, JSON] | None = None,
        if_busy: IfBusy | None = None,
        stream: Literal[False] = False,
    ) -> Coroutine[Any, Any, PromptReply]: ...

    @overload
    def prompt(
        self,
        *,
        messages: Sequence[ChatMessage],
        model: str | None = None,
        thread: str | Thread | None = None,
        tools: Tools | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        metadata: Mapping[str, JSON] | None = None,
        if_busy: IfBusy | None = None,
        stream: Literal[True],
    ) -> PromptStream: ...

    def prompt(
        self,
        *,
        messages: Sequence[ChatMessage],
        model: str | None = None,
        thread: str | Thread | None = None,
        tools: Tools | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        metadata: Mapping[str, JSON] | None = None,
        if_busy: IfBusy | None = None,
        stream: bool = False,
    ) -> Coroutine[Any, Any, PromptReply] | PromptStream:
        """`await platform.prompt(...)` for the reply; with `stream=True`,
        `async for delta in platform.prompt(...)`. Custom tools (`Tool`) in `tools["custom"]`
        are answered by their handlers while the prompt runs. On a thread another prompt is
        running on, `if_busy="wait"` (the default) waits for it, `"reject"` raises `conflict`."""
        args = prompt_args(
            model, messages, thread, max_tokens, temperature, metadata, if_busy, stream
        )
        if stream:
            return PromptStream(lambda on_delta: self.llm.run_prompt(args, tools, on_delta))
        return self.llm.run_prompt(args, tools, None)


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise IkigaiError(
            "bad_request", f"{name} is not set (the daemon sets it for the agents it starts)"
        )
    return value
