// Memory and context (docs/protocol.md section 18): the agent's stored assets, and the context
// and conversation history of its threads. `platform.context` and `platform.conversation` work
// on the agent's default thread (`conversation.search`: on all its threads);
// `platform.thread(id)` gives the same two for one thread (`DEFAULT_THREAD` names the default).

import type { Connection } from "./connection.js";
import type { ChatMessage, Usage } from "./llm.js";
import type { Timestamp } from "./values.js";

/** The thread each agent has, created on first use: `prompt({ thread: DEFAULT_THREAD })`. */
export const DEFAULT_THREAD = "default";

/** A named, persistent section of the agent's context, carried by every prompt on its threads. */
export interface StoredAsset {
  label: string;
  value: string;
  /** The most characters `value` may have. */
  limit: number;
  description: string | null;
  version: number;
  /** The characters `value` has. */
  chars: number;
  updated_at: Timestamp;
}

/** An earlier version of a stored asset. */
export interface AssetVersion {
  version: number;
  value: string;
  limit: number;
  description: string | null;
  updated_at: Timestamp;
  /** True on the version that recorded a deletion of the label (its `value` empty); the daemon adds it, section 18 does not list it. */
  deleted?: boolean;
}

export interface NewAsset {
  /** 1 to 64 characters of `A-Z a-z 0-9 _ - .`. */
  label: string;
  value: string;
  /** In characters, 1 to 100000; a longer value is refused (`bad_request`), never cut. */
  limit: number;
  description?: string;
}

/** What `storedAssets.update` changes: at least one of these. */
export interface AssetChanges {
  value?: string;
  limit?: number;
  description?: string;
}

/** The stored assets of the agent (`assets.*`). */
export class StoredAssets {
  constructor(private readonly conn: Connection) {}

  /** Creates an asset (`conflict` if the label exists). */
  create(asset: NewAsset): Promise<StoredAsset> {
    const { label, value, limit, description } = asset;
    return this.conn.call("assets.create", { label, value, limit, description });
  }

  /** Changes an asset: its next version. */
  update(label: string, changes: AssetChanges): Promise<StoredAsset> {
    const { value, limit, description } = changes;
    return this.conn.call("assets.update", { label, value, limit, description });
  }

  /** The asset, with up to `history` (0 to 1000, default 0) earlier versions, newest first (`history` absent when none were asked for). */
  get(label: string, options: { history?: number } = {}): Promise<StoredAsset & { history?: AssetVersion[] }> {
    return this.conn.call("assets.get", { label, history: options.history });
  }

  /** Every asset, in the order prompts carry them. */
  async list(): Promise<StoredAsset[]> {
    const reply = await this.conn.call<{ assets: StoredAsset[] }>("assets.list", {});
    return reply.assets;
  }

  /** Takes the label out of every prompt (its versions stay stored). */
  async delete(label: string): Promise<void> {
    await this.conn.call("assets.delete", { label });
  }
}

/** A restoration point of a thread's context, from `context.mark`. */
export interface Mark {
  /** Its id. */
  mark: string;
  label: string;
  /** The number of messages of the history before it. */
  position: number;
}

export interface SummarizeOptions {
  /** Exchanges that ended longer ago than this: `"90s"`, `"30m"`, `"1h"`, `"2d"`, or milliseconds. */
  olderThan?: string | number;
  /** Exchanges that end before this message id. */
  before?: number;
}

/** The reply of `context.summarize`: no model call (`id` null) when nothing was in range. */
export interface Summary {
  summarized: number;
  summary: string | null;
  /** The `llm_interactions` row of the summary's call. */
  id: string | null;
  usage?: Usage;
  cost_usd?: number;
}

export type WindowStrategy = "truncate" | "summarize";

/** A thread's window: `tokens` null means the model's context size. */
export interface WindowSetting {
  tokens: number | null;
  strategy: WindowStrategy;
}

export type MessageState = "context" | "summarized" | "rewound" | "excluded" | "deleted";

