// Every op of docs/protocol.md has a typed method: each `### \`op\`` heading (a heading may list
// several ops) must appear in METHODS below, and calling that method must send exactly that op.
// This fails when the protocol gains an op the client lacks. `hello` has no heading: it is sent
// by `Platform.connect`. The `debug.*` ops (fault injection, tests only) are covered too. The
// memory calls (section 18) are checked for their args as well, as the daemon receives them.

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
  "assets.create": (p) => p.storedAssets.create({ label: "l", value: "v", limit: 10 }),
  "assets.update": (p) => p.storedAssets.update("l", { value: "w" }),
  "assets.get": (p) => p.storedAssets.get("l"),
  "assets.list": (p) => p.storedAssets.list(),
  "assets.delete": (p) => p.storedAssets.delete("l"),
  "context.mark": (p) => p.context.mark("m"),
  "context.rewind": (p) => p.context.rewind("m"),
  "context.exclude": (p) => p.context.exclude("x"),
  "context.summarize": (p) => p.context.summarize({ olderThan: "1h" }),
  "context.window": (p) => p.context.window.get(),
  "conversation.list": (p) => p.conversation.list(),
  "conversation.delete": (p) => p.conversation.delete(0),
  "conversation.search": (p) => p.conversation.search("w"),
};

const T = "thread-1";
/** [call, op, args] of the memory calls (section 18) and prompt's `if_busy`: option names map to the protocol's. */
const ARGS: Array<[Invoke, string, object]> = [
  [(p) => p.prompt({ messages: [], thread: "default", ifBusy: "reject" }), "llm.prompt", { messages: [], thread: "default", if_busy: "reject" }],
  [(p) => p.storedAssets.create({ label: "l", value: "v", limit: 10, description: "d" }), "assets.create", { label: "l", value: "v", limit: 10, description: "d" }],
  [(p) => p.storedAssets.update("l", { limit: 20 }), "assets.update", { label: "l", limit: 20 }],
  [(p) => p.storedAssets.get("l", { history: 3 }), "assets.get", { label: "l", history: 3 }],
  [(p) => p.storedAssets.list(), "assets.list", {}],
  [(p) => p.storedAssets.delete("l"), "assets.delete", { label: "l" }],
  [(p) => p.context.mark("before"), "context.mark", { label: "before" }],
  [(p) => p.thread(T).context.mark("before"), "context.mark", { label: "before", thread: T }],
  [(p) => p.context.rewind({ mark: "m1", label: "before", position: 2 }), "context.rewind", { mark: "m1" }],
  [(p) => p.thread({ id: T }).context.rewind("before"), "context.rewind", { mark: "before", thread: T }],
  [(p) => p.thread("default").context.exclude("x1"), "context.exclude", { id: "x1", thread: "default" }],
  [(p) => p.context.summarize({ olderThan: "1h" }), "context.summarize", { older_than: "1h" }],
  [(p) => p.thread(T).context.summarize({ before: 7 }), "context.summarize", { before: 7, thread: T }],
  [(p) => p.context.window.get(), "context.window", {}],
  [(p) => p.thread(T).context.window.resize(16000), "context.window", { tokens: 16000, thread: T }],
  [(p) => p.context.window.strategy("summarize"), "context.window", { strategy: "summarize" }],
  [(p) => p.context.window.reset(), "context.window", { reset: true }],
  [(p) => p.conversation.list({ limit: 50, before: 9 }), "conversation.list", { limit: 50, before: 9 }],
  [(p) => p.thread(T).conversation.delete(4), "conversation.delete", { id: 4, thread: T }],
  [(p) => p.conversation.search("batch -done", { limit: 5 }), "conversation.search", { text: "batch -done", limit: 5 }],
  [(p) => p.thread(T).conversation.search("batch"), "conversation.search", { text: "batch", thread: T }],
];

/** A connection that records the ops sent and answers each with a plausible reply. */
function recorder(): { platform: Platform; sent: string[]; args: object[] } {
  const sent: string[] = [];
  const args: object[] = [];
  const reply = (op: string) =>
    op === "queue.claim"
      ? { tasks: [{ id: "t", payload: 1, attempts: 1 }] }
      : { tasks: [], messages: [], mailboxes: [], agents: [], events: [], usage: [], assets: [], values: {}, tx: "x", subscription: "s" };
  const conn = {
    agent: "recorder",
    isClosed: false,
    call: async (op: string, sentArgs: object) => (sent.push(op), args.push(sentArgs), reply(op)),
    ownPushes: () => {},
    disownPushes: () => {},
    onReconnect: () => () => {},
    onClose: () => () => {},
  };
  return { platform: new Platform(conn as unknown as Connection), sent, args };
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

/** Args as the wire carries them: an undefined field is left out (frame.test.ts). */
const onWire = (args: object) => JSON.parse(JSON.stringify(args));

test("each memory call sends its op with the protocol's args, and the handle's thread", async () => {
  for (const [invoke, op, expected] of ARGS) {
    const { platform, sent, args } = recorder();
    await invoke(platform);
    assert.deepEqual([sent.at(-1), onWire(args.at(-1)!)], [op, expected]);
  }
});
