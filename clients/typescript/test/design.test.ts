// The design document's code runs as written (design/runtime.md): each TypeScript snippet of its
// Purpose and Agent API sections (and the Platform Tools one, and the high- and low-level APIs of
// Memory and Context) is held here verbatim and run as an
// agent program against the real daemon, from an agent's service directory with only
// IKIGAI_AGENT and IKIGAI_TOKEN set, as the supervisor starts agents, so `Platform.connect()`
// finds `../../daemon.sock` by itself. Only setup goes around a snippet: the values it names
// (`value`, `message`, `payload`, `myCustomToolDefinition`, `response`, `messageId`) before it, a line reporting what it
// got after it. The Agent API block declares `const response` twice, so it is three examples
// (split at its comment headings) run one after another, each after the block's own first lines.
// The same programs are type-checked as TypeScript (strict) against the client's declarations.
// The document's ikigai.conf and manifest examples are checked as written too.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { test } from "node:test";
import { testbed, packageDir, repoDir } from "./support.js";

const PURPOSE = `import { Platform } from "ikigai/platform";

const platform = await Platform.connect();  // connects to ../../daemon.sock
const task = await platform.queue("my-tasks").claim();
await platform.cache.set("key", value);
await platform.pubsub.publish("topic", message);

// LLM access via the daemon
const response = await platform.prompt({
    model: "sonnet-4.5",
    messages: [{ role: "user", content: "Analyze this data..." }],
});`;

const AGENT_API_CONNECT = `import { Platform } from "ikigai/platform";

const platform = await Platform.connect();`;

const AGENT_API_SIMPLE = `// Simple prompt
const response = await platform.prompt({
    model: "sonnet-4.5",
    messages: [
        { role: "user", content: "Should I escalate this alert?" }
    ],
});`;

const AGENT_API_TOOLS = `// With platform tools
const response = await platform.prompt({
    model: "sonnet-4.5",
    messages: [
        { role: "user", content: "Check recent errors and decide if we need to alert." }
    ],
    tools: {
        platform: ["query_telemetry", "send_message"],
        custom: [myCustomToolDefinition],
    },
});`;

const AGENT_API_THREADS = `// With conversation threading
const thread = await platform.threads.create({
    context: "Analyzing customer support tickets"
});

await platform.prompt({
    thread: thread.id,
    messages: [{ role: "user", content: "Categorize this ticket..." }],
});

// Follow-up (has context from previous turn)
await platform.prompt({
    thread: thread.id,
    messages: [{ role: "user", content: "What priority did you assign?" }],
});`;

const PLATFORM_TOOLS = `// Agent asks LLM to decide and act
const response = await platform.prompt({
    model: "sonnet-4.5",
    messages: [{
        role: "user",
        content: \`I received this webhook: \${payload}.
                  Should I create a task for the analysis agent?\`
    }],
    tools: {
        platform: ["create_task", "query_telemetry"],
    },
});

// LLM might respond: "Yes, creating a high-priority task..."
// and call create_task automatically`;

const MEMORY_HIGH_LEVEL = `// Mark a restoration point
const mark = await platform.context.mark("before-analysis");

// Rewind to a previous mark
await platform.context.rewind(mark);

// Exclude an exchange from future context
await platform.context.exclude(response.id);

// Summarize older history to save context space
await platform.context.summarize({ olderThan: "1h" });`;

const MEMORY_LOW_LEVEL = `// StoredAssets - named, persistent context sections
await platform.storedAssets.create({
    label: "working_state",
    value: "Currently processing batch #1234",
    limit: 2000,
});

await platform.storedAssets.update("working_state", {
    value: "Batch #1234 complete, 47 items processed",
});

const asset = await platform.storedAssets.get("working_state");

// Conversation history management
const messages = await platform.conversation.list({ limit: 50 });
await platform.conversation.delete(messageId);

// Sliding window configuration
await platform.context.window.resize(16000);  // tokens
await platform.context.window.strategy("summarize");  // or "truncate"`;

const CONF_DEFAULT = `# Default configuration - PostgreSQL for everything
[services]
queues = postgres
mailboxes = postgres
cache = postgres
pubsub = postgres
storage = postgres
telemetry = postgres`;

const MANIFEST = `{
    "name": "monitoring-agent",
    "permissions": {
        "llm": {
            "models": ["haiku", "sonnet"],
            "max_tokens_per_request": 4096,
            "max_tokens_per_hour": 100000,
            "platform_tools": ["query_telemetry", "send_message"],
            "allow_custom_tools": true
        }
    }
}`;


/** The agent the snippets run as: its manifest allows what they use. */
const AGENT = "design-agent";

const bed = await testbed(CONF_DEFAULT);
const admin = await bed.admin();
await bed.register({
  name: AGENT,
  permissions: {
    llm: {
      models: ["sonnet-4.5", "haiku", "sonnet"],
      platform_tools: ["query_telemetry", "send_message", "create_task"],
      allow_custom_tools: true,
    },
  },
});

