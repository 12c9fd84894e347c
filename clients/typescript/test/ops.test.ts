// Every op of docs/protocol.md has a typed method: each `### \`op\`` heading (a heading may list
// several ops) must appear in METHODS below, and calling that method must send exactly that op.
// This fails when the protocol gains an op the client lacks. `hello` has no heading: it is sent
// by `Platform.connect`. The `debug.*` ops (fault injection, tests only) are covered too.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import type { Connection } from "../src/connection.js";
import { Platform } from "../src/platform.js";
import { repoDir } from "./support.js";

type Invoke = (p: Platform) => Promise<unknown>;
const claimed = (p: Platform) => p.queue("q").claim().then((task) => task!);

/** op → the method that sends it. */
const METHODS: Record<string, Invoke> = {
  ping: (p) => p.ping(),
  "daemon.status": (p) => p.status(),
  "mailbox.send": (p) => p.mailbox("m").send(1),
  "mailbox.receive": (p) => p.mailbox("m").receive(),
  "mailbox.ack": (p) => p.mailbox("m").ack(["id"]),
  "mailbox.peek": (p) => p.mailbox("m").peek(),
  "mailbox.stats": (p) => p.mailboxStats(),
  "agents.token": (p) => p.agents.token("a"),
  "debug.panic_mailbox": (p) => p.debug.panicMailbox("m"),
  "debug.panic_agent": (p) => p.debug.panicAgent("a"),
  "cache.get": (p) => p.cache.get("k"),
  "cache.get_many": (p) => p.cache.getMany(["k"]),
  "cache.set": (p) => p.cache.set("k", 1),
  "cache.delete": (p) => p.cache.delete("k"),
  "cache.incr": (p) => p.cache.incr("k"),
  "pubsub.publish": (p) => p.pubsub.publish("t", 1),
  "pubsub.subscribe": (p) => p.pubsub.subscribe("t"),
  "pubsub.unsubscribe": async (p) => (await p.pubsub.subscribe("t")).unsubscribe(),
  "storage.put": (p) => p.storage.put("k", 1),
  "storage.get": (p) => p.storage.get("k"),
  "storage.delete": (p) => p.storage.delete("k"),
  "storage.list": (p) => p.storage.list(),
  "telemetry.emit": (p) => p.telemetry.emit("metric", 1),
  "telemetry.query": (p) => p.telemetry.query(),
  "queue.push": (p) => p.queue("q").push(1),
  "queue.push_many": (p) => p.queue("q").pushMany([{ payload: 1 }]),
  "queue.claim": (p) => p.queue("q").claimMany(),
  "queue.extend": async (p) => (await claimed(p)).extend(1000),
  "queue.complete": async (p) => (await claimed(p)).complete(),
  "queue.fail": async (p) => (await claimed(p)).fail("e"),
  "queue.release": async (p) => (await claimed(p)).release(),
  "queue.stats": (p) => p.queue("q").stats(),
  "queue.list": (p) => p.queue("q").list(),
  "tx.begin": (p) => p.beginTransaction(),
  "tx.commit": async (p) => (await p.beginTransaction()).commit(),
  "tx.rollback": async (p) => (await p.beginTransaction()).rollback(),
  "agents.deploy": (p) => p.agents.deploy({ name: "a", version: "1", command: ["true"] }),
  "agents.list": (p) => p.agents.list(),
  "agents.get": (p) => p.agents.get("a"),
  "agents.start": (p) => p.agents.start("a"),
  "agents.stop": (p) => p.agents.stop("a"),
  "agents.restart": (p) => p.agents.restart("a"),
  "agents.undeploy": (p) => p.agents.undeploy("a"),
  "agents.heartbeat": (p) => p.agents.heartbeat(),
  "llm.prompt": (p) => p.prompt({ model: "m", messages: [] }),
  "llm.tool_result": (p) => p.llm.toolResult("call", "result"),
  "threads.create": (p) => p.threads.create(),
  "llm.usage": (p) => p.llm.usage(),
};

/** A connection that records the ops sent and answers each with a plausible reply. */
function recorder(): { platform: Platform; sent: string[] } {
  const sent: string[] = [];
  const reply = (op: string) =>
    op === "queue.claim"
      ? { tasks: [{ id: "t", payload: 1, attempts: 1 }] }
      : { tasks: [], messages: [], mailboxes: [], agents: [], events: [], usage: [], values: {}, tx: "x", subscription: "s" };
  const conn = {
    agent: "recorder",
    isClosed: false,
    call: async (op: string) => (sent.push(op), reply(op)),
    ownPushes: () => {},
    disownPushes: () => {},
    onReconnect: () => () => {},
    onClose: () => () => {},
  };
  return { platform: new Platform(conn as unknown as Connection), sent };
}

function documentedOps(): string[] {
  const protocol = readFileSync(path.join(repoDir, "docs/protocol.md"), "utf8");
  const headings = protocol.split("\n").filter((line) => line.startsWith("### `"));
  return headings.flatMap((line) => [...line.matchAll(/`([a-z_.]+)`/g)].map((m) => m[1]!));
}

test("every op of docs/protocol.md has a method in the client", () => {
  const missing = documentedOps().filter((op) => !(op in METHODS));
  assert.deepEqual(missing, [], `ops without a method: ${missing.join(", ")}`);
});

test("every listed method sends its op", async () => {
  for (const [op, invoke] of Object.entries(METHODS)) {
    const { platform, sent } = recorder();
    await invoke(platform);
    assert.equal(sent.at(-1), op, `the method listed for ${op} sent ${sent.join(", ")}`);
  }
});
