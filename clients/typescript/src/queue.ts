// Task queues (docs/protocol.md sections 13 and 14): `platform.queue(name)` pushes, claims, lists
// and reads stats; a claimed `Task` settles itself (`complete`, `fail`, `extend`, `release`),
// inside the transaction it was claimed in unless told otherwise.

import type { Connection } from "./connection.js";
import { resumeWait, type Payload, type Timestamp } from "./values.js";

/** A task as the daemon describes it. */
export interface TaskRecord<P = any> {
  id: string;
  seq: number;
  queue: string;
  payload: P;
  priority: number;
  scheduled_for: Timestamp;
  created_at: Timestamp;
  attempts: number;
  max_attempts: number;
  claimed_by: string | null;
  lease_until: Timestamp | null;
  completed_at: Timestamp | null;
  failed_at: Timestamp | null;
  error: string | null;
  result: any;
  dedup_key: string | null;
}

export interface PushOptions {
  priority?: number;
  /** RFC 3339; not together with `delayMs`. */
  scheduledFor?: string;
  delayMs?: number;
  maxAttempts?: number;
  dedupKey?: string;
}

export interface PushResult {
  id: string;
  /** False when an open task with this `dedupKey` already existed (its id is returned). */
  created: boolean;
}

export interface ClaimOptions {
  /** Wait this long for a task when none is claimable (0: return at once). */
  waitMs?: number;
  leaseMs?: number;
}

export interface QueueStats {
  queue: string;
  pending: number;
  scheduled: number;
  claimed: number;
  completed: number;
  dead: number;
  ready_in_memory: number;
  waiting: number;
}

export type TaskState = "pending" | "scheduled" | "claimed" | "completed" | "dead";

export interface TaskListOptions {
  state?: TaskState;
  after?: number;
  limit?: number;
}

/** Something that gives the id of an open transaction (a `Transaction`). */
export interface TxRef {
  readonly id: string;
  /** False once committed or rolled back. */
  readonly open: boolean;
}

/** A settlement's transaction: by default the claim's while it is open; `null` for none. */
export interface SettleOptions {
  tx?: TxRef | null;
}

/** A queue, bound to a transaction when it came from `tx.queue(name)`. */
export class Queue {
  constructor(
    private readonly conn: Connection,
    readonly name: string,
    private readonly tx?: TxRef,
  ) {}

  push(payload: Payload, options: PushOptions = {}): Promise<PushResult> {
    return this.conn.call("queue.push", { queue: this.name, ...taskArgs(payload, options), tx: this.tx?.id });
  }

  async pushMany(tasks: Array<{ payload: Payload } & PushOptions>): Promise<PushResult[]> {
    const args = tasks.map(({ payload, ...options }) => taskArgs(payload, options));
    const reply = await this.conn.call<{ tasks: PushResult[] }>("queue.push_many", {
      queue: this.name,
      tasks: args,
      tx: this.tx?.id,
    });
    return reply.tasks;
  }

  /** Claims one task, or `null` when none was claimable (within `waitMs`). */
  async claim<P = any>(options: ClaimOptions = {}): Promise<Task<P> | null> {
    const [task] = await this.claimMany<P>({ ...options, max: 1 });
    return task ?? null;
  }

  /** Claims up to `max` tasks (default 1). A waiting claim resumes after a reconnect. */
  async claimMany<P = any>(options: ClaimOptions & { max?: number } = {}): Promise<Task<P>[]> {
    const args = {
      queue: this.name,
      max: options.max,
      wait_ms: options.waitMs,
      lease_ms: options.leaseMs,
      tx: this.tx?.id,
    };
    const resume = options.waitMs ? resumeWait(args) : undefined;
    const reply = await this.conn.call<{ tasks: TaskRecord<P>[] }>("queue.claim", args, { resume });
    return reply.tasks.map((record) => new Task<P>(this.conn, record, this.tx));
  }

  stats(): Promise<QueueStats> {
    return this.conn.call("queue.stats", { queue: this.name });
  }

  list(options: TaskListOptions = {}): Promise<{ tasks: TaskRecord[]; next: number | null }> {
    return this.conn.call("queue.list", { queue: this.name, ...options });
  }
}

/** A claimed task: its record, and the settlements of its claim. */
export class Task<P = any> {
  constructor(
    private readonly conn: Connection,
    /** The task as it was claimed. */
    readonly record: TaskRecord<P>,
    private readonly tx?: TxRef,
  ) {}

  get id(): string {
    return this.record.id;
  }

  get payload(): P {
    return this.record.payload;
  }

  get attempts(): number {
    return this.record.attempts;
  }

  complete(result?: Payload, options?: SettleOptions): Promise<TaskRecord> {
    return this.settle("queue.complete", { result }, options);
  }

  fail(error: string, options: SettleOptions & { retryInMs?: number } = {}): Promise<TaskRecord> {
    return this.settle("queue.fail", { error, retry_in_ms: options.retryInMs }, options);
  }

  async extend(leaseMs: number, options?: SettleOptions): Promise<Timestamp> {
    const reply = await this.settle<{ lease_until: Timestamp }>("queue.extend", { lease_ms: leaseMs }, options);
    return reply.lease_until;
  }

  release(options?: SettleOptions): Promise<TaskRecord> {
    return this.settle("queue.release", {}, options);
  }

  private settle<T = TaskRecord>(op: string, args: object, options: SettleOptions = {}): Promise<T> {
    const tx = options.tx === undefined ? (this.tx?.open ? this.tx : undefined) : options.tx;
    return this.conn.call(op, { id: this.id, ...args, tx: tx?.id });
  }
}

function taskArgs(payload: Payload, o: PushOptions): object {
  return {
    payload: payload ?? null,
    priority: o.priority,
    scheduled_for: o.scheduledFor,
    delay_ms: o.delayMs,
    max_attempts: o.maxAttempts,
    dedup_key: o.dedupKey,
  };
}
