// Storage (docs/protocol.md section 11): versioned JSON documents in the caller's namespace, with
// optimistic concurrency (`ifVersion`); `put` and `delete` may run inside a transaction.

import type { Connection } from "./connection.js";
import type { TxRef } from "./queue.js";
import type { Payload, Timestamp } from "./values.js";

export interface StoredDocument<T = any> {
  key: string;
  value: T;
  version: number;
  updated_at: Timestamp;
}

export interface VersionOptions {
  /** Write only if the stored version is this (`0`: only if absent); else `conflict`. */
  ifVersion?: number;
}

export interface DocumentListOptions {
  prefix?: string;
  limit?: number;
  /** Start after this key (the previous page's `next`). */
  after?: string;
}

/** The storage writes a transaction can hold. */
export class TxStorage {
  constructor(
    protected readonly conn: Connection,
    private readonly tx?: TxRef,
  ) {}

  /** Writes `value` at `key`; resolves with its new version. */
  async put(key: string, value: Payload, options: VersionOptions = {}): Promise<number> {
    const args = { key, value: value ?? null, if_version: options.ifVersion, tx: this.tx?.id };
    const reply = await this.conn.call<{ version: number }>("storage.put", args);
    return reply.version;
  }

  /** False when there was no such document. */
  async delete(key: string, options: VersionOptions = {}): Promise<boolean> {
    const args = { key, if_version: options.ifVersion, tx: this.tx?.id };
    const reply = await this.conn.call<{ deleted: boolean }>("storage.delete", args);
    return reply.deleted;
  }
}

export class Storage extends TxStorage {
  constructor(conn: Connection) {
    super(conn);
  }

  /** The document, or `null`. */
  async get<T = any>(key: string): Promise<StoredDocument<T> | null> {
    const reply = await this.conn.call<{ document: StoredDocument<T> | null }>("storage.get", { key });
    return reply.document;
  }

  list<T = any>(options: DocumentListOptions = {}): Promise<{ documents: StoredDocument<T>[]; next: string | null }> {
    return this.conn.call("storage.list", options);
  }
}
