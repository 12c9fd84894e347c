// Pub/sub (docs/protocol.md section 10): `publish` to a topic; `subscribe` to a pattern gives an
// async iterator of messages, subscribed again (under a new id) after a reconnect. Delivery is at
// most once: what was published while disconnected, or dropped as overflow, is counted in `lost`
// when the daemon says so.

import type { Connection } from "./connection.js";
import { IkigaiError } from "./errors.js";
import type { Payload, Timestamp } from "./values.js";

export interface PubsubMessage<T = any> {
  topic: string;
  message: T;
  published_at: Timestamp;
}

export class PubSub {
  constructor(private readonly conn: Connection) {}

  /** Publishes; resolves with the number of this daemon's subscriptions it was handed to. */
  async publish(topic: string, message: Payload): Promise<number> {
    const reply = await this.conn.call<{ delivered: number }>("pubsub.publish", {
      topic,
      message: message ?? null,
    });
    return reply.delivered;
  }

  /** Subscribes to `pattern` (`*` one segment, final `>` one or more); resolves once subscribed. */
  async subscribe<T = any>(pattern: string): Promise<Subscription<T>> {
    const subscription = new Subscription<T>(this.conn, pattern);
    await subscription.start();
    return subscription;
  }
}

type Waiter<T> = {
  resolve: (result: IteratorResult<PubsubMessage<T>>) => void;
  reject: (error: Error) => void;
};

export class Subscription<T = any> implements AsyncIterableIterator<PubsubMessage<T>> {
  /** The current subscription id (a new one after each reconnect). */
  id = "";
  /** Messages the daemon reported dropped (`overflow`) for this subscription. */
  lost = 0;
  private readonly buffered: PubsubMessage<T>[] = [];
  private waiter: Waiter<T> | undefined;
  private ended = false;
  private failure: Error | undefined;
  private readonly detach: Array<() => void> = [];

  constructor(
    private readonly conn: Connection,
    readonly pattern: string,
  ) {}

  async start(): Promise<void> {
    await this.subscribe();
    this.detach.push(
      this.conn.onReconnect(() => void this.subscribe().catch((error) => this.end(error))),
      this.conn.onClose((error) => this.end(error.code === "closed" ? undefined : error)),
    );
  }

  next(): Promise<IteratorResult<PubsubMessage<T>>> {
    const message = this.buffered.shift();
    if (message) return Promise.resolve({ value: message, done: false });
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
  }

  /** Ends the iteration (a `break` out of `for await` does this). */
  async return(): Promise<IteratorResult<PubsubMessage<T>>> {
    await this.unsubscribe();
    return { value: undefined, done: true };
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Unsubscribes; the iteration ends after the messages already received. */
  async unsubscribe(): Promise<boolean> {
    if (this.ended) return false;
    const id = this.id;
    this.end(undefined);
    if (this.conn.isClosed) return false;
    const reply = await this.conn.call<{ unsubscribed: boolean }>("pubsub.unsubscribe", { subscription: id });
    return reply.unsubscribed;
  }

  private async subscribe(): Promise<void> {
    const reply = await this.conn.call<{ subscription: string }>("pubsub.subscribe", { topic: this.pattern });
    if (this.ended) return;
    this.conn.disownPushes(this.id);
    this.id = reply.subscription;
    this.conn.ownPushes(this.id, (_push, data) => this.receive(data as Record<string, unknown>));
  }

  private receive(data: Record<string, unknown>): void {
    if (typeof data.overflow === "number") {
      this.lost += data.overflow;
      return;
    }
    const message = data as unknown as PubsubMessage<T>;
    if (this.waiter) {
      const { resolve } = this.waiter;
      this.waiter = undefined;
      resolve({ value: message, done: false });
    } else {
      this.buffered.push(message);
    }
  }

  private end(error: Error | undefined): void {
    if (this.ended) return;
    this.ended = true;
    this.failure = error instanceof IkigaiError || error === undefined ? error : new IkigaiError("internal", String(error));
    this.conn.disownPushes(this.id);
    for (const remove of this.detach) remove();
    const waiter = this.waiter;
    this.waiter = undefined;
    if (!waiter) return;
    if (this.failure) waiter.reject(this.failure);
    else waiter.resolve({ value: undefined, done: true });
  }
}
