"""Memory and context (§18): the agent's stored assets, and the context and history of its
threads. `platform.context` and `platform.conversation` work on the agent's default thread
(`conversation.search`: on all its threads); `platform.thread(id)` gives the same two for one
thread (`DEFAULT_THREAD` names the default)."""

from __future__ import annotations

from typing import Any, Literal, cast

from .connection import Connection
from .llm import Thread
from .transaction import wire_args
from .types import (
    ConversationMessage,
    FoundMessage,
    Mark,
    StoredAsset,
    StoredAssetWithHistory,
    Summary,
    WindowSetting,
)

DEFAULT_THREAD = "default"
"""The thread each agent has, created on first use: `prompt(thread=DEFAULT_THREAD, ...)`."""

WindowStrategy = Literal["truncate", "summarize"]


class StoredAssets:
    """`platform.stored_assets`: the agent's assets (`assets.*`), in every prompt it makes."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def create(
        self, label: str, value: str, limit: int, *, description: str | None = None
    ) -> StoredAsset:
        """A new asset (`conflict` if the label exists). `limit` is in characters; a longer
        value is refused (`bad_request`), never cut."""
        args = wire_args(label=label, value=value, limit=limit, description=description)
        return cast(StoredAsset, await self._connection.call("assets.create", args))

    async def update(
        self,
        label: str,
        *,
        value: str | None = None,
        limit: int | None = None,
        description: str | None = None,
    ) -> StoredAsset:
        """Its next version, with at least one of these changed."""
        args = wire_args(label=label, value=value, limit=limit, description=description)
        return cast(StoredAsset, await self._connection.call("assets.update", args))

    async def get(self, label: str, *, history: int | None = None) -> StoredAssetWithHistory:
        """The asset, with up to `history` (0 to 1000) earlier versions, newest first."""
        args = wire_args(label=label, history=history)
        return cast(StoredAssetWithHistory, await self._connection.call("assets.get", args))

    async def list(self) -> list[StoredAsset]:
        """Every asset, in the order prompts carry them."""
        reply = await self._connection.call("assets.list", {})
        return cast(list[StoredAsset], reply["assets"])

    async def delete(self, label: str) -> None:
        """Takes the label out of every prompt (its versions stay stored)."""
        await self._connection.call("assets.delete", {"label": label})


class _OnThread:
    """The ops of one thread (None: the default one): every call names it."""

    def __init__(self, connection: Connection, thread: str | None) -> None:
        self._connection = connection
        self._thread = thread

    async def _call(self, op: str, **args: Any) -> Any:
        return await self._connection.call(op, wire_args(**args, thread=self._thread))


class ContextWindow(_OnThread):
    """`context.window`: each call returns the thread's setting after it."""

    async def get(self) -> WindowSetting:
        return cast(WindowSetting, await self._call("context.window"))

    async def resize(self, tokens: int) -> WindowSetting:
        """Fits the context in `tokens` (256 to 10000000)."""
        return cast(WindowSetting, await self._call("context.window", tokens=tokens))

    async def strategy(self, strategy: WindowStrategy) -> WindowSetting:
        """What happens to the oldest exchanges that do not fit: `truncate` or `summarize`."""
        return cast(WindowSetting, await self._call("context.window", strategy=strategy))

    async def reset(self) -> WindowSetting:
        """Back to the model's context size."""
        return cast(WindowSetting, await self._call("context.window", reset=True))


class Context(_OnThread):
    """What the model sees of a thread (`context.*`); the history itself is never rewritten."""

    def __init__(self, connection: Connection, thread: str | None) -> None:
        super().__init__(connection, thread)
        self.window = ContextWindow(connection, thread)

    async def mark(self, label: str) -> Mark:
        """A restoration point (`label`: 1 to 200 characters)."""
        return cast(Mark, await self._call("context.mark", label=label))

    async def rewind(self, mark: Mark | str) -> int:
        """Takes everything after the mark (a `Mark`, or its id or label) out of the context;
        returns the number of messages taken out."""
        ref = mark if isinstance(mark, str) else mark["mark"]
        return cast(int, (await self._call("context.rewind", mark=ref))["rewound"])

    async def exclude(self, exchange: str) -> int:
        """Takes an exchange (the `id` of a prompt's reply) out of the context; returns its
        number of messages (0: it was already out)."""
        return cast(int, (await self._call("context.exclude", id=exchange))["excluded"])

    async def summarize(
        self, *, older_than: str | int | None = None, before: int | None = None
    ) -> Summary:
        """Replaces the exchanges in range by one summary: exactly one of `older_than`
        (`"90s"`, `"30m"`, `"1h"`, `"2d"`, or milliseconds) and `before` (a message id)."""
        reply = await self._call("context.summarize", older_than=older_than, before=before)
        return cast(Summary, reply)


class Conversation(_OnThread):
    """A thread's history (`conversation.*`)."""

    async def delete(self, id: int) -> None:
        """Erases a message's content for good; it keeps its place in its exchange."""
        await self._call("conversation.delete", id=id)

    async def search(self, text: str, *, limit: int | None = None) -> list[FoundMessage]:
        """Messages matching `text` (Postgres web search syntax), best first;
        `platform.conversation` searches every thread of the agent."""
        reply = await self._call("conversation.search", text=text, limit=limit)
        return cast(list[FoundMessage], reply["messages"])

    # Last: `list` would shadow the builtin in the annotations above.
    async def list(
        self, *, limit: int | None = None, before: int | None = None
    ) -> list[ConversationMessage]:
        """Up to `limit` (1 to 1000, default 50) messages before message id `before` (default:
        the newest), oldest first."""
        reply = await self._call("conversation.list", limit=limit, before=before)
        return cast(list[ConversationMessage], reply["messages"])


class ThreadScope:
    """One thread's `context` and `conversation`, as `platform.thread(id)` gives them."""

    def __init__(self, connection: Connection, thread: str | Thread | None) -> None:
        self.id = thread.id if isinstance(thread, Thread) else thread
        self.context = Context(connection, self.id)
        self.conversation = Conversation(connection, self.id)
