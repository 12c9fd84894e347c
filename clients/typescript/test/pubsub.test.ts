// Pub/sub through `platform.pubsub`: subscriptions are async iterators of what is published to
// matching topics (protocol section 10).

import assert from "node:assert/strict";
import { test } from "node:test";
import { testbed } from "./support.js";

const bed = await testbed();
const platform = await bed.agent();

test("a subscription receives the messages of matching topics in publish order", async () => {
  const subscription = await platform.pubsub.subscribe("orders.*");
  const publisher = await bed.agent();
  assert.equal(await publisher.pubsub.publish("orders.created", { n: 1 }), 1);
  await publisher.pubsub.publish("other.created", { n: 0 });
  await publisher.pubsub.publish("orders.paid", { n: 2 });
  const got = [];
  for await (const message of subscription) {
    got.push([message.topic, message.message]);
    if (got.length === 2) break;
  }
  assert.deepEqual(got, [["orders.created", { n: 1 }], ["orders.paid", { n: 2 }]]);
  assert.equal(await publisher.pubsub.publish("orders.late", {}), 0, "break unsubscribed");
});

test("a subscription ends when the platform closes", async () => {
  const listener = await bed.agent();
  const subscription = await listener.pubsub.subscribe("a.>");
  const iteration = subscription.next();
  listener.close();
  assert.deepEqual(await iteration, { value: undefined, done: true });
});
