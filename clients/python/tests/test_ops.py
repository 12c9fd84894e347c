"""Every op heading of docs/protocol.md has a method in the client."""

import re

from support import REPO

import ikigai
from ikigai import agents, cache, llm, memory, pubsub, storage, telemetry
from ikigai.ops import OPS

CLASSES = {
    "Platform": ikigai.Platform,
    "Mailbox": ikigai.Mailbox,
    "Queue": ikigai.Queue,
    "Task": ikigai.Task,
    "Transaction": ikigai.Transaction,
    "Subscription": ikigai.Subscription,
    "Agents": agents.Agents,
    "Debug": agents.Debug,
    "Cache": cache.Cache,
    "PubSub": pubsub.PubSub,
    "Storage": storage.Storage,
    "Telemetry": telemetry.Telemetry,
    "Llm": llm.Llm,
    "Threads": llm.Threads,
    "StoredAssets": memory.StoredAssets,
    "Context": memory.Context,
    "ContextWindow": memory.ContextWindow,
    "Conversation": memory.Conversation,
}


def documented_ops() -> set[str]:
    text = (REPO / "docs/protocol.md").read_text()
    ops = {"hello"}
    for heading in re.findall(r"^### (.*)$", text, re.MULTILINE):
        ops.update(re.findall(r"`([a-z_.]+)`", heading))
    return ops


def test_every_documented_op_has_a_method() -> None:
    missing = documented_ops() - OPS.keys()
    assert not missing, f"ops without a method: {sorted(missing)}"


def test_every_listed_method_exists() -> None:
    for op, path in OPS.items():
        owner, method = path.split(".")
        assert callable(getattr(CLASSES[owner], method, None)), f"{op}: {path} is not a method"
