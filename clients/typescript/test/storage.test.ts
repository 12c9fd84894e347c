// Storage through `platform.storage`: versioned documents, optimistic concurrency, pages
// (protocol section 11).

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError } from "../src/platform.js";
import { testbed } from "./support.js";

const bed = await testbed();
const platform = await bed.agent();

test("each put raises the version; get returns the document", async () => {
  assert.equal(await platform.storage.put("doc", { v: 1 }), 1);
  assert.equal(await platform.storage.put("doc", { v: 2 }), 2);
  const doc = await platform.storage.get("doc");
  assert.equal(doc?.version, 2);
  assert.deepEqual(doc?.value, { v: 2 });
  assert.equal(await platform.storage.get("missing"), null);
});

test("a stale ifVersion is a conflict and writes nothing", async () => {
  await platform.storage.put("cas", "first", { ifVersion: 0 });
  await assert.rejects(
    () => platform.storage.put("cas", "second", { ifVersion: 0 }),
    (e: unknown) => e instanceof IkigaiError && e.code === "conflict",
  );
  assert.equal((await platform.storage.get("cas"))?.value, "first");
  assert.equal(await platform.storage.delete("cas", { ifVersion: 1 }), true);
  assert.equal(await platform.storage.delete("cas"), false);
});

test("list pages through a prefix in key order", async () => {
  for (const key of ["p/c", "p/a", "p/b", "q/x"]) await platform.storage.put(key, key);
  const first = await platform.storage.list({ prefix: "p/", limit: 2 });
  assert.deepEqual(first.documents.map((d) => d.key), ["p/a", "p/b"]);
  const second = await platform.storage.list({ prefix: "p/", limit: 2, after: first.next! });
  assert.deepEqual(second.documents.map((d) => d.key), ["p/c"]);
  assert.equal(second.next, null);
});