/** A message of a thread's history, as `conversation.list` gives it. */
export interface ConversationMessage extends ChatMessage {
  /** Its position in the history, from 0. */
  id: number;
  /** The exchange it belongs to: the `id` of its prompt's reply (null for a message stored before the daemon kept exchanges). */
  exchange: string | null;
  created_at: Timestamp;
  state: MessageState;
}

/** A message found by `conversation.search`, and its thread (the daemon may leave `state` out). */
export interface FoundMessage extends Omit<ConversationMessage, "state"> {
  state?: MessageState;
  thread: string;
}

/** The ops of one thread (or, `thread` undefined, of the default one): every call sends it. */
class OnThread {
  constructor(
    private readonly conn: Connection,
    private readonly thread: string | undefined,
  ) {}

  protected call<T>(op: string, args: object): Promise<T> {
    return this.conn.call(op, { ...args, thread: this.thread });
  }
}

/** A thread's window (`context.window`): each call answers the setting after it. */
export class ContextWindow extends OnThread {
  /** The current setting. */
  get(): Promise<WindowSetting> {
    return this.call("context.window", {});
  }

  /** Fits the context in `tokens` (256 to 10000000). */
  resize(tokens: number): Promise<WindowSetting> {
    return this.call("context.window", { tokens });
  }

  /** What leaves the window first: `truncate` drops the oldest exchanges, `summarize` summarises them. */
  strategy(strategy: WindowStrategy): Promise<WindowSetting> {
    return this.call("context.window", { strategy });
  }

  /** Back to the model's context size. */
  reset(): Promise<WindowSetting> {
    return this.call("context.window", { reset: true });
  }
}

/** What the model sees of a thread (`context.*`); the history itself is never rewritten. */
export class Context extends OnThread {
  readonly window: ContextWindow;

  constructor(conn: Connection, thread: string | undefined) {
    super(conn, thread);
    this.window = new ContextWindow(conn, thread);
  }

  /** Marks a restoration point (`label`: 1 to 200 characters). */
  mark(label: string): Promise<Mark> {
    return this.call("context.mark", { label });
  }

  /** Takes everything after the mark out of the context; the number of messages taken out. */
  async rewind(mark: Mark | string): Promise<number> {
    const ref = typeof mark === "string" ? mark : mark.mark;
    const reply = await this.call<{ rewound: number }>("context.rewind", { mark: ref });
    return reply.rewound;
  }

  /** Takes an exchange (the `id` of a prompt's reply) out of the context; its message count (0: already out). */
  async exclude(exchange: string): Promise<number> {
    const reply = await this.call<{ excluded: number }>("context.exclude", { id: exchange });
    return reply.excluded;
  }

  /** Replaces the exchanges in range (exactly one of `olderThan`, `before`) by one summary. */
  summarize(options: SummarizeOptions): Promise<Summary> {
    return this.call("context.summarize", { older_than: options.olderThan, before: options.before });
  }
}

/** A thread's history (`conversation.*`). */
export class Conversation extends OnThread {
  /** Up to `limit` (1 to 1000, default 50) messages before message id `before` (default: the newest), oldest first. */
  async list(options: { limit?: number; before?: number } = {}): Promise<ConversationMessage[]> {
    const reply = await this.call<{ messages: ConversationMessage[] }>("conversation.list", { limit: options.limit, before: options.before });
    return reply.messages;
  }

  /** Erases a message's content for good; it keeps its place in its exchange. */
  async delete(id: number): Promise<void> {
    await this.call("conversation.delete", { id });
  }

  /** Messages matching `text` (Postgres web search syntax), best first; `platform.conversation` searches every thread. */
  async search(text: string, options: { limit?: number } = {}): Promise<FoundMessage[]> {
    const reply = await this.call<{ messages: FoundMessage[] }>("conversation.search", { text, limit: options.limit });
    return reply.messages;
  }
}

/** One thread's context and conversation, as `platform.thread(id)` gives them. */
export class ThreadScope {
  readonly context: Context;
  readonly conversation: Conversation;

  constructor(
    conn: Connection,
    /** The thread's id; undefined: the default thread. */
    readonly id: string | undefined,
  ) {
    this.context = new Context(conn, id);
    this.conversation = new Conversation(conn, id);
  }
}
