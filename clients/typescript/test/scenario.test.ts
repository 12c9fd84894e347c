// The agent scenario through this client: claim a task, prompt with a platform tool,
// store the result and send a message, all in one transaction, run as an agent process; killed
// mid-transaction, everything it did rolls back.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { once } from "node:events";
import path from "node:path";
import { test } from "node:test";
import { packageDir, testbed, uniqueName, waitFor } from "./support.js";

const bed = await testbed();
const AGENT = "scenario";
await bed.register({ name: AGENT, permissions: { llm: { models: ["haiku"], platform_tools: ["query_telemetry"] } } });
const agent = await bed.agent(AGENT);
const reporter = await bed.agent();

/** Starts the scenario agent on `queue`; `hang` keeps it inside its transaction. */
async function start(queue: string, hang: boolean) {
  const env = { ...process.env, ...(await bed.agentEnv(AGENT)), QUEUE: queue, REPORT_TO: reporter.agent, HANG: hang ? "1" : "" };
  const child = spawn(process.execPath, [path.join(packageDir, "dist/test/fixtures/scenario_agent.js")], { env, stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout.on("data", (chunk) => (out += chunk));
  return { child, exited: once(child, "exit"), output: () => out };
}

test("the scenario commits every write together", async () => {
  const queue = agent.queue(uniqueName("q"));
  const { id } = await queue.push({ ticket: 7 });
  await bed.script({ tool_call: { id: "t1", name: "query_telemetry", arguments: {} } }, { text: "All quiet." });
  const { exited } = await start(queue.name, false);
  assert.deepEqual(await exited, [0, null]);
  assert.equal((await agent.storage.get(`summary/${id}`))?.value, "All quiet.");
  const [message] = await reporter.mailbox(reporter.agent).receive();
  assert.deepEqual(message?.payload, { task: id, summary: "All quiet." });
  await reporter.mailbox(reporter.agent).ack([message!]);
  const [task] = (await queue.list({ state: "completed" })).tasks;
  assert.deepEqual(task?.result, { summary: "All quiet." });
});

test("killed mid-transaction, the agent's claim, document, message and completion all roll back", async () => {
  const queue = agent.queue(uniqueName("q"));
  const { id } = await queue.push({ ticket: 8 });
  await bed.script({ text: "Half done." });
  const { child, exited, output } = await start(queue.name, true);
  await waitFor(async () => output().includes("in transaction"), 10_000);
  child.kill("SIGKILL");
  await exited;
  const task = await waitFor(async () => (await queue.claim()) ?? undefined);
  assert.equal(task.id, id);
  assert.equal(task.attempts, 1, "the rolled-back claim did not count");
  assert.equal(await agent.storage.get(`summary/${id}`), null);
  assert.deepEqual(await reporter.mailbox(reporter.agent).receive(), []);
});
