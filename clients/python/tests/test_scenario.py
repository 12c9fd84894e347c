"""One agent scenario through each client's agent program against the same daemon: claim a task,
prompt with a platform tool, store the result, send a message and complete the task in one
transaction; killed mid-transaction, all of it rolls back. The TypeScript program is the one
its suite builds (`npm test` in clients/typescript), the Rust one `clients/rust/examples`;
scripts/test builds both before this suite runs."""

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
    "rust": [str(REPO / "target/debug/examples/scenario_agent")],
}
MANIFEST = llm_manifest(models=["haiku"], platform_tools=["query_telemetry"])


class Scenario:
    """The scenario agent's identity (and a connection as it), a queue with one task pushed,
    and the agent it reports to."""

    def __init__(self, bed: Testbed, program: str) -> None:
        self.bed, self.command = bed, PROGRAMS[program]
        program_file = self.command[-1]
        assert Path(program_file).exists(), f"{program_file} is missing: run scripts/test"

    async def push(self, ticket: int) -> str:
        self.identity = await self.bed.identity("scenario", MANIFEST)
        self.owner = await Platform.connect(self.bed.socket, *self.identity)
        self.reporter = await self.bed.agent("reporter")
        self.queue = self.owner.queue(f"scenario-{self.owner.agent}")
        return (await self.queue.push({"ticket": ticket}))["id"]

    async def start(self, hang: bool) -> asyncio.subprocess.Process:
        name, token = self.identity
        env = {
            **os.environ,
            "IKIGAI_SOCKET": self.bed.socket,
            "IKIGAI_AGENT": name,
            "IKIGAI_TOKEN": token,
            "QUEUE": self.queue.name,
            "REPORT_TO": self.reporter.agent,
            "HANG": "1" if hang else "",
            "PYTHONPATH": str(REPO / "clients/python/src"),
        }
        return await asyncio.create_subprocess_exec(*self.command, env=env, stdout=subprocess.PIPE)

    async def close(self) -> None:
        await self.owner.close()
        await self.reporter.close()


@pytest.mark.parametrize("program", PROGRAMS)
async def test_the_scenario_commits_every_write_together(bed: Testbed, program: str) -> None:
    scenario = Scenario(bed, program)
    task_id = await scenario.push(7)
    bed.script(
        {"tool_call": {"id": "t1", "name": "query_telemetry", "arguments": {}}},
        {"text": "All quiet."},
    )
    agent = await scenario.start(hang=False)
    assert await asyncio.wait_for(agent.wait(), 30) == 0
    document = await scenario.owner.storage.get(f"summary/{task_id}")
    assert document is not None and document["value"] == "All quiet."
    [message] = await scenario.reporter.mailbox().receive(wait_ms=5000)
    assert message["payload"] == {"task": task_id, "summary": "All quiet."}
    page = await scenario.queue.list(state="completed")
    assert [t["result"] for t in page["tasks"]] == [{"summary": "All quiet."}]
    await scenario.close()


@pytest.mark.parametrize("program", PROGRAMS)
async def test_killed_mid_transaction_everything_rolls_back(bed: Testbed, program: str) -> None:
    scenario = Scenario(bed, program)
    task_id = await scenario.push(8)
    bed.script({"text": "Half done."})
    agent = await scenario.start(hang=True)
    assert agent.stdout is not None
    line = await asyncio.wait_for(agent.stdout.readline(), 30)
    assert line.strip() == b"in transaction"
    agent.kill()
    await agent.wait()
    task = await scenario.queue.claim(wait_ms=10_000)
    assert task is not None and task.id == task_id
    assert task.attempts == 1, "the rolled-back claim did not count"
    assert await scenario.owner.storage.get(f"summary/{task_id}") is None
    assert await scenario.reporter.mailbox().receive() == []
    await task.release()
    await scenario.close()
