// Transactions (docs/protocol.md section 15): one Postgres transaction across queue, mailbox,
// storage and cache writes. `platform.transaction(fn)` commits when `fn` returns and rolls back
// when it throws; a `Transaction` hands out the services bound to it.

import { TxCache } from "./cache.js";
import type { Connection } from "./connection.js";
import { IkigaiError } from "./errors.js";
import { Mailbox } from "./mailbox.js";
import { Queue, type TxRef } from "./queue.js";
import { TxStorage } from "./storage.js";

export class Transaction implements TxRef {
  private ended = false;
  readonly cache: TxCache;
  readonly storage: TxStorage;

  private constructor(
    private readonly conn: Connection,
    /** The transaction's id (a UUID). */
    readonly id: string,
    /** It is rolled back if still open this long after it began. */
    readonly timeoutMs: number,
  ) {
    this.cache = new TxCache(conn, this);
    this.storage = new TxStorage(conn, this);
  }

  /** `tx.begin`: opens a transaction on this connection. */
  static async begin(conn: Connection): Promise<Transaction> {
    const reply = await conn.call<{ tx: string; timeout_ms: number }>("tx.begin", {});
    return new Transaction(conn, reply.tx, reply.timeout_ms);
  }

  /** Runs `work` in a new transaction: commits when it returns, rolls back when it throws. */
  static async run<T>(conn: Connection, work: (tx: Transaction) => Promise<T>): Promise<T> {
    const tx = await Transaction.begin(conn);
    let result: T;
    try {
      result = await work(tx);
    } catch (error) {
      await tx.rollback().catch(() => {});
      throw error;
    }
    await tx.commit();
    return result;
  }

  get open(): boolean {
    return !this.ended;
  }

  queue(name: string): Queue {
    return new Queue(this.conn, name, this);
  }

  mailbox(name: string): Mailbox {
    return new Mailbox(this.conn, name, this);
  }

  async commit(): Promise<void> {
    await this.end("tx.commit");
  }

  /** Undoes everything done inside; an already aborted transaction is `not_found`. */
  async rollback(): Promise<void> {
    await this.end("tx.rollback");
  }

  private async end(op: string): Promise<void> {
    if (this.ended) throw new IkigaiError("not_found", `transaction ${this.id} has ended`);
    this.ended = true;
    await this.conn.call(op, { tx: this.id });
  }
}
