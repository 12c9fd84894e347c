// Reconnects: when the daemon restarts the client says hello again on a new socket with backoff;
// calls in flight fail with a retriable `unavailable`; waiting receives, claims and
// subscriptions resume on the new connection.

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError } from "../src/platform.js";
import { testbed, uniqueName, waitFor } from "./support.js";

const bed = await testbed();
const platform = await bed.agent();

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("after a daemon restart calls work again on a new session", async () => {
  const session = platform.hello.session;
  await bed.command("restart");
  await platform.storage.put("after-restart", 1);
  assert.notEqual(platform.hello.session, session);
  assert.equal((await platform.storage.get("after-restart"))?.version, 1);
});

test("a call in flight when the daemon dies fails with a retriable unavailable", async () => {
  await bed.script({ text: "too late", delay_ms: 3000 });
  await bed.register({ name: "slow", permissions: { llm: { models: ["haiku"] } } });
  const slow = await bed.agent("slow");
  const prompt = slow.prompt({ model: "haiku", messages: [{ role: "user", content: "wait" }] });
  const failed = assert.rejects(prompt, (e: unknown) => e instanceof IkigaiError && e.code === "unavailable" && e.retriable);
  await pause(300);
  await bed.command("kill9");
  await failed;
  await bed.command("start");
});

test("a waiting receive resumes on the new connection and gets the message sent after the restart", async () => {
  const inbox = platform.mailbox(platform.agent);
  const waiting = inbox.receive({ waitMs: 20_000 });
  await pause(200);
  await bed.command("restart");
  const sender = await bed.agent();
  await sender.mailbox(platform.agent).send("after restart");
  const [message] = await waiting;
  assert.equal(message?.payload, "after restart");
  await inbox.ack([message!]);
});

test("a waiting claim resumes on the new connection", async () => {
  const queue = platform.queue(uniqueName("q"));
  const waiting = queue.claim({ waitMs: 20_000 });
  await pause(200);
  await bed.command("restart");
  await (await bed.agent()).queue(queue.name).push("after restart");
  const task = await waiting;
  assert.equal(task?.payload, "after restart");
  await task!.complete();
});

test("a subscription is made again after a restart and receives what is published then", async () => {
  const subscription = await platform.pubsub.subscribe("restart.*");
  const before = subscription.id;
  await bed.command("restart");
  const publisher = await bed.agent();
  await waitFor(async () => subscription.id !== before && (await publisher.pubsub.publish("restart.news", "hi")) === 1);
  const { value } = await subscription.next();
  assert.equal(value?.message, "hi");
  await subscription.unsubscribe();
});

test("calls made while the daemon is down wait and are sent once it is back", async () => {
  await bed.command("kill9");
  // Until the client has seen the socket close, a call would be written to the dead socket
  // (and fail as in flight); here it is made once the client knows.
  await pause(200);
  const put = platform.storage.put("while-down", "queued");
  await pause(300);
  await bed.command("start");
  assert.equal(await put, 1);
});
