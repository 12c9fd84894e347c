// Transactions through `platform.transaction(fn)`: committed when `fn` returns, rolled back when
// it throws, across queue, mailbox, storage and cache (protocol section 15).

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError } from "../src/platform.js";
import { testbed, uniqueName } from "./support.js";

const bed = await testbed();
const platform = await bed.agent();

/** Claims a task of `queue` and, in one transaction, stores, caches, sends and completes. */
function work(queue: string, fail: boolean) {
  return platform.transaction(async (tx) => {
    const task = (await tx.queue(queue).claim())!;
    await tx.storage.put(`result/${task.id}`, { done: task.payload });
    await tx.cache.set(`seen/${task.id}`, true);
    await tx.mailbox(platform.agent).send({ finished: task.id });
    await task.complete("ok");
    if (fail) throw new Error("crashed before commit");
    return task.id;
  });
}

test("a transaction that returns commits every write of every service", async () => {
  const queue = uniqueName("q");
  await platform.queue(queue).push("job");
  const id = await work(queue, false);
  assert.deepEqual((await platform.storage.get(`result/${id}`))?.value, { done: "job" });
  assert.equal(await platform.cache.get(`seen/${id}`), true);
  const [message] = await platform.mailbox(platform.agent).receive();
  assert.deepEqual(message?.payload, { finished: id });
  await platform.mailbox(platform.agent).ack([message!]);
  assert.equal((await platform.queue(queue).stats()).completed, 1);
});

test("a transaction that throws rolls everything back and rethrows", async () => {
  const queue = uniqueName("q");
  const { id } = await platform.queue(queue).push("job");
  await assert.rejects(() => work(queue, true), /crashed before commit/);
  assert.equal(await platform.storage.get(`result/${id}`), null);
  assert.equal(await platform.cache.get(`seen/${id}`), undefined);
  assert.deepEqual(await platform.mailbox(platform.agent).receive(), []);
  const task = (await platform.queue(queue).claim())!;
  assert.equal(task.id, id);
  assert.equal(task.attempts, 1, "the rolled-back claim did not count");
});

test("an error inside aborts the transaction: its commit is not_found", async () => {
  const tx = await platform.beginTransaction();
  await tx.storage.put("cas-tx", 1, { ifVersion: 0 });
  await assert.rejects(() => tx.storage.put("cas-tx", 2, { ifVersion: 0 }), (e: unknown) => e instanceof IkigaiError && e.code === "conflict");
  await assert.rejects(() => tx.commit(), (e: unknown) => e instanceof IkigaiError && e.code === "not_found");
  assert.equal(await platform.storage.get("cas-tx"), null);
});
