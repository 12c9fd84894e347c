// Telemetry through `platform.telemetry`: events emitted are queried back, newest first
// (protocol section 12).

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError } from "../src/platform.js";
import { testbed, waitFor } from "./support.js";

const bed = await testbed();
const platform = await bed.agent();

test("emitted events are found by type and by text, newest first", async () => {
  await platform.telemetry.emit("metric", { name: "latency", note: "slow disks" });
  await platform.telemetry.emit("metric", { name: "throughput" });
  const events = await waitFor(async () => {
    const found = await platform.telemetry.query({ eventType: "metric" });
    return found.length === 2 && found;
  });
  assert.deepEqual(events.map((e) => (e.payload as { name: string }).name), ["throughput", "latency"]);
  assert.equal(events[0]!.agent, platform.agent);
  const text = await platform.telemetry.query({ text: "disk" });
  assert.deepEqual(text.map((e) => (e.payload as { name: string }).name), ["latency"]);
});

test("another agent's events are permission_denied", async () => {
  await assert.rejects(
    () => platform.telemetry.query({ agent: "someone-else" }),
    (e: unknown) => e instanceof IkigaiError && e.code === "permission_denied",
  );
});
