// Memory and context against the real daemon (protocol section 18): stored assets and what
// prompts carry of them, marks and rewinds, exclusions, summaries, the window, the history
// (list, delete, search), the default thread, and `ifBusy` on a busy thread.

import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_THREAD, IkigaiError, type Platform } from "../src/platform.js";
import { testbed } from "./support.js";

const bed = await testbed();
const llm = { models: ["haiku"] };

const user = (content: string) => [{ role: "user" as const, content }];
const code = (expected: string) => (e: unknown) => e instanceof IkigaiError && e.code === expected;

/** Prompts `content` on `thread`, answered `answer` by the mock. */
async function exchange(platform: Platform, thread: string, content: string, answer: string) {
  await bed.script({ text: answer });
  return platform.prompt({ model: "haiku", thread, messages: user(content) });
}

/** What the model was sent last, as text. */
const lastSent = async () => JSON.stringify((await bed.received()).at(-1)!.body);

test("stored assets: create, update, get with history, list, delete, and every prompt carries them", async () => {
  const platform = await bed.llmAgent(llm);
  const created = await platform.storedAssets.create({ label: "working_state", value: "batch #1", limit: 100, description: "What I am doing now" });
  assert.deepEqual(
    { label: created.label, value: created.value, limit: created.limit, description: created.description, version: created.version, chars: created.chars },
    { label: "working_state", value: "batch #1", limit: 100, description: "What I am doing now", version: 1, chars: 8 },
  );
  await assert.rejects(() => platform.storedAssets.create({ label: "working_state", value: "again", limit: 100 }), code("conflict"));
  await assert.rejects(() => platform.storedAssets.update("working_state", { value: "x".repeat(101) }), code("bad_request"));
  const updated = await platform.storedAssets.update("working_state", { value: "batch #1 done" });
  assert.equal(updated.version, 2);
  const got = await platform.storedAssets.get("working_state", { history: 5 });
  assert.equal(got.value, "batch #1 done");
  assert.deepEqual(got.history?.map((v) => [v.version, v.value]), [[1, "batch #1"]]);
  await platform.storedAssets.create({ label: "notes", value: "none yet", limit: 50 });
  assert.deepEqual((await platform.storedAssets.list()).map((a) => a.label), ["working_state", "notes"]);

  await exchange(platform, DEFAULT_THREAD, "what now?", "next batch");
  const sent = await lastSent();
  assert.match(sent, /<asset label=\\"working_state\\"/);
  assert.match(sent, /batch #1 done/);

  await platform.storedAssets.delete("notes");
  assert.deepEqual((await platform.storedAssets.list()).map((a) => a.label), ["working_state"]);
  await assert.rejects(() => platform.storedAssets.get("notes"), code("not_found"));
  // Created again: one past the versions of the deleted label, the deletion among them.
  assert.equal((await platform.storedAssets.create({ label: "notes", value: "again", limit: 50 })).version, 3);
  const again = await platform.storedAssets.get("notes", { history: 5 });
  assert.deepEqual(again.history?.map((v) => [v.version, v.deleted ?? false]), [[2, true], [1, false]]);
});

test("context.mark and context.rewind: what follows the mark leaves the context, not the history", async () => {
  const platform = await bed.llmAgent(llm);
  const { id } = await platform.threads.create();
  const thread = platform.thread(id);
  await exchange(platform, id, "first question", "first answer");
  const mark = await thread.context.mark("before-analysis");
  assert.deepEqual([mark.label, mark.position], ["before-analysis", 2]);
  await exchange(platform, id, "analysis question", "analysis answer");
  assert.equal(await thread.context.rewind(mark), 2);
  const states = (await thread.conversation.list()).map((m) => [m.content, m.state]);
  assert.deepEqual(states, [
    ["first question", "context"],
    ["first answer", "context"],
    ["analysis question", "rewound"],
    ["analysis answer", "rewound"],
  ]);
  await exchange(platform, id, "after the rewind", "ok");
  assert.doesNotMatch(await lastSent(), /analysis answer/);
  // By label: the newest mark with it.
  await thread.context.mark("again");
  assert.equal(await thread.context.rewind("again"), 0);
  await assert.rejects(() => thread.context.rewind("no-such-mark"), code("not_found"));
});

test("context.exclude takes an exchange out of the context", async () => {
  const platform = await bed.llmAgent(llm);
  const { id } = await platform.threads.create();
  const response = await exchange(platform, id, "a detour", "detour answer");
  assert.equal(await platform.thread(id).context.exclude(response.id), 2);
  assert.equal(await platform.thread(id).context.exclude(response.id), 0);
  await exchange(platform, id, "back on track", "ok");
  assert.doesNotMatch(await lastSent(), /detour answer/);
});

test("context.summarize replaces the exchanges in range by one summary", async () => {
  const platform = await bed.llmAgent(llm);
  const { id } = await platform.threads.create();
  const thread = platform.thread(id);
  const none = await thread.context.summarize({ olderThan: "1h" });
  assert.deepEqual(none, { ...none, summarized: 0, summary: null, id: null });
  await exchange(platform, id, "the long story", "a long answer");
  await bed.script({ text: "They talked about a long story." });
  const summary = await thread.context.summarize({ before: 2 });
  assert.equal(summary.summarized, 2);
  assert.equal(summary.summary, "They talked about a long story.");
  assert.ok(summary.id);
  assert.deepEqual((await thread.conversation.list()).map((m) => m.state), ["summarized", "summarized"]);
  await exchange(platform, id, "go on", "ok");
  assert.match(await lastSent(), /They talked about a long story\./);
});

test("context.window reads and changes the thread's window", async () => {
  const platform = await bed.llmAgent(llm);
  const window = platform.context.window;
  assert.deepEqual(await window.get(), { tokens: null, strategy: "truncate" });
  assert.deepEqual(await window.resize(16000), { tokens: 16000, strategy: "truncate" });
  assert.deepEqual(await window.strategy("summarize"), { tokens: 16000, strategy: "summarize" });
  assert.deepEqual(await window.get(), { tokens: 16000, strategy: "summarize" });
  assert.deepEqual(await window.reset(), { tokens: null, strategy: "summarize" });
  await assert.rejects(() => window.resize(10), code("bad_request"));
});

test("conversation.list pages the history, and conversation.delete erases a message's content", async () => {
  const platform = await bed.llmAgent(llm);
  const response = await exchange(platform, DEFAULT_THREAD, "my card number is 4242", "noted");
  await exchange(platform, DEFAULT_THREAD, "second", "two");
  const all = await platform.conversation.list();
  assert.deepEqual(all.map((m) => [m.id, m.role, m.content]), [
    [0, "user", "my card number is 4242"],
    [1, "assistant", "noted"],
    [2, "user", "second"],
    [3, "assistant", "two"],
  ]);
  assert.equal(all[0]!.exchange, response.id);
  assert.deepEqual((await platform.conversation.list({ limit: 1, before: 3 })).map((m) => m.id), [2]);
  await platform.conversation.delete(0);
  const [erased] = await platform.conversation.list({ limit: 1, before: 1 });
  assert.deepEqual([erased!.content, erased!.state], ["[deleted]", "deleted"]);
  // The default thread is the one `platform.thread(DEFAULT_THREAD)` names.
  assert.equal((await platform.thread(DEFAULT_THREAD).conversation.list()).length, 4);
  await assert.rejects(() => platform.conversation.delete(99), code("not_found"));
});

test("conversation.search finds messages in every thread, or in one", async () => {
  const platform = await bed.llmAgent(llm);
  const { id } = await platform.threads.create();
  await exchange(platform, id, "the invoice of Oslo", "paid");
  await exchange(platform, DEFAULT_THREAD, "an invoice of Bergen", "open");
  const everywhere = await platform.conversation.search("invoice");
  assert.deepEqual(new Set(everywhere.map((m) => m.thread)).size, 2);
  const inOne = await platform.thread(id).conversation.search("invoice");
  assert.deepEqual(inOne.map((m) => [m.thread, m.content]), [[id, "the invoice of Oslo"]]);
  assert.deepEqual(await platform.conversation.search("invoice -Oslo", { limit: 1 }).then((m) => m.map((x) => x.content)), ["an invoice of Bergen"]);
});

test("a prompt on a busy thread waits by default, and fails with conflict given ifBusy: reject", async () => {
  const platform = await bed.llmAgent(llm);
  const { id } = await platform.threads.create();
  await bed.script({ text: "slow", delay_ms: 1000 }, { text: "waited" });
  const slow = platform.prompt({ model: "haiku", thread: id, messages: user("slow one") });
  await new Promise((resolve) => setTimeout(resolve, 200));
  await assert.rejects(() => platform.prompt({ model: "haiku", thread: id, messages: user("now"), ifBusy: "reject" }), code("conflict"));
  const waiting = platform.prompt({ model: "haiku", thread: id, messages: user("later"), ifBusy: "wait" });
  assert.equal((await slow).content, "slow");
  assert.equal((await waiting).content, "waited");
});

test("another agent's thread is not_found", async () => {
  const owner = await bed.llmAgent(llm);
  const other = await bed.llmAgent(llm);
  const { id } = await owner.threads.create();
  await assert.rejects(() => other.thread(id).context.mark("x"), code("not_found"));
  await assert.rejects(() => other.thread(id).conversation.list(), code("not_found"));
});

test("the model keeps its memory through the memory platform tools", async () => {
  const platform = await bed.llmAgent({ models: ["haiku"], platform_tools: ["memory_read", "memory_write", "context_mark"] });
  await platform.storedAssets.create({ label: "working_state", value: "batch #1", limit: 100 });
  await bed.script(
    { tool_call: { id: "m1", name: "memory_write", arguments: { label: "working_state", value: "batch #2" } } },
    { tool_call: { id: "m2", name: "context_mark", arguments: { label: "after-batch-1" } } },
    { text: "Noted." },
  );
  const response = await platform.prompt({ model: "haiku", thread: DEFAULT_THREAD, messages: user("next batch"), tools: { platform: ["memory_write", "context_mark"] } });
  assert.equal(response.content, "Noted.");
  assert.equal((await platform.storedAssets.get("working_state")).value, "batch #2");
  // The mark lies before the prompt's exchange: rewinding to it takes the whole exchange out.
  assert.ok((await platform.context.rewind("after-batch-1")) >= 2);
});
