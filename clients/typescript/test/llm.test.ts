// LLM access through `platform.prompt`: answers from the mock provider, streamed deltas, custom
// tools answered by the client's handlers, platform tools, threads, and the manifest's limits
// (protocol section 17).

import assert from "node:assert/strict";
import { test } from "node:test";
import { IkigaiError } from "../src/platform.js";
import { testbed, waitFor } from "./support.js";

const bed = await testbed();
const platform = await bed.llmAgent({
  models: ["sonnet-4.5", "haiku"],
  platform_tools: ["send_message"],
  allow_custom_tools: true,
});

test("a prompt answers with the model's text and its usage", async () => {
  await bed.script({ text: "Escalate." });
  const response = await platform.prompt({ model: "sonnet-4.5", messages: [{ role: "user", content: "Should I?" }], metadata: { task_id: "t1" } });
  assert.equal(response.content, "Escalate.");
  assert.equal(response.model, "sonnet-4.5");
  assert.equal(response.stop_reason, "end_turn");
  assert.ok(response.usage.input_tokens > 0);
  assert.ok(response.id);
});

test("a streamed prompt iterates its deltas, and its response holds the whole answer", async () => {
  await bed.script({ text: "streamed answer text" });
  const stream = platform.prompt({ model: "haiku", messages: [{ role: "user", content: "go" }], stream: true });
  let text = "";
  for await (const delta of stream) text += delta;
  assert.equal(text, "streamed answer text");
  assert.equal((await stream.response).content, text);
});

test("a custom tool's call is answered by its handler and the model sees the result", async () => {
  await bed.script({ tool_call: { id: "call-1", name: "lookup", arguments: { city: "Oslo" } } }, { text: "It is 3 degrees." });
  const seen: unknown[] = [];
  const response = await platform.prompt({
    model: "sonnet-4.5",
    messages: [{ role: "user", content: "Weather in Oslo?" }],
    tools: {
      custom: [{
        name: "lookup",
        description: "Looks up the weather",
        parameters: { type: "object", properties: { city: { type: "string" } } },
        handler: async (args) => {
          seen.push(args);
          return { celsius: 3 };
        },
      }],
    },
  });
  assert.deepEqual(seen, [{ city: "Oslo" }]);
  assert.equal(response.content, "It is 3 degrees.");
  assert.equal(response.steps, 2);
  const last = (await bed.received()).at(-1)!.body;
  assert.match(JSON.stringify(last.messages), /celsius/);
});

test("a handler that throws is reported to the model as an error result", async () => {
  await bed.script({ tool_call: { id: "call-2", name: "broken", arguments: {} } }, { text: "Sorry." });
  const response = await platform.prompt({
    model: "sonnet-4.5",
    messages: [{ role: "user", content: "try" }],
    tools: { custom: [{ name: "broken", parameters: { type: "object" }, handler: () => { throw new Error("disk on fire"); } }] },
  });
  assert.equal(response.content, "Sorry.");
  const last = (await bed.received()).at(-1)!.body;
  assert.match(JSON.stringify(last.messages), /disk on fire/);
});

test("a platform tool runs in the daemon as the agent", async () => {
  await bed.script({ tool_call: { id: "call-3", name: "send_message", arguments: { mailbox: platform.agent, payload: { from: "model" } } } }, { text: "Sent." });
  const response = await platform.prompt({ model: "sonnet-4.5", messages: [{ role: "user", content: "send" }], tools: { platform: ["send_message"] } });
  assert.equal(response.content, "Sent.");
  const [message] = await platform.mailbox(platform.agent).receive();
  assert.deepEqual(message?.payload, { from: "model" });
});

test("a thread carries its context and history into the next prompt", async () => {
  await bed.script({ text: "Category: billing." }, { text: "Priority 2." });
  const thread = await platform.threads.create({ context: "Analyzing tickets" });
  await platform.prompt({ model: "haiku", thread: thread.id, messages: [{ role: "user", content: "Categorize this" }] });
  const followUp = await platform.prompt({ model: "haiku", thread: thread.id, messages: [{ role: "user", content: "Priority?" }] });
  assert.equal(followUp.thread, thread.id);
  const sent = JSON.stringify((await bed.received()).at(-1)!.body);
  for (const part of ["Analyzing tickets", "Categorize this", "Category: billing.", "Priority?"]) assert.match(sent, new RegExp(part));
});

test("a model the manifest does not list is permission_denied", async () => {
  await assert.rejects(
    () => platform.prompt({ model: "gpt", messages: [{ role: "user", content: "x" }] }),
    (e: unknown) => e instanceof IkigaiError && e.code === "permission_denied" && !e.retriable,
  );
});

test("admin reads the usage per agent and model", async () => {
  const usage = await (await bed.admin()).llm.usage();
  assert.ok(usage.some((row) => row.agent === platform.agent && row.model === "sonnet-4.5" && row.calls >= 1));
});

test("a prompt over the hourly quota is a retriable quota_exceeded that says when to retry", async () => {
  const limited = await bed.llmAgent({ models: ["haiku"], max_tokens_per_hour: 2000 });
  await bed.script({ text: "spent", input_tokens: 1500, output_tokens: 400 });
  await limited.prompt({ model: "haiku", messages: [{ role: "user", content: "spend" }], maxTokens: 100 });
  // The call reserved its estimate; its logged row, written just after the reply, counts what it used.
  const admin = await bed.admin();
  await waitFor(async () => (await admin.llm.usage()).some((row) => row.agent === limited.agent && row.tokens === 1900));
  await assert.rejects(
    () => limited.prompt({ model: "haiku", messages: [{ role: "user", content: "more" }], maxTokens: 500 }),
    (e: unknown) => e instanceof IkigaiError && e.code === "quota_exceeded" && e.retriable && (e.retryAfterMs ?? 0) > 0,
  );
});
