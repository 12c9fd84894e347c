"""Memory and context against the real daemon (§18): stored assets and what prompts carry of
them, marks and rewinds, exclusions, summaries, the window, the history (list, delete, search),
the default thread, and `if_busy` on a busy thread."""

import asyncio
import json
from collections.abc import Iterator

import pytest
from support import Testbed, llm_manifest

from ikigai import DEFAULT_THREAD, IkigaiError, Platform
from ikigai.types import PromptReply


@pytest.fixture(scope="module")
def bed() -> Iterator[Testbed]:
    """A testbed of this file's own: what its tests leave in the mock's script stays here."""
    testbed = Testbed()
    yield testbed
    testbed.close()


async def exchange(
    bed: Testbed, p: Platform, thread: str, content: str, answer: str
) -> PromptReply:
    """Prompts `content` on `thread`, answered `answer` by the mock."""
    bed.script({"text": answer})
    return await p.prompt(
        model="haiku", thread=thread, messages=[{"role": "user", "content": content}]
    )


def last_sent(bed: Testbed) -> str:
    return json.dumps(bed.received()[-1]["body"])


async def test_stored_assets_are_versioned_listed_deleted_and_in_every_prompt(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    assets = p.stored_assets
    created = await assets.create("working_state", "batch #1", 100, description="What I do now")
    assert (created["version"], created["chars"], created["description"]) == (1, 8, "What I do now")
    with pytest.raises(IkigaiError) as caught:
        await assets.create("working_state", "again", 100)
    assert caught.value.code == "conflict"
    with pytest.raises(IkigaiError) as caught:
        await assets.update("working_state", value="x" * 101)
    assert caught.value.code == "bad_request"
    assert (await assets.update("working_state", value="batch #1 done"))["version"] == 2
    got = await assets.get("working_state", history=5)
    assert got["value"] == "batch #1 done"
    assert [(v["version"], v["value"]) for v in got["history"]] == [(1, "batch #1")]
    await assets.create("notes", "none yet", 50)
    assert [a["label"] for a in await assets.list()] == ["working_state", "notes"]

    await exchange(bed, p, DEFAULT_THREAD, "what now?", "next batch")
    assert '<asset label=\\"working_state\\"' in last_sent(bed)
    assert "batch #1 done" in last_sent(bed)

    await assets.delete("notes")
    assert [a["label"] for a in await assets.list()] == ["working_state"]
    with pytest.raises(IkigaiError) as caught:
        await assets.get("notes")
    assert caught.value.code == "not_found"
    # Created again: one past the versions of the deleted label, the deletion among them.
    assert (await assets.create("notes", "again", 50))["version"] == 3
    again = (await assets.get("notes", history=5))["history"]
    assert [(v["version"], v.get("deleted", False)) for v in again] == [(2, True), (1, False)]
    await p.close()


async def test_a_rewind_takes_what_follows_the_mark_out_of_the_context(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    created = await p.threads.create()
    thread = p.thread(created)
    await exchange(bed, p, created.id, "first question", "first answer")
    mark = await thread.context.mark("before-analysis")
    assert (mark["label"], mark["position"]) == ("before-analysis", 2)
    await exchange(bed, p, created.id, "analysis question", "analysis answer")
    assert await thread.context.rewind(mark) == 2
    states = [(m["content"], m["state"]) for m in await thread.conversation.list()]
    assert states == [
        ("first question", "context"),
        ("first answer", "context"),
        ("analysis question", "rewound"),
        ("analysis answer", "rewound"),
    ]
    await exchange(bed, p, created.id, "after the rewind", "ok")
    assert "analysis answer" not in last_sent(bed)
    await thread.context.mark("again")
    assert await thread.context.rewind("again") == 0  # by label
    with pytest.raises(IkigaiError) as caught:
        await thread.context.rewind("no-such-mark")
    assert caught.value.code == "not_found"
    await p.close()


async def test_an_excluded_exchange_leaves_the_context(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    thread = (await p.threads.create()).id
    reply = await exchange(bed, p, thread, "a detour", "detour answer")
    assert await p.thread(thread).context.exclude(reply["id"]) == 2
    assert await p.thread(thread).context.exclude(reply["id"]) == 0
    await exchange(bed, p, thread, "back on track", "ok")
    assert "detour answer" not in last_sent(bed)
    await p.close()


async def test_a_summary_replaces_the_exchanges_in_range(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    thread_id = (await p.threads.create()).id
    thread = p.thread(thread_id)
    none = await thread.context.summarize(older_than="1h")
    assert (none["summarized"], none["summary"], none["id"]) == (0, None, None)
    await exchange(bed, p, thread_id, "the long story", "a long answer")
    bed.script({"text": "They talked about a long story."})
    summary = await thread.context.summarize(before=2)
    assert (summary["summarized"], summary["summary"]) == (2, "They talked about a long story.")
    assert summary["id"]
    assert [m["state"] for m in await thread.conversation.list()] == ["summarized"] * 2
    await exchange(bed, p, thread_id, "go on", "ok")
    assert "They talked about a long story." in last_sent(bed)
    await p.close()


async def test_the_window_is_read_and_changed(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    window = p.context.window
    assert await window.get() == {"tokens": None, "strategy": "truncate"}
    assert await window.resize(16000) == {"tokens": 16000, "strategy": "truncate"}
    assert await window.strategy("summarize") == {"tokens": 16000, "strategy": "summarize"}
    assert await window.get() == {"tokens": 16000, "strategy": "summarize"}
    assert await window.reset() == {"tokens": None, "strategy": "summarize"}
    with pytest.raises(IkigaiError) as caught:
        await window.resize(10)
    assert caught.value.code == "bad_request"
    await p.close()


async def test_the_history_is_listed_and_a_message_erased(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    reply = await exchange(bed, p, DEFAULT_THREAD, "my card number is 4242", "noted")
    await exchange(bed, p, DEFAULT_THREAD, "second", "two")
    history = await p.conversation.list()
    assert [(m["id"], m["role"], m["content"]) for m in history] == [
        (0, "user", "my card number is 4242"),
        (1, "assistant", "noted"),
        (2, "user", "second"),
        (3, "assistant", "two"),
    ]
    assert history[0]["exchange"] == reply["id"]
    assert [m["id"] for m in await p.conversation.list(limit=1, before=3)] == [2]
    await p.conversation.delete(0)
    [erased] = await p.conversation.list(limit=1, before=1)
    assert (erased["content"], erased["state"]) == ("[deleted]", "deleted")
    assert len(await p.thread(DEFAULT_THREAD).conversation.list()) == 4
    with pytest.raises(IkigaiError) as caught:
        await p.conversation.delete(99)
    assert caught.value.code == "not_found"
    await p.close()


async def test_a_search_covers_every_thread_or_one(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    thread = (await p.threads.create()).id
    await exchange(bed, p, thread, "the invoice of Oslo", "paid")
    await exchange(bed, p, DEFAULT_THREAD, "an invoice of Bergen", "open")
    assert len({m["thread"] for m in await p.conversation.search("invoice")}) == 2
    found = await p.thread(thread).conversation.search("invoice")
    assert [(m["thread"], m["content"]) for m in found] == [(thread, "the invoice of Oslo")]
    found = await p.conversation.search("invoice -Oslo", limit=1)
    assert [m["content"] for m in found] == ["an invoice of Bergen"]
    await p.close()


async def test_a_busy_thread_waits_or_rejects(bed: Testbed) -> None:
    p = await bed.agent(manifest=llm_manifest())
    thread = (await p.threads.create()).id
    bed.script({"text": "slow", "delay_ms": 1000}, {"text": "waited"})
    user = [{"role": "user", "content": "go"}]
    slow = asyncio.ensure_future(p.prompt(model="haiku", thread=thread, messages=user))
    await asyncio.sleep(0.2)
    with pytest.raises(IkigaiError) as caught:
        await p.prompt(model="haiku", thread=thread, messages=user, if_busy="reject")
    assert caught.value.code == "conflict"
    waiting = await p.prompt(model="haiku", thread=thread, messages=user, if_busy="wait")
    assert ((await slow)["content"], waiting["content"]) == ("slow", "waited")
    await p.close()


async def test_another_agents_thread_is_not_found(bed: Testbed) -> None:
    owner = await bed.agent(manifest=llm_manifest())
    other = await bed.agent(manifest=llm_manifest())
    thread = (await owner.threads.create()).id
    with pytest.raises(IkigaiError) as caught:
        await other.thread(thread).context.mark("x")
    assert caught.value.code == "not_found"
    await owner.close()
    await other.close()
