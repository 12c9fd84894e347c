"""One agent scenario through each client's agent program against the same daemon: claim a task,
prompt with a platform tool, store the result, send a message and complete the task in one
transaction; killed mid-transaction, all of it rolls back. The TypeScript program is the one
its suite builds (`npm test` in clients/typescript, which scripts/test runs first)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, Testbed, llm_manifest

from ikigai import Platform

PROGRAMS = {
    "python": [sys.executable, str(Path(__file__).parent / "fixtures/scenario_agent.py")],
    "typescript": ["node", str(REPO / "clients/typescript/dist/test/fixtures/scenario_agent.js")],
}
MANIFEST = llm_manifest(models=["haiku"], platform_tools=["query_telemetry"])


async def start(
    bed: Testbed, program: str, identity: tuple[str, str], queue: str, report_to: str, hang: bool
) -> asyncio.subprocess.Process:
    command = PROGRAMS[program]
    assert Path(command[1]).exists(), f"{command[1]} is missing: build the TypeScript client"
    name, token = identity
    env = {
        **os.environ,
        "IKIGAI_SOCKET": bed.socket,
        "IKIGAI_AGENT": name,
        "IKIGAI_TOKEN": token,
        "QUEUE": queue,
        "REPORT_TO": report_to,
        "HANG": "1" if hang else "",
        "PYTHONPATH": str(REPO / "clients/python/src"),
    }
    return await asyncio.create_subprocess_exec(*command, env=env, stdout=subprocess.PIPE)


@pytest.mark.parametrize("program", PROGRAMS)
async def test_the_scenario_commits_every_write_together(bed: Testbed, program: str) -> None:
    identity = await bed.identity("scenario", MANIFEST)
    owner = await Platform.connect(bed.socket, *identity)
    reporter = await bed.agent("reporter")
    queue = owner.queue(f"scenario-{owner.agent}")
    pushed = await queue.push({"ticket": 7})
    bed.script(
        {"tool_call": {"id": "t1", "name": "query_telemetry", "arguments": {}}},
        {"text": "All quiet."},
    )
    agent = await start(bed, program, identity, queue.name, reporter.agent, hang=False)
    assert await asyncio.wait_for(agent.wait(), 30) == 0
    document = await owner.storage.get(f"summary/{pushed['id']}")
    assert document is not None and document["value"] == "All quiet."
    [message] = await reporter.mailbox().receive(wait_ms=5000)
    assert message["payload"] == {"task": pushed["id"], "summary": "All quiet."}
    page = await queue.list(state="completed")
    assert [t["result"] for t in page["tasks"]] == [{"summary": "All quiet."}]
    await owner.close()
    await reporter.close()


@pytest.mark.parametrize("program", PROGRAMS)
async def test_killed_mid_transaction_everything_rolls_back(bed: Testbed, program: str) -> None:
    identity = await bed.identity("scenario", MANIFEST)
    owner = await Platform.connect(bed.socket, *identity)
    reporter = await bed.agent("reporter")
    queue = owner.queue(f"scenario-{owner.agent}")
    pushed = await queue.push({"ticket": 8})
    bed.script({"text": "Half done."})
    agent = await start(bed, program, identity, queue.name, reporter.agent, hang=True)
    assert agent.stdout is not None
    line = await asyncio.wait_for(agent.stdout.readline(), 30)
    assert line.strip() == b"in transaction"
    agent.kill()
    await agent.wait()
    task = await queue.claim(wait_ms=10_000)
    assert task is not None and task.id == pushed["id"]
    assert task.attempts == 1, "the rolled-back claim did not count"
    assert await owner.storage.get(f"summary/{pushed['id']}") is None
    assert await reporter.mailbox().receive() == []
    await task.release()
    await owner.close()
    await reporter.close()
