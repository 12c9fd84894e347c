// `ikigai/platform`: the client an agent imports. `Platform.connect()` opens one pipelined,
// self-reconnecting connection (identity from the options, else IKIGAI_SOCKET / IKIGAI_AGENT /
// IKIGAI_TOKEN as the supervisor sets them) and hands out every service of the daemon. Option
// names are camelCase; reply objects keep the protocol's field names (docs/protocol.md).

import { Agents } from "./agents.js";
import { Cache } from "./cache.js";
import { Connection, type HelloReply, type ReconnectOptions } from "./connection.js";
import { IkigaiError } from "./errors.js";
import { Llm, type PromptRequest, type PromptResponse, type PromptStream } from "./llm.js";
import { Mailbox, mailboxStats, type MailboxStats } from "./mailbox.js";
import { Context, Conversation, StoredAssets, ThreadScope } from "./memory.js";
import { PubSub } from "./pubsub.js";
import { Queue } from "./queue.js";
import { Storage } from "./storage.js";
import { Telemetry } from "./telemetry.js";
import { Threads } from "./threads.js";
import { Transaction } from "./transaction.js";

export type * from "./agents.js";
export type * from "./cache.js";
export type { HelloReply, ReconnectOptions } from "./connection.js";
export type * from "./llm.js";
export type * from "./mailbox.js";
export type * from "./memory.js";
export type * from "./pubsub.js";
export type * from "./queue.js";
export type * from "./storage.js";
export type * from "./telemetry.js";
export type * from "./values.js";
export { IkigaiError, type ErrorCode } from "./errors.js";
export { PromptStream } from "./llm.js";
export { DEFAULT_THREAD } from "./memory.js";
export { Subscription } from "./pubsub.js";
export { Task } from "./queue.js";
export { Transaction } from "./transaction.js";

export interface ConnectOptions {
  /** Socket path; default `IKIGAI_SOCKET`, else `../../daemon.sock` (relative to the working directory). */
  socket?: string;
  /** Identity; default `IKIGAI_AGENT`. */
  agent?: string;
  /** Its token; default `IKIGAI_TOKEN`. */
  token?: string;
  /** Backoff of reconnects after the daemon went away (default 50 ms doubling to 2 s); `false`: none. */
  reconnect?: ReconnectOptions;
}

/** The daemon's `daemon.status` reply. */
export interface DaemonStatus {
  daemon: string;
  version: string;
  pid: number;
  uptime_ms: number;
  root: string;
  database: string;
  schema_version: number;
  config: string;
  connections: number;
  mailboxes_running: number;
  queues_running: number;
  threads_running: number;
}

/** Fault injection (`admin`, with `[debug] fault_injection = true`): for tests only. */
export class Debug {
  constructor(private readonly conn: Connection) {}

  async panicMailbox(mailbox: string): Promise<void> {
    await this.conn.call("debug.panic_mailbox", { mailbox });
  }

  async panicAgent(name: string): Promise<void> {
    await this.conn.call("debug.panic_agent", { name });
  }
}

export class Platform {
  readonly cache: Cache;
  readonly pubsub: PubSub;
  readonly storage: Storage;
  readonly telemetry: Telemetry;
  readonly threads: Threads;
  readonly agents: Agents;
  readonly llm: Llm;
  readonly storedAssets: StoredAssets;
  /** The default thread's context (`platform.thread(id).context`: another thread's). */
  readonly context: Context;
  /** The default thread's history; its `search` looks in every thread of the agent. */
  readonly conversation: Conversation;
  readonly debug: Debug;

  /** Prefer `Platform.connect()`. */
  constructor(private readonly conn: Connection) {
    this.cache = new Cache(conn);
    this.pubsub = new PubSub(conn);
    this.storage = new Storage(conn);
    this.telemetry = new Telemetry(conn);
    this.threads = new Threads(conn);
    this.agents = new Agents(conn);
    this.llm = new Llm(conn);
    this.storedAssets = new StoredAssets(conn);
    ({ context: this.context, conversation: this.conversation } = new ThreadScope(conn, undefined));
    this.debug = new Debug(conn);
  }

  /** Connects and says `hello`; rejects if the daemon cannot be reached or refuses the identity. */
  static async connect(options: ConnectOptions = {}): Promise<Platform> {
    const socket = options.socket ?? process.env.IKIGAI_SOCKET ?? "../../daemon.sock";
    const agent = options.agent ?? required("IKIGAI_AGENT");
    const token = options.token ?? required("IKIGAI_TOKEN");
    const conn = await Connection.open({ socket, agent, token }, options.reconnect ?? {});
    return new Platform(conn);
  }

  /** The agent this connection is authenticated as. */
  get agent(): string {
    return this.conn.agent;
  }

  /** The daemon's `hello` reply of the current session. */
  get hello(): HelloReply {
    return this.conn.hello;
  }

  queue(name: string): Queue {
    return new Queue(this.conn, name);
  }

  mailbox(name: string): Mailbox {
    return new Mailbox(this.conn, name);
  }

  /** The context and conversation of a thread: one `threads.create` made (or its id), or `DEFAULT_THREAD`. */
  thread(thread: string | { id: string }): ThreadScope {
    return new ThreadScope(this.conn, typeof thread === "string" ? thread : thread.id);
  }

  /** `mailbox.stats` of the caller's own mailbox, or of every mailbox for `admin`. */
  mailboxStats(): Promise<MailboxStats[]> {
    return mailboxStats(this.conn);
  }

  prompt(request: PromptRequest & { stream: true }): PromptStream;
  prompt(request: PromptRequest & { stream?: false }): Promise<PromptResponse>;
  prompt(request: PromptRequest): Promise<PromptResponse> | PromptStream;
  prompt(request: PromptRequest): Promise<PromptResponse> | PromptStream {
    return this.llm.prompt(request);
  }

  /** Runs `work` in a transaction: committed when it returns, rolled back when it throws. */
  transaction<T>(work: (tx: Transaction) => Promise<T>): Promise<T> {
    return Transaction.run(this.conn, work);
  }

  /** Opens a transaction to commit or roll back by hand. */
  beginTransaction(): Promise<Transaction> {
    return Transaction.begin(this.conn);
  }

  async ping(): Promise<void> {
    await this.conn.call("ping", {});
  }

  status(): Promise<DaemonStatus> {
    return this.conn.call("daemon.status", {});
  }

  get isClosed(): boolean {
    return this.conn.isClosed;
  }

  /** Closes the connection: calls not answered yet fail with `closed`, subscriptions end. */
  close(): void {
    this.conn.close();
  }
}

function required(name: string): string {
  const value = process.env[name];
  if (value) return value;
  throw new IkigaiError("invalid_options", `${name} is not set: give it in the environment or in Platform.connect()`);
}
