// Mailboxes through `platform.mailbox(name)`: any agent sends, only the owner receives, acks,
// peeks and reads stats (protocol sections 7 and 8).

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError } from "../src/platform.js";
import { testbed } from "./support.js";

const bed = await testbed();
const owner = await bed.agent();
const sender = await bed.agent();

test("messages sent are received oldest first with their sender, and acked once", async () => {
  const out = sender.mailbox(owner.agent);
  const ids = [await out.send({ n: 1 }), await out.send({ n: 2 })];
  const inbox = owner.mailbox(owner.agent);
  const got = await inbox.receive({ max: 10 });
  assert.deepEqual(got.map((m) => m.id), ids);
  assert.deepEqual(got.map((m) => m.payload), [{ n: 1 }, { n: 2 }]);
  assert.equal(got[0]!.sender, sender.agent);
  assert.equal(got[0]!.attempts, 1);
  assert.equal(await inbox.ack(got), 2);
  assert.equal(await inbox.ack(ids), 0);
  assert.deepEqual(await inbox.receive(), []);
});

test("a waiting receive gets the message sent while it waits", async () => {
  const inbox = owner.mailbox(owner.agent);
  const waiting = inbox.receive({ waitMs: 5000 });
  await new Promise((resolve) => setTimeout(resolve, 100));
  await sender.mailbox(owner.agent).send("late");
  const [message] = await waiting;
  assert.equal(message?.payload, "late");
  await inbox.ack([message!]);
});

test("an unacked message comes back after its visibility, counting the attempt", async () => {
  const inbox = owner.mailbox(owner.agent);
  await sender.mailbox(owner.agent).send("again");
  const [first] = await inbox.receive({ visibilityMs: 50 });
  const [second] = await inbox.receive({ waitMs: 3000 });
  assert.equal(second!.id, first!.id);
  assert.equal(second!.attempts, 2);
  await inbox.ack([second!]);
});

test("peek shows ready messages without delivering; stats count them", async () => {
  const inbox = owner.mailbox(owner.agent);
  await sender.mailbox(owner.agent).send("peeked");
  await inbox.receive({ max: 1, visibilityMs: 1 }).then((m) => assert.equal(m.length, 1));
  await new Promise((resolve) => setTimeout(resolve, 150));
  const peeked = await inbox.peek({ limit: 5 });
  assert.deepEqual(peeked.map((m) => m.payload), ["peeked"]);
  const stats = await inbox.stats();
  assert.equal(stats?.unread, 1);
  assert.deepEqual((await owner.mailboxStats()).map((row) => row.mailbox), [owner.agent]);
  const [message] = await inbox.receive();
  await inbox.ack([message!]);
});

test("receiving from someone else's mailbox is permission_denied", async () => {
  await assert.rejects(
    () => sender.mailbox(owner.agent).receive(),
    (error: unknown) => error instanceof IkigaiError && error.code === "permission_denied",
  );
});
