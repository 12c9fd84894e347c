// Mailboxes (docs/protocol.md sections 7 and 8): `platform.mailbox(name)` sends to any mailbox;
// the owner receives (a waiting receive resumes after a reconnect), acks, peeks and reads stats.

import type { Connection } from "./connection.js";
import type { TxRef } from "./queue.js";
import { resumeWait, type Payload, type Timestamp } from "./values.js";

export interface Message<P = any> {
  id: string;
  mailbox: string;
  sender: string;
  payload: P;
  created_at: Timestamp;
  /** Deliveries so far, this one included. */
  attempts: number;
}

export interface ReceiveOptions {
  /** At most this many messages (default 1, at most 1000). */
  max?: number;
  /** Wait this long when none is ready (0: return at once). */
  waitMs?: number;
  /** Hidden from other receives this long unless acked. */
  visibilityMs?: number;
}

export interface MailboxStats {
  mailbox: string;
  unread: number;
  read: number;
  oldest_unread_at: Timestamp | null;
  ready: number;
  in_flight: number;
  waiting: number;
}

/** A mailbox, bound to a transaction when it came from `tx.mailbox(name)`. */
export class Mailbox {
  constructor(
    private readonly conn: Connection,
    readonly name: string,
    private readonly tx?: TxRef,
  ) {}

  /** Sends `payload`; resolves with the message id once it is committed. */
  async send(payload: Payload): Promise<string> {
    const args = { mailbox: this.name, payload: payload ?? null, tx: this.tx?.id };
    const reply = await this.conn.call<{ id: string }>("mailbox.send", args);
    return reply.id;
  }

  async receive<P = any>(options: ReceiveOptions = {}): Promise<Message<P>[]> {
    const args = {
      mailbox: this.name,
      max: options.max,
      wait_ms: options.waitMs,
      visibility_ms: options.visibilityMs,
    };
    const resume = options.waitMs ? resumeWait(args) : undefined;
    const reply = await this.conn.call<{ messages: Message<P>[] }>("mailbox.receive", args, { resume });
    return reply.messages;
  }

  /** Marks messages read; resolves with how many changed from unread to read. */
  async ack(messages: Iterable<string | Pick<Message, "id">>): Promise<number> {
    const ids = Array.from(messages, (m) => (typeof m === "string" ? m : m.id));
    const reply = await this.conn.call<{ acked: number }>("mailbox.ack", {
      mailbox: this.name,
      ids,
      tx: this.tx?.id,
    });
    return reply.acked;
  }

  async peek(options: { limit?: number } = {}): Promise<Message[]> {
    const reply = await this.conn.call<{ messages: Message[] }>("mailbox.peek", {
      mailbox: this.name,
      limit: options.limit,
    });
    return reply.messages;
  }

  /** This mailbox's row, or `null` when it never stored a message. */
  async stats(): Promise<MailboxStats | null> {
    const rows = await mailboxStats(this.conn, this.name);
    return rows[0] ?? null;
  }
}

/** `mailbox.stats`: one mailbox's row, or (no name) the caller's own, every one for `admin`. */
export async function mailboxStats(conn: Connection, mailbox?: string): Promise<MailboxStats[]> {
  const reply = await conn.call<{ mailboxes: MailboxStats[] }>("mailbox.stats", { mailbox });
  return reply.mailboxes;
}
