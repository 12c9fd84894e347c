// The cache through `platform.cache`: per-agent keys unless shared, expiry, atomic increments
// (protocol section 9).

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError } from "../src/platform.js";
import { testbed } from "./support.js";

const bed = await testbed();
const a = await bed.agent();
const b = await bed.agent();

test("a value set is got back; an absent key is undefined, a stored null is null", async () => {
  await a.cache.set("k", { deep: [1, "two", null] });
  assert.deepEqual(await a.cache.get("k"), { deep: [1, "two", null] });
  assert.equal(await a.cache.get("absent"), undefined);
  await a.cache.set("nothing", null);
  assert.equal(await a.cache.get("nothing"), null);
});

test("keys are per agent unless shared", async () => {
  await a.cache.set("same", "a's");
  await b.cache.set("same", "shared", { shared: true });
  assert.equal(await b.cache.get("same"), undefined);
  assert.equal(await a.cache.get("same"), "a's");
  assert.equal(await a.cache.get("same", { shared: true }), "shared");
});

test("getMany returns the keys found; delete says whether one was there", async () => {
  await a.cache.set("m1", 1);
  await a.cache.set("m2", 2);
  assert.deepEqual(await a.cache.getMany(["m1", "m2", "m3"]), { m1: 1, m2: 2 });
  assert.equal(await a.cache.delete("m1"), true);
  assert.equal(await a.cache.delete("m1"), false);
});

test("a key with a ttl expires", async () => {
  await a.cache.set("brief", "x", { ttlMs: 50 });
  await new Promise((resolve) => setTimeout(resolve, 120));
  assert.equal(await a.cache.get("brief"), undefined);
});

test("incr adds atomically; on a non-integer it is a conflict", async () => {
  const sums = await Promise.all(Array.from({ length: 50 }, () => a.cache.incr("counter")));
  assert.equal(Math.max(...sums), 50);
  assert.equal(await a.cache.incr("counter", -10), 40);
  await a.cache.set("text", "abc");
  await assert.rejects(() => a.cache.incr("text"), (e: unknown) => e instanceof IkigaiError && e.code === "conflict");
});