/** Reports `expression` as JSON and closes the platform, after a snippet. */
const report = (expression: string) => `console.log(JSON.stringify(${expression}));\nplatform.close();`;

const TOOL_SETUP = `const calls = new Array();
const myCustomToolDefinition = {
    name: "check_pager",
    description: "Whether the on-call engineer was already paged",
    parameters: { type: "object", properties: { service: { type: "string" } } },
    handler: async (args) => (calls.push(args), { paged: false }),
};`;

/** An exchange on the agent's default thread, before the memory snippets. */
const DEFAULT_THREAD_PROMPT = `const response = await platform.prompt({ thread: "default", messages: [{ role: "user", content: "Remember batch #1234." }] });`;

/** Each agent program: setup, the snippet(s) verbatim, a report. */
const PROGRAMS = {
  purpose: [`const value = { cached: true };\nconst message = { hello: "subscribers" };`, PURPOSE, report("{ task: task?.payload, response: response.content }")],
  agent_api_simple: [AGENT_API_CONNECT, AGENT_API_SIMPLE, report("{ content: response.content }")],
  agent_api_tools: [AGENT_API_CONNECT, TOOL_SETUP, AGENT_API_TOOLS, report("{ content: response.content, calls }")],
  agent_api_threads: [AGENT_API_CONNECT, AGENT_API_THREADS, report("{ thread: thread.id }")],
  memory_high_level: [AGENT_API_CONNECT, DEFAULT_THREAD_PROMPT, MEMORY_HIGH_LEVEL, report("{ mark, messages: await platform.conversation.list() }")],
  memory_low_level: [
    AGENT_API_CONNECT,
    DEFAULT_THREAD_PROMPT,
    "const messageId = (await platform.conversation.list({ limit: 1 }))[0]?.id ?? -1;",
    MEMORY_LOW_LEVEL,
    report("{ asset, messages, after: await platform.conversation.list({ limit: 1 }), window: await platform.context.window.get() }"),
  ],
  platform_tools: [AGENT_API_CONNECT, `const payload = JSON.stringify({ event: "deploy failed" });`, PLATFORM_TOOLS, report("{ content: response.content }")],
};
type Program = keyof typeof PROGRAMS;

/** Writes the programs with extension `ext` inside the package, so `ikigai/platform` resolves by its own name. */
function write(ext: "mjs" | "ts"): string[] {
  const dir = path.join(packageDir, `dist/test/design-${ext}`);
  mkdirSync(dir, { recursive: true });
  return Object.entries(PROGRAMS).map(([name, parts]) => {
    const file = path.join(dir, `${name}.${ext}`);
    writeFileSync(file, `${parts.join("\n\n")}\n`);
    return file;
  });
}

