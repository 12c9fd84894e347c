"""Without a daemon: each memory call (§18) and `if_busy` send their op with the protocol's args,
and a thread handle names its thread in every call."""

from collections.abc import Awaitable, Callable
from typing import Any, cast

import pytest

from ikigai import DEFAULT_THREAD, Platform, Thread
from ikigai.connection import Connection


class Recorder:
    """A connection that records what is sent and answers with a plausible reply."""

    agent = "recorder"

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def on_reconnect(self, _: object) -> None:
        pass

    async def call(self, op: str, args: dict[str, Any], **_: Any) -> Any:
        self.sent.append((op, args))
        return {"assets": [], "messages": [], "rewound": 0, "excluded": 0}


T = "thread-1"
CASES: list[tuple[Callable[[Platform], Awaitable[Any]], str, dict[str, Any]]] = [
    (
        lambda p: p.prompt(messages=[], thread=DEFAULT_THREAD, if_busy="reject"),
        "llm.prompt",
        {"messages": [], "thread": "default", "if_busy": "reject"},
    ),
    (
        lambda p: p.stored_assets.create("l", "v", 10, description="d"),
        "assets.create",
        {"label": "l", "value": "v", "limit": 10, "description": "d"},
    ),
    (lambda p: p.stored_assets.update("l", limit=20), "assets.update", {"label": "l", "limit": 20}),
    (lambda p: p.stored_assets.get("l", history=3), "assets.get", {"label": "l", "history": 3}),
    (lambda p: p.stored_assets.list(), "assets.list", {}),
    (lambda p: p.stored_assets.delete("l"), "assets.delete", {"label": "l"}),
    (lambda p: p.context.mark("before"), "context.mark", {"label": "before"}),
    (
        lambda p: p.thread(T).context.mark("before"),
        "context.mark",
        {"label": "before", "thread": T},
    ),
    (
        lambda p: p.context.rewind({"mark": "m1", "label": "before", "position": 2}),
        "context.rewind",
        {"mark": "m1"},
    ),
    (
        lambda p: p.thread(Thread(T)).context.rewind("before"),
        "context.rewind",
        {"mark": "before", "thread": T},
    ),
    (
        lambda p: p.thread(DEFAULT_THREAD).context.exclude("x1"),
        "context.exclude",
        {"id": "x1", "thread": "default"},
    ),
    (
        lambda p: p.context.summarize(older_than="1h"),
        "context.summarize",
        {"older_than": "1h"},
    ),
    (
        lambda p: p.thread(T).context.summarize(before=7),
        "context.summarize",
        {"before": 7, "thread": T},
    ),
    (lambda p: p.context.window.get(), "context.window", {}),
    (
        lambda p: p.thread(T).context.window.resize(16000),
        "context.window",
        {"tokens": 16000, "thread": T},
    ),
    (
        lambda p: p.context.window.strategy("summarize"),
        "context.window",
        {"strategy": "summarize"},
    ),
    (lambda p: p.context.window.reset(), "context.window", {"reset": True}),
    (
        lambda p: p.conversation.list(limit=50, before=9),
        "conversation.list",
        {"limit": 50, "before": 9},
    ),
    (
        lambda p: p.thread(T).conversation.delete(4),
        "conversation.delete",
        {"id": 4, "thread": T},
    ),
    (
        lambda p: p.conversation.search("batch -done", limit=5),
        "conversation.search",
        {"text": "batch -done", "limit": 5},
    ),
    (
        lambda p: p.thread(T).conversation.search("batch"),
        "conversation.search",
        {"text": "batch", "thread": T},
    ),
]


@pytest.mark.parametrize(("invoke", "op", "args"), CASES)
async def test_each_call_sends_its_op_and_args(
    invoke: Callable[[Platform], Awaitable[Any]], op: str, args: dict[str, Any]
) -> None:
    recorder = Recorder()
    await invoke(Platform(cast(Connection, recorder)))
    assert recorder.sent[-1] == (op, args)
