"""Each service through the client against the real daemon."""

import asyncio

import pytest
from support import Testbed

from ikigai import IkigaiError


async def test_a_message_sent_is_received_and_acked_once(bed: Testbed) -> None:
    alice = await bed.agent()
    box = alice.mailbox()
    ids = [await box.send({"n": n}) for n in range(3)]
    got = await box.receive(max=10, wait_ms=1000)
    assert [m["id"] for m in got] == ids and got[0]["payload"] == {"n": 0}
    assert await box.ack(got) == 3
    assert await box.peek() == []
    await alice.close()


async def test_someone_elses_mailbox_is_refused_with_a_typed_error(bed: Testbed) -> None:
    alice = await bed.agent()
    with pytest.raises(IkigaiError) as caught:
        await alice.mailbox("not-alice").receive()
    assert caught.value.code == "permission_denied" and caught.value.retriable is False
    await alice.close()


async def test_a_claimed_task_completes_fails_and_releases(bed: Testbed) -> None:
    worker = await bed.agent()
    queue = worker.queue(f"q-{worker.agent}")
    pushed = await queue.push({"job": 1}, priority=5)
    assert pushed["created"]
    await queue.push_many([{"payload": {"job": 2}}, {"payload": {"job": 3}}])
    task = await queue.claim(wait_ms=1000)
    assert task is not None and task.payload == {"job": 1}
    assert (await task.extend(60_000)).endswith("Z")
    assert (await task.complete({"ok": True}))["completed_at"] is not None
    second, third = await queue.claim_many(2)
    assert (await second.fail("boom", retry_in_ms=60_000))["error"] == "boom"
    assert (await third.release())["claimed_by"] is None
    stats = await queue.stats()
    assert (stats["completed"], stats["scheduled"], stats["pending"]) == (1, 1, 1)
    assert len((await queue.list())["tasks"]) == 3
    await worker.close()


async def test_cache_values_expire_count_and_delete(bed: Testbed) -> None:
    p = await bed.agent()
    await p.cache.set("k", {"v": 1})
    assert await p.cache.get("k") == {"v": 1}
    assert await p.cache.get("absent", "dflt") == "dflt"
    assert await p.cache.incr("n", 5) == 5
    assert await p.cache.get_many(["k", "n", "x"]) == {"k": {"v": 1}, "n": 5}
    assert await p.cache.delete("k") is True
    await p.cache.set("short", 1, ttl_ms=1)
    await asyncio.sleep(0.05)
    assert await p.cache.get("short") is None
    await p.close()


async def test_storage_versions_and_conflicts(bed: Testbed) -> None:
    p = await bed.agent()
    assert await p.storage.put("doc/1", {"a": 1}) == 1
    assert await p.storage.put("doc/1", {"a": 2}, if_version=1) == 2
    with pytest.raises(IkigaiError) as caught:
        await p.storage.put("doc/1", {"a": 3}, if_version=1)
    assert caught.value.code == "conflict"
    document = await p.storage.get("doc/1")
    assert document is not None and document["value"] == {"a": 2}
    assert [d["key"] for d in (await p.storage.list("doc/"))["documents"]] == ["doc/1"]
    assert await p.storage.delete("doc/1") is True and await p.storage.get("doc/1") is None
    await p.close()


async def test_a_subscription_iterates_published_messages(bed: Testbed) -> None:
    sub_side, pub_side = await bed.agent(), await bed.agent()
    topic = f"t.{sub_side.agent}"
    async with await sub_side.pubsub.subscribe(f"{topic}.*") as subscription:
        assert await pub_side.pubsub.publish(f"{topic}.a", {"n": 1}) == 1
        message = await subscription.next(timeout=5)
        assert message["topic"] == f"{topic}.a" and message["message"] == {"n": 1}
    await sub_side.close()
    await pub_side.close()


async def test_telemetry_emitted_is_queried(bed: Testbed) -> None:
    p = await bed.agent()
    await p.telemetry.emit("metric", {"latency": 3})
    for _ in range(100):
        events = await p.telemetry.query(event_type="metric")
        if events:
            break
        await asyncio.sleep(0.02)
    assert events[0]["payload"] == {"latency": 3} and events[0]["agent"] == p.agent
    await p.close()


async def test_the_registry_lists_and_heartbeats_a_deployed_agent(bed: Testbed) -> None:
    p = await bed.agent(manifest={})
    await p.agents.heartbeat()
    entry = await p.agents.get(p.agent)
    assert entry["name"] == p.agent and entry["last_heartbeat"] is not None
    assert p.agent in [a["name"] for a in await p.agents.list()]
    assert (await p.status())["daemon"] == "ikigai"
    await p.ping()
    await p.close()