/** Runs a program as agent AGENT from its service directory; returns what it reported. */
async function run(name: Program): Promise<Record<string, any>> {
  const file = write("mjs").find((f) => f.endsWith(`/${name}.mjs`))!;
  const { IKIGAI_SOCKET: _, ...inherited } = process.env;
  const { IKIGAI_AGENT, IKIGAI_TOKEN } = await bed.agentEnv(AGENT);
  const child = spawn(process.execPath, [file], {
    cwd: path.join(bed.bed.root, ".ikigai/services", AGENT),
    env: { ...inherited, IKIGAI_AGENT, IKIGAI_TOKEN },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const code = await new Promise((resolve) => child.on("exit", resolve));
  assert.equal(code, 0, `${name} failed:\n${stderr}`);
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "{}");
}

test("Purpose: connect, claim, cache, publish and prompt", async () => {
  await admin.queue("my-tasks").push({ analyze: "this" });
  const subscription = await admin.pubsub.subscribe("topic");
  await bed.script({ text: "Analysis: fine." });
  const got = await run("purpose");
  assert.deepEqual(got, { task: { analyze: "this" }, response: "Analysis: fine." });
  assert.deepEqual((await subscription.next()).value?.message, { hello: "subscribers" });
  const cached = await bed.agent(AGENT).then((p) => p.cache.get("key"));
  assert.deepEqual(cached, { cached: true });
});

test("Agent API: a simple prompt", async () => {
  await bed.script({ text: "Yes, escalate." });
  const got = await run("agent_api_simple");
  assert.deepEqual(got, { content: "Yes, escalate." });
});

test("Agent API: platform tools and a custom tool the client answers", async () => {
  await bed.script(
    { tool_call: { id: "c1", name: "check_pager", arguments: { service: "api" } } },
    { tool_call: { id: "c2", name: "send_message", arguments: { mailbox: "on-call", payload: { alert: "api" } } } },
    { text: "Alert sent." },
  );
  const got = await run("agent_api_tools");
  assert.deepEqual(got, { content: "Alert sent.", calls: [{ service: "api" }] });
  const [message] = await admin.mailbox("on-call").peek();
  assert.deepEqual(message?.payload, { alert: "api" });
});

test("Platform Tools: the model creates a task through create_task", async () => {
  await bed.script(
    { tool_call: { id: "c3", name: "create_task", arguments: { queue: "analysis", payload: { webhook: 42 }, priority: 5 } } },
    { text: "Yes, creating a high-priority task..." },
  );
  const got = await run("platform_tools");
  assert.deepEqual(got, { content: "Yes, creating a high-priority task..." });
  const task = await admin.queue("analysis").claim();
  assert.deepEqual(task?.record.priority, 5);
  assert.match(JSON.stringify((await bed.received()).at(-2)!.body), /deploy failed/);
});

test("Configurable Backends: the default ikigai.conf is accepted as written", async () => {
  // This file's testbed was started with it appended to its configuration.
  assert.match((await admin.status()).config, /ikigai\.conf$/);
});

test("Permission Model: the manifest is accepted as written and its agent prompts", async () => {
  await admin.agents.deploy(JSON.parse(MANIFEST), [{ path: "README", content: "connects by itself\n" }]);
  await bed.script({ text: "haiku here" });
  const agent = await bed.agent("monitoring-agent");
  const response = await agent.prompt({ model: "haiku", messages: [{ role: "user", content: "hi" }] });
  assert.equal(response.content, "haiku here");
});

test("the snippets type-check as TypeScript against the client's declarations", () => {
  const files = write("ts");
  const tsc = path.join(packageDir, "node_modules/typescript/bin/tsc");
  // Only the setup around the snippets has untyped parameters (the tool handler's `args`).
  const options = ["--noEmit", "--strict", "--noImplicitAny", "false", "--module", "nodenext", "--target", "es2022", "--types", "node"];
  const result = spawnSync(process.execPath, [tsc, ...options, ...files], { cwd: packageDir, encoding: "utf8" });
  assert.equal(result.status, 0, result.stdout + result.stderr);
});

/** The design document, when it lies beside the repository (it does in CI). */
const designDoc = [process.env.IKIGAI_DESIGN_DOC, path.join(repoDir, "../shared/design/runtime.md"), "/work/shared/design/runtime.md"]
  .filter((p): p is string => !!p)
  .find((p) => existsSync(p));

test("every snippet here is the design document's text, verbatim", { skip: !designDoc && "the design document is not beside the repository" }, () => {
  const doc = readFileSync(designDoc!, "utf8");
  const snippets = { PURPOSE, AGENT_API_CONNECT, AGENT_API_SIMPLE, AGENT_API_TOOLS, AGENT_API_THREADS, PLATFORM_TOOLS, MEMORY_HIGH_LEVEL, MEMORY_LOW_LEVEL, CONF_DEFAULT, MANIFEST };
  for (const [name, text] of Object.entries(snippets)) assert.ok(doc.includes(text), `${name} is not in ${designDoc}`);
});

// Last (with the memory tests after it): while it fails its scripted answers stay queued in the mock.
test("Agent API: a thread and its follow-up", async () => {
  await bed.script({ text: "Category: billing." }, { text: "Priority: high." });
  await run("agent_api_threads");
  const sent = JSON.stringify((await bed.received()).at(-1)!.body);
  for (const part of ["Analyzing customer support tickets", "Categorize this ticket...", "Category: billing.", "What priority did you assign?"]) {
    assert.ok(sent.includes(part), `the follow-up carries ${part}`);
  }
});

test("Memory and Context, high level: mark, rewind, exclude and summarize the default thread", async () => {
  await bed.script({ text: "Batch #1234 remembered." });
  const got = await run("memory_high_level");
  assert.deepEqual([got.mark.label, got.mark.position], ["before-analysis", 2]);
  // The exchange before the mark was excluded; nothing was an hour old to summarize.
  const mine = got.messages.filter((m: any) => m.exchange === got.messages.at(-1).exchange);
  assert.deepEqual(mine.map((m: any) => [m.content, m.state]), [["Remember batch #1234.", "excluded"], ["Batch #1234 remembered.", "excluded"]]);
});

test("Memory and Context, low level: stored assets, the history and the window", async () => {
  await bed.script({ text: "Noted." });
  const got = await run("memory_low_level");
  assert.deepEqual([got.asset.label, got.asset.value, got.asset.limit, got.asset.version], ["working_state", "Batch #1234 complete, 47 items processed", 2000, 2]);
  assert.deepEqual(got.messages.slice(-2).map((m: any) => m.content), ["Remember batch #1234.", "Noted."]);
  assert.deepEqual([got.after[0].content, got.after[0].state], ["[deleted]", "deleted"]);
  assert.deepEqual(got.window, { tokens: 16000, strategy: "summarize" });
  // Every prompt on a thread of the agent now carries the asset.
  await bed.script({ text: "on it" });
  const agent = await bed.agent(AGENT);
  const { id } = await agent.threads.create();
  await agent.prompt({ thread: id, messages: [{ role: "user", content: "status?" }] });
  assert.match(JSON.stringify((await bed.received()).at(-1)!.body), /Batch #1234 complete, 47 items processed/);
});
