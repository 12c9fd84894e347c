// The shared setup of the suite: one `ikigai-testbed` per test file (a fresh database, the mock
// LLM provider and the real daemon), clients for `admin` and for agents, agents registered with
// LLM permissions, and the mock scripted over HTTP.

import { spawn, type ChildProcessByStdio } from "node:child_process";
import type { Readable, Writable } from "node:stream";
import { after } from "node:test";
import { randomUUID } from "node:crypto";
import path from "node:path";
import { createInterface, type Interface } from "node:readline";
import { fileURLToPath } from "node:url";
import { Platform, type LlmPermissions, type Manifest } from "../src/platform.js";

/** The package folder (clients/typescript), from dist/test/. */
export const packageDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
/** The repository root. */
export const repoDir = path.resolve(packageDir, "../..");

export interface Bed {
  root: string;
  socket: string;
  admin_token: string;
  database_url: string;
  mock_url: string;
  pid: number;
}

/** A running testbed: its JSON line, its commands, and clients of its daemon. */
export class Testbed {
  private readonly opened: Platform[] = [];

  private constructor(
    private readonly child: ChildProcessByStdio<Writable, Readable, null>,
    private readonly lines: AsyncIterator<string>,
    readonly bed: Bed,
  ) {}

  /** Starts a testbed; `config` is appended to its `ikigai.conf`; `daemon` replaces its daemon binary. */
  static async start(config?: string, daemon?: string): Promise<Testbed> {
    const binary = process.env.IKIGAI_TESTBED ?? path.join(repoDir, "target/debug/ikigai-testbed");
    const args = [...(config ? ["--config", config] : []), ...(daemon ? ["--daemon", daemon] : [])];
    const child = spawn(binary, args, { stdio: ["pipe", "pipe", "inherit"] });
    const lines = (createInterface({ input: child.stdout }) as Interface)[Symbol.asyncIterator]();
    const first = await lines.next();
    if (first.done) throw new Error(`${binary} ended before printing its JSON line`);
    return new Testbed(child, lines, JSON.parse(first.value) as Bed);
  }

  get socket(): string {
    return this.bed.socket;
  }

  /** `kill9`, `start`, `restart` or `stop` the daemon. */
  async command(command: "kill9" | "start" | "restart" | "stop"): Promise<void> {
    this.child.stdin.write(`${command}\n`);
    const line = await this.lines.next();
    const answer = JSON.parse(line.value ?? "{}");
    if (!answer.ok) throw new Error(`testbed ${command}: ${answer.error}`);
  }

  /** A client of `admin`, closed at `stop()`. */
  admin(): Promise<Platform> {
    return this.track(Platform.connect({ socket: this.socket, agent: "admin", token: this.bed.admin_token }));
  }

  /** A token for agent `name`. */
  async token(name: string): Promise<string> {
    const admin = await this.admin();
    return admin.agents.token(name);
  }

  /** A client of agent `name` (a fresh name by default), closed at `stop()`. */
  async agent(name = uniqueName("agent")): Promise<Platform> {
    const token = await this.token(name);
    return this.track(Platform.connect({ socket: this.socket, agent: name, token }));
  }

  /** Deploys `manifest` as an agent that only connects (its process exits at once, never restarted). */
  async register(manifest: Manifest): Promise<void> {
    const admin = await this.admin();
    const files = [{ path: "README", content: "an agent run by the test itself\n" }];
    await admin.agents.deploy({ version: "1", command: ["true"], restart: "temporary", ...manifest }, files);
  }

  /** A client of a new agent whose manifest grants `llm`. */
  async llmAgent(llm: LlmPermissions, name = uniqueName("llm")): Promise<Platform> {
    await this.register({ name, permissions: { llm } });
    return this.agent(name);
  }

  /** The environment under which `Platform.connect()` (no options) is agent `name`. */
  async agentEnv(name: string): Promise<Record<string, string>> {
    return { IKIGAI_SOCKET: this.socket, IKIGAI_AGENT: name, IKIGAI_TOKEN: await this.token(name) };
  }

  /** Queues scripted answers of the mock provider (`api` defaults to `anthropic`). */
  async script(...replies: object[]): Promise<void> {
    const body = replies.map((reply) => ({ api: "anthropic", ...reply }));
    const response = await fetch(`${this.bed.mock_url}/mock/replies`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`mock refused the script: ${await response.text()}`);
  }

  /** The requests the mock provider received, oldest first. */
  async received(): Promise<Array<{ api: string; body: any }>> {
    const response = await fetch(`${this.bed.mock_url}/mock/received`);
    return (await response.json()) as Array<{ api: string; body: any }>;
  }

  /** Closes every client and ends the testbed (which drops its database and root). */
  async stop(): Promise<void> {
    for (const platform of this.opened) platform.close();
    const exited = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.stdin.end();
    await exited;
  }

  private async track(connecting: Promise<Platform>): Promise<Platform> {
    const platform = await connecting;
    this.opened.push(platform);
    return platform;
  }
}

/** Starts the testbed of one test file, ended after its tests. */
export async function testbed(config?: string): Promise<Testbed> {
  const bed = await Testbed.start(config);
  after(() => bed.stop());
  return bed;
}

/** A name no other test uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** Polls `check` until it returns a value other than `undefined`/`false`, or fails after `ms`. */
export async function waitFor<T>(check: () => Promise<T | undefined | false>, ms = 5000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
