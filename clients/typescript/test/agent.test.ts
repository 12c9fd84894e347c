// `ikigai/agent`: the run loops over a queue and a mailbox, heartbeats, and the graceful stop
// that finishes the work in hand or releases it.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { once } from "node:events";
import { test } from "node:test";
import { Agent } from "../src/agent.js";
import { testbed, packageDir, uniqueName, waitFor } from "./support.js";

const bed = await testbed();

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("the queue loop completes tasks with the handler's result and fails them with its error", async () => {
  const agent = await Agent.start({ platform: await bed.agent(), signals: [], heartbeatMs: 0 });
  const queue = agent.platform.queue(uniqueName("q"));
  await queue.pushMany([{ payload: 2 }, { payload: -1, maxAttempts: 1 }]);
  const loop = agent.runQueue(queue.name, (task) => {
    if ((task.payload as number) < 0) throw new Error("negative");
    return (task.payload as number) * 10;
  }, { waitMs: 100 });
  const done = await waitFor(async () => {
    const stats = await queue.stats();
    return stats.completed === 1 && stats.dead === 1;
  });
  assert.ok(done);
  const [completed] = (await queue.list({ state: "completed" })).tasks;
  assert.equal(completed!.result, 20);
  const [dead] = (await queue.list({ state: "dead" })).tasks;
  assert.equal(dead!.error, "negative");
  await agent.stop();
  await loop;
  assert.equal(agent.platform.isClosed, true);
});

test("a stop lets the task in hand finish within the grace, and releases one that takes longer", async () => {
  for (const [handleMs, state] of [[200, "completed"], [5000, "pending"]] as const) {
    const platform = await bed.agent();
    const agent = await Agent.start({ platform, signals: [], heartbeatMs: 0, stopGraceMs: 500 });
    const queue = (await bed.agent()).queue(uniqueName("q"));
    await queue.push("work");
    let started = false;
    const loop = agent.runQueue(queue.name, async (_task, { signal }) => {
      started = true;
      await pause(handleMs);
      return signal.aborted ? "finished while stopping" : "finished";
    }, { waitMs: 100 });
    await waitFor(async () => started);
    await agent.stop();
    await loop;
    const [task] = (await queue.list()).tasks;
    assert.equal(task!.completed_at ? "completed" : task!.claimed_by ? "claimed" : "pending", state, `a ${handleMs} ms handler`);
    if (state === "completed") assert.equal(task!.result, "finished while stopping");
    else assert.equal(task!.attempts, 0, "a released claim does not count");
  }
});

test("the mailbox loop acks handled messages and leaves a failed one to come again", async () => {
  const platform = await bed.agent();
  const agent = await Agent.start({ platform, signals: [], heartbeatMs: 0 });
  const sender = await bed.agent();
  await sender.mailbox(platform.agent).send("ok");
  await sender.mailbox(platform.agent).send("flaky");
  const seen: string[] = [];
  const loop = agent.runMailbox((message) => {
    seen.push(`${message.payload}#${message.attempts}`);
    if (message.payload === "flaky" && message.attempts === 1) throw new Error("not yet");
  }, { waitMs: 100, visibilityMs: 200 });
  await waitFor(async () => seen.includes("flaky#2"));
  await agent.stop();
  await loop;
  assert.deepEqual(seen, ["ok#1", "flaky#1", "flaky#2"]);
  const admin = await bed.admin();
  const [row] = (await admin.mailboxStats()).filter((r) => r.mailbox === platform.agent);
  assert.equal(row!.unread, 0);
});

test("a deployed agent's heartbeats are recorded", async () => {
  await bed.register({ name: "heart" });
  const agent = await Agent.start({ platform: await bed.agent("heart"), signals: [], heartbeatMs: 50 });
  const admin = await bed.admin();
  const first = await waitFor(async () => (await admin.agents.get("heart")).last_heartbeat ?? undefined);
  await waitFor(async () => (await admin.agents.get("heart")).last_heartbeat !== first);
  await agent.stop();
});

test("SIGTERM to an agent process finishes its task in hand, completes it, and the process exits 0", async () => {
  const queue = (await bed.agent()).queue(uniqueName("q"));
  await queue.push("last words");
  const name = uniqueName("proc");
  const child = spawn(process.execPath, [path.join(packageDir, "dist/test/fixtures/slow_agent.js")], {
    env: { ...process.env, ...(await bed.agentEnv(name)), QUEUE: queue.name, HANDLE_MS: "700" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (chunk) => (out += chunk));
  await waitFor(async () => out.includes("claimed"));
  child.kill("SIGTERM");
  const [code] = await once(child, "exit");
  assert.equal(code, 0);
  assert.match(out, /stopped/);
  const [task] = (await queue.list()).tasks;
  assert.deepEqual(task!.result, { handled: "last words" });
});
