"""When the daemon restarts, the client reconnects and says hello again: calls in flight fail
with a retriable `unavailable`; a waiting receive, a waiting claim and a subscription resume."""

import asyncio

import pytest
from support import Testbed

from ikigai import IkigaiError


async def test_the_client_survives_a_daemon_restart(bed: Testbed) -> None:
    p = await bed.agent()
    box = p.mailbox()
    subscription = await p.pubsub.subscribe(f"re.{p.agent}")
    waiting = asyncio.ensure_future(box.receive(wait_ms=20_000))
    queue = p.queue(f"rq-{p.agent}")
    claiming = asyncio.ensure_future(queue.claim(wait_ms=20_000))
    await asyncio.sleep(0.2)
    first_session = p.hello["session"]
    await asyncio.to_thread(bed.command, "restart")
    for _ in range(200):
        if p.hello["session"] != first_session:
            break
        await asyncio.sleep(0.05)
    assert p.hello["session"] != first_session
    sender = await bed.agent()
    await sender.mailbox(p.agent).send("after restart")
    got = await asyncio.wait_for(waiting, 10)
    assert [m["payload"] for m in got] == ["after restart"]
    await sender.queue(queue.name).push("task after restart")
    task = await asyncio.wait_for(claiming, 10)
    assert task is not None and task.payload == "task after restart"
    await asyncio.sleep(0.1)
    await sender.pubsub.publish(f"re.{p.agent}", "again")
    assert (await subscription.next(timeout=5))["message"] == "again"
    await sender.close()
    await p.close()


async def test_a_call_in_flight_fails_retriable_when_the_daemon_dies(bed: Testbed) -> None:
    p = await bed.agent()
    in_flight = asyncio.ensure_future(
        p.connection.call("mailbox.receive", {"mailbox": p.agent, "wait_ms": 20_000})
    )
    await asyncio.sleep(0.2)
    await asyncio.to_thread(bed.command, "restart")
    with pytest.raises(IkigaiError) as caught:
        await in_flight
    assert caught.value.code == "unavailable" and caught.value.retriable
    await p.ping()
    await p.close()
