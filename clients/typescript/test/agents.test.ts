// The agent registry through `platform.agents`: deploy with files, list, get, stop, start,
// restart, undeploy, heartbeats and tokens (protocol sections 7 and 16).

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError, Platform } from "../src/platform.js";
import { testbed, waitFor } from "./support.js";

const bed = await testbed();
const admin = await bed.admin();

const sleeper = [{ path: "run", content: "#!/bin/sh\nexec sleep 600\n", executable: true }];

test("a deployed agent runs, stops, starts, restarts and is undeployed", async () => {
  const deployed = await admin.agents.deploy({ name: "sleeper", version: "7", command: ["./run"] }, sleeper);
  assert.deepEqual(deployed, { name: "sleeper", version: "7" });
  const running = await waitFor(async () => {
    const entry = await admin.agents.get("sleeper");
    return entry.pid !== null && entry;
  });
  assert.equal(running.status, "running");
  assert.equal(running.manifest.command?.[0], "./run");
  assert.deepEqual((await admin.agents.list()).map((a) => a.name), ["sleeper"]);
  await admin.agents.stop("sleeper");
  assert.equal((await admin.agents.get("sleeper")).status, "stopped");
  await admin.agents.start("sleeper");
  const started = await waitFor(async () => (await admin.agents.get("sleeper")).pid ?? undefined);
  await admin.agents.restart("sleeper");
  const restarted = await waitFor(async () => {
    const pid = (await admin.agents.get("sleeper")).pid;
    return pid !== null && pid !== started && pid;
  });
  assert.notEqual(restarted, started);
  await admin.agents.undeploy("sleeper");
  await assert.rejects(() => admin.agents.get("sleeper"), (e: unknown) => e instanceof IkigaiError && e.code === "not_found");
});

test("a deployed agent's heartbeat is recorded", async () => {
  await bed.register({ name: "beating" });
  const agent = await bed.agent("beating");
  assert.equal((await admin.agents.get("beating")).last_heartbeat, null);
  await agent.agents.heartbeat();
  assert.ok((await admin.agents.get("beating")).last_heartbeat);
});

test("an agent may not deploy without the permission, nor issue tokens", async () => {
  const agent = await bed.agent();
  const denied = (e: unknown) => e instanceof IkigaiError && e.code === "permission_denied";
  await assert.rejects(() => agent.agents.deploy({ name: "x", version: "1", command: ["true"] }), denied);
  await assert.rejects(() => agent.agents.token("x"), denied);
});

test("a token issued by admin authenticates; a wrong one is refused at connect", async () => {
  const token = await admin.agents.token("holder");
  assert.match(token, /^[0-9a-f]{64}$/);
  await assert.rejects(
    () => Platform.connect({ socket: bed.socket, agent: "holder", token: "0".repeat(64) }),
    (e: unknown) => e instanceof IkigaiError && e.code === "unauthenticated",
  );
});
