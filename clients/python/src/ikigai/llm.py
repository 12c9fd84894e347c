"""LLM access (§17): `platform.prompt` (optionally streamed), custom tools answered by the
client itself, `platform.threads` (`thread="default"`: the agent's default thread, §18), and the
admin's usage report."""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from .connection import Connection
from .transaction import wire_args
from .types import JSON, ChatMessage, LlmUsage, PromptReply

ToolHandler = Callable[[dict[str, JSON]], JSON | Awaitable[JSON]]


@dataclass
class Tool:
    """A custom tool: the model sees name, description and parameters (a JSON schema); the
    client runs `handler(arguments)` and answers the call with what it returns (an exception
    is answered as an error)."""

    name: str
    handler: ToolHandler
    description: str = ""
    parameters: dict[str, JSON] = field(default_factory=lambda: {"type": "object"})

    def offer(self) -> dict[str, JSON]:
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclass
class Thread:
    id: str


Tools = Mapping[str, Sequence[Any]]
"""`{"platform": [names], "custom": [Tool, ...]}`."""

IfBusy = Literal["wait", "reject"]
"""What a prompt on a thread another prompt is running on does (§18)."""


class PromptStream:
    """`async for delta in platform.prompt(..., stream=True)`: the text as it arrives; then
    `reply` holds the whole answer (or `await stream.result()`)."""

    def __init__(
        self, run: Callable[[Callable[[str], None]], Coroutine[Any, Any, PromptReply]]
    ) -> None:
        self._deltas: asyncio.Queue[str | None] = asyncio.Queue()
        self._run = run
        self._task: asyncio.Task[PromptReply] | None = None
        self.reply: PromptReply | None = None

    def _start(self) -> asyncio.Task[PromptReply]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(self._deltas.put_nowait))
            self._task.add_done_callback(lambda _: self._deltas.put_nowait(None))
        return self._task

    def __aiter__(self) -> AsyncIterator[str]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str]:
        task = self._start()
        while (delta := await self._deltas.get()) is not None:
            yield delta
        self.reply = await task

    async def result(self) -> PromptReply:
        """The reply, once the prompt has finished (deltas not yet read are dropped)."""
        self.reply = await self._start()
        return self.reply


class Llm:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def run_prompt(
        self, args: dict[str, Any], tools: Tools | None, on_delta: Callable[[str], None] | None
    ) -> PromptReply:
        handlers = {
            t.name: t.handler for t in (tools or {}).get("custom", []) if isinstance(t, Tool)
        }
        if tools is not None:
            args["tools"] = {
                kind: [t.offer() if isinstance(t, Tool) else t for t in offered]
                for kind, offered in tools.items()
            }
        answering: set[asyncio.Task[None]] = set()

        def on_push(name: str, data: Any) -> None:
            if name == "llm.delta" and on_delta is not None:
                on_delta(data["delta"])
            elif name == "llm.tool_call":
                task = asyncio.get_running_loop().create_task(
                    self._answer(handlers, data["tool_call"])
                )
                answering.add(task)
                task.add_done_callback(answering.discard)

        return cast(PromptReply, await self._connection.call("llm.prompt", args, on_push=on_push))

    async def _answer(self, handlers: dict[str, ToolHandler], call: dict[str, Any]) -> None:
        handler = handlers.get(call["name"])
        try:
            if handler is None:
                raise LookupError(f"no handler for tool {call['name']!r}")
            content = handler(call.get("arguments") or {})
            if inspect.isawaitable(content):
                content = await content
            await self.tool_result(call["id"], content)
        except Exception as error:  # noqa: BLE001 - whatever a handler raises, the model is told
            await self.tool_result(call["id"], f"{type(error).__name__}: {error}", is_error=True)

    async def tool_result(self, call_id: str, content: JSON, *, is_error: bool = False) -> None:
        """Answers a custom tool call (the client does this itself for `Tool` handlers)."""
        if not isinstance(content, str):
            content = json.dumps(content)
        await self._connection.call(
            "llm.tool_result", {"call_id": call_id, "content": content, "is_error": is_error}
        )

    async def usage(self, *, since_ms: int | None = None) -> list[LlmUsage]:
        """Admin: calls, tokens and cost per agent and model alias."""
        reply = await self._connection.call("llm.usage", wire_args(since_ms=since_ms))
        return cast(list[LlmUsage], reply["usage"])


def prompt_args(
    model: str | None,
    messages: Sequence[ChatMessage],
    thread: str | Thread | None,
    max_tokens: int | None,
    temperature: float | None,
    metadata: Mapping[str, JSON] | None,
    if_busy: IfBusy | None,
    stream: bool,
) -> dict[str, Any]:
    thread_id = thread.id if isinstance(thread, Thread) else thread
    return wire_args(
        model=model,
        messages=list(messages),
        thread=thread_id,
        max_tokens=max_tokens,
        temperature=temperature,
        metadata=metadata,
        if_busy=if_busy,
        stream=stream or None,
    )


class Threads:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    async def create(self, context: str | None = None) -> Thread:
        reply = await self._connection.call("threads.create", wire_args(context=context))
        return Thread(reply["id"])
