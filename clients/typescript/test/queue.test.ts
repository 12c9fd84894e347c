// Task queues through `platform.queue(name)`: push, claim, settle, stats and list, as the
// protocol's sections 13 and 14 describe them.

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError } from "../src/platform.js";
import { testbed, uniqueName } from "./support.js";

const bed = await testbed();
const platform = await bed.agent();

test("a pushed task is claimed with its payload and completed with a result", async () => {
  const queue = platform.queue(uniqueName("q"));
  const pushed = await queue.push({ n: 1 }, { priority: 2 });
  assert.equal(pushed.created, true);
  const task = await queue.claim();
  assert.ok(task);
  assert.equal(task.id, pushed.id);
  assert.deepEqual(task.payload, { n: 1 });
  assert.equal(task.record.claimed_by, platform.agent);
  const done = await task.complete({ ok: true });
  assert.deepEqual(done.result, { ok: true });
  assert.ok(done.completed_at);
  assert.equal(await queue.claim(), null);
});

test("claim order is priority first, and pushMany keeps request order in its reply", async () => {
  const queue = platform.queue(uniqueName("q"));
  const pushed = await queue.pushMany([{ payload: "low" }, { payload: "high", priority: 5 }, { payload: "dup", dedupKey: "k" }, { payload: "dup2", dedupKey: "k" }]);
  assert.deepEqual(pushed.map((p) => p.created), [true, true, true, false]);
  assert.equal(pushed[3]!.id, pushed[2]!.id);
  const tasks = await queue.claimMany({ max: 10 });
  assert.deepEqual(tasks.map((t) => t.payload), ["high", "low", "dup"]);
});

test("a failed task comes back with its error; a released one without counting the attempt", async () => {
  const queue = platform.queue(uniqueName("q"));
  await queue.push("work", { maxAttempts: 3 });
  const first = (await queue.claim())!;
  const failed = await first.fail("boom", { retryInMs: 0 });
  assert.equal(failed.error, "boom");
  assert.equal(failed.claimed_by, null);
  const second = (await queue.claim())!;
  assert.equal(second.attempts, 2);
  const released = await second.release();
  assert.equal(released.attempts, 1);
  const third = (await queue.claim({ leaseMs: 1000 }))!;
  const until = await third.extend(60_000);
  assert.ok(Date.parse(until) > Date.now() + 30_000);
});

test("a waiting claim returns the task pushed while it waits", async () => {
  const queue = platform.queue(uniqueName("q"));
  const waiting = queue.claim({ waitMs: 5000 });
  await new Promise((resolve) => setTimeout(resolve, 100));
  await (await bed.agent()).queue(queue.name).push("late");
  const task = await waiting;
  assert.equal(task?.payload, "late");
});

test("stats and list count the tasks by state", async () => {
  const queue = platform.queue(uniqueName("q"));
  await queue.pushMany([{ payload: 1 }, { payload: 2 }, { payload: 3, delayMs: 60_000 }]);
  await (await queue.claim())!.complete();
  const stats = await queue.stats();
  assert.equal(stats.completed, 1);
  assert.equal(stats.pending, 1);
  assert.equal(stats.scheduled, 1);
  const pending = await queue.list({ state: "pending" });
  assert.deepEqual(pending.tasks.map((t) => t.payload), [2]);
  assert.equal(pending.next, null);
});

test("a settlement after the lease ran out, the task claimed by another agent, is a conflict", async () => {
  const queue = platform.queue(uniqueName("q"));
  await queue.push("contended");
  const mine = (await queue.claim({ leaseMs: 100 }))!;
  const other = await bed.agent();
  const theirs = await other.queue(queue.name).claim({ waitMs: 3000 });
  assert.equal(theirs?.id, mine.id);
  await assert.rejects(
    () => mine.complete("late"),
    (error: unknown) => error instanceof IkigaiError && error.code === "conflict" && !error.retriable,
  );
});

test("bad args are refused with bad_request, not retriable", async () => {
  const queue = platform.queue(uniqueName("q"));
  await assert.rejects(
    () => queue.push("x", { delayMs: 1, scheduledFor: new Date().toISOString() }),
    (error: unknown) => error instanceof IkigaiError && error.code === "bad_request" && !error.retriable,
  );
});
