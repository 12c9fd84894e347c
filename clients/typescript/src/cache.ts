// The cache (docs/protocol.md section 9): JSON values in the daemon's memory, per agent unless
// `shared`. Inside a transaction only `set` exists (applied at commit).

import type { Connection } from "./connection.js";
import type { TxRef } from "./queue.js";
import type { Payload } from "./values.js";

export interface CacheOptions {
  /** The platform-wide namespace instead of the caller's. */
  shared?: boolean;
}

export interface SetOptions extends CacheOptions {
  ttlMs?: number;
}

/** The cache writes a transaction can hold. */
export class TxCache {
  constructor(
    protected readonly conn: Connection,
    private readonly tx?: TxRef,
  ) {}

  /** Sets `key` (with a transaction: when it commits). */
  async set(key: string, value: Payload, options: SetOptions = {}): Promise<void> {
    await this.conn.call("cache.set", {
      key,
      value: value ?? null,
      ttl_ms: options.ttlMs,
      shared: options.shared,
      tx: this.tx?.id,
    });
  }
}

export class Cache extends TxCache {
  constructor(conn: Connection) {
    super(conn);
  }

  /** The value, or `undefined` when the key is absent or expired. */
  async get<T = any>(key: string, options: CacheOptions = {}): Promise<T | undefined> {
    const reply = await this.conn.call<{ found: boolean; value: T }>("cache.get", { key, shared: options.shared });
    return reply.found ? reply.value : undefined;
  }

  /** The keys found, with their values. */
  async getMany<T = any>(keys: string[], options: CacheOptions = {}): Promise<Record<string, T>> {
    const reply = await this.conn.call<{ values: Record<string, T> }>("cache.get_many", {
      keys,
      shared: options.shared,
    });
    return reply.values;
  }

  /** False when the key was absent or expired. */
  async delete(key: string, options: CacheOptions = {}): Promise<boolean> {
    const reply = await this.conn.call<{ deleted: boolean }>("cache.delete", { key, shared: options.shared });
    return reply.deleted;
  }

  /** Adds `by` (default 1) to an integer value (absent counts as 0); resolves with the sum. */
  async incr(key: string, by = 1, options: CacheOptions = {}): Promise<number> {
    const reply = await this.conn.call<{ value: number }>("cache.incr", { key, by, shared: options.shared });
    return reply.value;
  }
}
