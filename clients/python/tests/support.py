"""The suite's one setup: the testbed (real daemon, fresh database, mock LLM), clients for the
admin and for agents, and the mock provider's script."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from ikigai import Platform

REPO = Path(__file__).resolve().parents[3]


class Testbed:
    __test__ = False

    def __init__(self) -> None:
        binary = os.environ.get("IKIGAI_TESTBED") or str(REPO / "target/debug/ikigai-testbed")
        self._process = subprocess.Popen(
            [binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.info: dict[str, Any] = json.loads(self._read())
        self.socket: str = self.info["socket"]
        self.mock_url: str = self.info["mock_url"]

    def _read(self) -> str:
        assert self._process.stdout is not None
        return self._process.stdout.readline()

    def command(self, line: str) -> dict[str, Any]:
        """`kill9`, `start`, `restart` or `stop`, answered once done."""
        assert self._process.stdin is not None
        self._process.stdin.write(line + "\n")
        self._process.stdin.flush()
        answer: dict[str, Any] = json.loads(self._read())
        assert answer["ok"], answer
        return answer

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=30)

    async def admin(self) -> Platform:
        return await Platform.connect(self.socket, "admin", self.info["admin_token"])

    async def agent(
        self, prefix: str = "agent", manifest: dict[str, Any] | None = None
    ) -> Platform:
        """A fresh agent's connection (see `identity`)."""
        name, token = await self.identity(prefix, manifest)
        return await Platform.connect(self.socket, name, token)

    async def identity(
        self, prefix: str = "agent", manifest: dict[str, Any] | None = None
    ) -> tuple[str, str]:
        """A fresh agent's name and token; with `manifest` (its `permissions` etc.) it is
        deployed first, as a program that exits at once and is never restarted."""
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        admin = await self.admin()
        try:
            if manifest is not None:
                full = {
                    "name": name,
                    "version": "1",
                    "command": ["true"],
                    "restart": "temporary",
                    **manifest,
                }
                await admin.agents.deploy(full, [{"path": "README", "hex": ""}])
                await admin.agents.stop(name)  # its start issues a token: done before ours
            token = await admin.agents.token(name)
        finally:
            await admin.close()
        return name, token

    def script(self, *replies: dict[str, Any]) -> None:
        """Queues replies of the mock provider (`{"text": ...}`, `{"tool_call": ...}`)."""
        body = json.dumps([{"api": "anthropic", **r} for r in replies]).encode()
        request = urllib.request.Request(
            self.mock_url + "/mock/replies", body, {"content-type": "application/json"}
        )
        urllib.request.urlopen(request).read()

    def received(self) -> Any:
        return json.loads(urllib.request.urlopen(self.mock_url + "/mock/received").read())


def llm_manifest(**llm: Any) -> dict[str, Any]:
    block = {
        "models": ["sonnet-4.5", "haiku", "sonnet"],
        "allow_custom_tools": True,
        "platform_tools": ["query_telemetry", "send_message", "create_task"],
        **llm,
    }
    return {"permissions": {"llm": block}}
