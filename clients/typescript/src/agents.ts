// The agent registry (docs/protocol.md section 16) and agent tokens (section 7): deploy, list,
// start and stop agents, heartbeats of the caller, and (`admin`) tokens for agents.

import type { Connection } from "./connection.js";
import type { Json, Timestamp } from "./values.js";

/** The LLM permissions of a manifest (enforced by the daemon, section 17). */
export interface LlmPermissions {
  models?: string[];
  max_tokens_per_request?: number;
  max_tokens_per_hour?: number;
  platform_tools?: string[];
  allow_custom_tools?: boolean;
}

/** An agent's `manifest.json`, as the protocol names its fields. */
export interface Manifest {
  name: string;
  version?: string;
  command?: string[];
  env?: { [name: string]: string };
  restart?: "permanent" | "transient" | "temporary";
  max_restarts?: number;
  restart_window_s?: number;
  heartbeat_timeout_s?: number;
  stop_grace_s?: number;
  permissions?: { deploy_agent?: boolean; llm?: LlmPermissions };
}

/** A file of the service directory; `content` is sent as hex. */
export interface ServiceFile {
  path: string;
  content: string | Uint8Array;
  executable?: boolean;
}

export interface AgentEntry {
  name: string;
  version: string;
  status: "running" | "stopped" | "failed";
  deployed_at: Timestamp;
  last_heartbeat: Timestamp | null;
  server: string;
  daemon_id: string;
  pid: number | null;
  restarts: number;
  manifest: Manifest & { [field: string]: Json };
}

export class Agents {
  constructor(private readonly conn: Connection) {}

  /** Deploys `manifest` (with `files` as its service directory, else the one in place). */
  deploy(manifest: Manifest, files?: ServiceFile[]): Promise<{ name: string; version: string }> {
    return this.conn.call("agents.deploy", { manifest, files: files?.map(fileArg) });
  }

  async list(): Promise<AgentEntry[]> {
    const reply = await this.conn.call<{ agents: AgentEntry[] }>("agents.list", {});
    return reply.agents;
  }

  get(name: string): Promise<AgentEntry> {
    return this.conn.call("agents.get", { name });
  }

  start(name: string): Promise<void> {
    return this.lifecycle("agents.start", name);
  }

  stop(name: string): Promise<void> {
    return this.lifecycle("agents.stop", name);
  }

  restart(name: string): Promise<void> {
    return this.lifecycle("agents.restart", name);
  }

  undeploy(name: string): Promise<void> {
    return this.lifecycle("agents.undeploy", name);
  }

  /** The caller's heartbeat (restarts its hang timer). */
  async heartbeat(): Promise<void> {
    await this.conn.call("agents.heartbeat", {});
  }

  /** `admin`: the token of agent `name` (issued if it has none on file). */
  async token(name: string): Promise<string> {
    const reply = await this.conn.call<{ agent: string; token: string }>("agents.token", { name });
    return reply.token;
  }

  private async lifecycle(op: string, name: string): Promise<void> {
    await this.conn.call(op, { name });
  }
}

function fileArg(file: ServiceFile): object {
  const bytes = typeof file.content === "string" ? Buffer.from(file.content) : Buffer.from(file.content);
  return { path: file.path, hex: bytes.toString("hex"), executable: file.executable };
}
