"""The replies of the ops (docs/protocol.md), as they come off the wire."""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

JSON = Any
"""A JSON-compatible value (§6): None, bool, int, float, str, list, dict with str keys."""


class Hello(TypedDict):
    protocol: int
    daemon: str
    version: str
    session: str


class DaemonStatus(TypedDict):
    daemon: str
    version: str
    pid: int
    uptime_ms: int
    root: str
    database: str
    schema_version: int
    config: str
    connections: int
    mailboxes_running: int
    queues_running: int
    threads_running: int


class Message(TypedDict):
    id: str
    mailbox: str
    sender: str
    payload: JSON
    created_at: str
    attempts: int


class MailboxStats(TypedDict):
    mailbox: str
    unread: int
    read: int
    oldest_unread_at: str | None
    ready: int
    in_flight: int
    waiting: int


class TaskSpec(TypedDict, total=False):
    """One task of `queue.push_many`: `payload` and the options of `queue.push`."""

    payload: JSON
    priority: int
    scheduled_for: str
    delay_ms: int
    max_attempts: int
    dedup_key: str


class Pushed(TypedDict):
    id: str
    created: bool


class TaskRecord(TypedDict):
    id: str
    seq: int
    queue: str
    payload: JSON
    priority: int
    scheduled_for: str
    created_at: str
    attempts: int
    max_attempts: int
    claimed_by: str | None
    lease_until: str | None
    completed_at: str | None
    failed_at: str | None
    error: str | None
    result: JSON
    dedup_key: str | None


class TaskPage(TypedDict):
    tasks: list[TaskRecord]
    next: int | None


class QueueStats(TypedDict):
    queue: str
    pending: int
    scheduled: int
    claimed: int
    completed: int
    dead: int
    ready_in_memory: int
    waiting: int


class Document(TypedDict):
    key: str
    value: JSON
    version: int
    updated_at: str


class DocumentPage(TypedDict):
    documents: list[Document]
    next: str | None


class Event(TypedDict):
    id: str
    agent: str
    event_type: str
    payload: JSON
    created_at: str


class PubSubMessage(TypedDict):
    topic: str
    message: JSON
    published_at: str


class ToolCall(TypedDict):
    id: str
    name: str
    arguments: dict[str, JSON]


class ChatMessage(TypedDict, total=False):
    role: str
    content: str
    tool_calls: list[ToolCall]
    tool_call_id: str
    is_error: bool


class Usage(TypedDict):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int


class PromptReply(TypedDict):
    id: str
    content: str
    usage: Usage
    cost_usd: float
    model: str
    provider: str
    provider_model: str
    stop_reason: str
    steps: int
    tool_calls: NotRequired[list[ToolCall]]
    thread: NotRequired[str]


class LlmUsage(TypedDict):
    agent: str
    model: str
    calls: int
    input_tokens: int
    output_tokens: int
    tokens: int
    cost_usd: float
    errors: int


class AgentEntry(TypedDict):
    name: str
    version: str
    status: str
    deployed_at: str
    last_heartbeat: str | None
    server: str
    daemon_id: str
    pid: int | None
    restarts: int
    manifest: dict[str, JSON]


class AgentFile(TypedDict, total=False):
    path: str
    hex: str
    executable: bool


class Deployed(TypedDict):
    name: str
    version: str


class AgentToken(TypedDict):
    agent: str
    token: str


class StoredAsset(TypedDict):
    """A named, persistent section of the agent's context (§18), carried by every prompt."""

    label: str
    value: str
    limit: int
    description: str | None
    version: int
    chars: int
    updated_at: str


class AssetVersion(TypedDict):
    version: int
    value: str
    limit: int
    description: str | None
    updated_at: str
    deleted: NotRequired[bool]
    """True on the version that recorded a deletion of the label (its value empty); the daemon
    adds it, section 18 does not list it."""


class StoredAssetWithHistory(StoredAsset):
    """`assets.get`: the asset and up to `history` earlier versions, newest first (absent when
    none were asked for)."""

    history: NotRequired[list[AssetVersion]]


class Mark(TypedDict):
    """A restoration point: its id, its label, and the messages of the history before it."""

    mark: str
    label: str
    position: int


class Summary(TypedDict):
    """`context.summarize`: no model call (`id` None) when nothing was in range."""

    summarized: int
    summary: str | None
    id: str | None
    usage: NotRequired[Usage]
    cost_usd: NotRequired[float]


class WindowSetting(TypedDict):
    """A thread's window; `tokens` None: the model's context size."""

    tokens: int | None
    strategy: str


class _HistoryMessage(ChatMessage):
    id: int
    exchange: str | None
    created_at: str


class ConversationMessage(_HistoryMessage):
    """A message of a thread's history: `id` its position, `exchange` the `id` of its prompt's
    reply (None for a message stored before the daemon kept exchanges), `state` one of
    `context`, `summarized`, `rewound`, `excluded`, `deleted`."""

    state: str


class FoundMessage(_HistoryMessage):
    """A message of `conversation.search`, and its thread (the daemon may leave `state` out)."""

    state: NotRequired[str]
    thread: str
