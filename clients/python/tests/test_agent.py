"""An agent's life: the README's five-line agent serves its queue and stops on SIGTERM; a stop
releases the task whose handler does not finish within the grace."""

import asyncio
import os
import signal
import sys

from support import REPO, Testbed

from ikigai.agent import Agent

ECHO_AGENT = REPO / "clients/python/examples/echo_agent.py"


async def test_the_five_line_agent_completes_a_task_and_stops_on_sigterm(bed: Testbed) -> None:
    admin = await bed.admin()
    name = "echo-readme"
    env = {
        **os.environ,
        "IKIGAI_SOCKET": bed.socket,
        "IKIGAI_AGENT": name,
        "IKIGAI_TOKEN": await admin.agents.token(name),
    }
    agent = await asyncio.create_subprocess_exec(sys.executable, str(ECHO_AGENT), env=env)
    pushed = await admin.queue("my-tasks").push({"hello": "world"})
    for _ in range(200):
        done = (await admin.queue("my-tasks").list(state="completed"))["tasks"]
        if done:
            break
        await asyncio.sleep(0.05)
    assert [(t["id"], t["result"]) for t in done] == [(pushed["id"], {"echo": {"hello": "world"}})]
    agent.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(agent.wait(), 10) == 0
    await admin.close()


async def test_a_stop_releases_the_task_a_handler_still_holds(bed: Testbed) -> None:
    platform = await bed.agent()
    queue = platform.queue(f"slow-{platform.agent}")
    await queue.push("slow job")
    agent = Agent(platform, grace_s=0.1)
    started = asyncio.Event()

    async def forever(task: object) -> None:
        started.set()
        await asyncio.sleep(3600)

    serving = asyncio.ensure_future(agent.serve_queue(queue.name, forever))
    await asyncio.wait_for(started.wait(), 5)
    agent.stop()
    await asyncio.wait_for(serving, 5)
    again = await queue.claim()
    assert again is not None and again.attempts == 1 and again.payload == "slow job"
    await platform.close()
