// One pipelined connection to the daemon: requests are written in bursts (one `write` per turn of
// the event loop) and matched to their replies by id; pushes go to their owners (a subscription
// by its id, an `llm.prompt`'s deltas and tool calls by the prompt's request id). When the socket
// is lost the connection says `hello` again on a new one, with backoff: calls in flight fail with
// a retriable `unavailable`, calls never written are sent on the new socket, calls that wait
// (receive, claim) are re-issued there, and reconnect listeners (subscriptions) run.

import net from "node:net";
import { IkigaiError } from "./errors.js";
import { FrameReader, FrameWriter } from "./frame.js";

/** Who connects, and where. */
export interface Identity {
  socket: string;
  agent: string;
  token: string;
}

/** Backoff between reconnect attempts (doubling, with ±25% jitter); `false`: never reconnect. */
export type ReconnectOptions = false | { initialDelayMs?: number; maxDelayMs?: number };

/** The daemon's answer to `hello`. */
export interface HelloReply {
  protocol: number;
  daemon: string;
  version: string;
  session: string;
}

/** Receives pushes addressed to one owner. */
export type PushHandler = (push: string, data: unknown) => void;

export interface CallOptions {
  /** When the connection is lost while waiting: the args to issue the call with again. */
  resume?: () => object;
  /** Pushes about this request (`llm.delta`, `llm.tool_call`). */
  onPush?: PushHandler;
}

interface Call {
  id: number;
  op: string;
  args: object;
  resolve: (value: any) => void;
  reject: (error: Error) => void;
  options: CallOptions | undefined;
}

const PROTOCOL = 1;

export class Connection {
  private socket: net.Socket | undefined;
  private readonly writer = new FrameWriter();
  private readonly reader = new FrameReader();
  private readonly inFlight = new Map<number, Call>();
  /** Calls made while no authenticated socket is there, in order. */
  private backlog: Call[] = [];
  private readonly pushOwners = new Map<string, PushHandler>();
  private readonly reconnectListeners = new Set<() => void>();
  private readonly closeListeners = new Set<(error: IkigaiError) => void>();
  private nextId = 1;
  /** The highest id whose frame was handed to the socket. */
  private written = 0;
  private flushScheduled = false;
  private ready = false;
  private closed = false;
  private helloReply: HelloReply | undefined;

  private constructor(
    private readonly identity: Identity,
    private readonly reconnectOptions: ReconnectOptions,
  ) {}

  /** Connects and says `hello`; fails at once if either fails. */
  static async open(identity: Identity, reconnect: ReconnectOptions): Promise<Connection> {
    const connection = new Connection(identity, reconnect);
    await connection.establish();
    return connection;
  }

  get hello(): HelloReply {
    return this.helloReply!;
  }

  get agent(): string {
    return this.identity.agent;
  }

  /** Sends `op` and resolves with the reply's `ok` value (rejects with an `IkigaiError`). */
  call<T>(op: string, args: object = {}, options?: CallOptions): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    return new Promise<T>((resolve, reject) => {
      const call: Call = { id: 0, op, args, resolve, reject, options };
      if (this.ready) this.send(call);
      else this.backlog.push(call);
    });
  }

  /** Routes pushes named `push` (a subscription id) to `handler`. */
  ownPushes(push: string, handler: PushHandler): void {
    this.pushOwners.set(push, handler);
  }

  disownPushes(push: string): void {
    this.pushOwners.delete(push);
  }

  /** Runs `listener` after each reconnect; returns its remover. */
  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  /** Runs `listener` once the connection is closed for good; returns its remover. */
  onClose(listener: (error: IkigaiError) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Closes the connection; calls not answered yet fail with `closed`. */
  close(): void {
    if (this.closed) return;
    this.failForever(closedError());
    this.socket?.destroy();
    this.socket = undefined;
  }

  private send(call: Call): void {
    call.id = this.nextId++;
    this.inFlight.set(call.id, call);
    this.writer.append(call.id, call.op, call.args);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (!this.socket || this.writer.pending === 0) return;
    this.written = this.nextId - 1;
    this.socket.write(this.writer.take());
  };

  /** Opens a socket and authenticates it, then sends what waited. */
  private async establish(): Promise<void> {
    const socket = await openSocket(this.identity.socket);
    if (this.closed) {
      socket.destroy();
      throw closedError();
    }
    this.attach(socket);
    const { agent, token } = this.identity;
    try {
      this.helloReply = await new Promise<HelloReply>((resolve, reject) =>
        this.send({ id: 0, op: "hello", args: { protocol: PROTOCOL, agent, token }, resolve, reject, options: undefined }),
      );
    } catch (error) {
      this.socket = undefined;
      socket.destroy();
      throw error;
    }
    this.ready = true;
    const waiting = this.backlog;
    this.backlog = [];
    for (const call of waiting) this.send(call);
  }

  private attach(socket: net.Socket): void {
    this.socket = socket;
    this.written = this.nextId - 1;
    socket.on("data", (chunk: Buffer) => {
      try {
        this.reader.feed(chunk, this.dispatch);
      } catch {
        socket.destroy();
      }
    });
    socket.on("error", () => {});
    socket.on("close", () => this.lost(socket));
  }

  private readonly dispatch = (frame: unknown): void => {
    const body = frame as Record<string, any>;
    if (typeof body.push === "string") return this.dispatchPush(body.push, body.data);
    const call = this.inFlight.get(body.id);
    if (!call) {
      if (body.err) this.failInFlight(IkigaiError.fromBody(body.err));
      return;
    }
    this.inFlight.delete(body.id);
    if (body.err !== undefined && body.err !== null) call.reject(IkigaiError.fromBody(body.err));
    else call.resolve(body.ok);
  };

  private dispatchPush(push: string, data: any): void {
    const owner = this.pushOwners.get(push);
    if (owner) return owner(push, data);
    const request = typeof data?.request === "number" ? this.inFlight.get(data.request) : undefined;
    request?.options?.onPush?.(push, data);
  }

  /** The socket closed: settle its calls, then reconnect (or stay closed). */
  private lost(socket: net.Socket): void {
    if (socket !== this.socket) return;
    this.socket = undefined;
    const wasReady = this.ready;
    this.ready = false;
    this.reader.reset();
    this.writer.clear();
    const again: Call[] = [];
    for (const call of this.inFlight.values()) {
      if (call.op === "hello") call.reject(IkigaiError.connectionLost(call.op));
      else if (call.id > this.written) again.push(call);
      else if (call.options?.resume) again.push({ ...call, args: call.options.resume() });
      else call.reject(IkigaiError.connectionLost(call.op));
    }
    this.inFlight.clear();
    this.backlog = [...again.sort((a, b) => a.id - b.id), ...this.backlog];
    // Lost while saying hello: the establishing caller retries (or gives up).
    if (this.closed || !wasReady) return;
    if (this.reconnectOptions === false) return this.close();
    void this.reconnect(this.reconnectOptions);
  }

  private async reconnect(options: { initialDelayMs?: number; maxDelayMs?: number }): Promise<void> {
    let delay = options.initialDelayMs ?? 50;
    const max = options.maxDelayMs ?? 2000;
    while (!this.closed) {
      await sleep(delay * (0.75 + Math.random() / 2));
      try {
        await this.establish();
        for (const listener of this.reconnectListeners) listener();
        return;
      } catch (error) {
        if (error instanceof IkigaiError && !error.retriable && error.code !== "unavailable") {
          if (error.code !== "closed") this.failForever(error);
          return;
        }
        delay = Math.min(delay * 2, max);
      }
    }
  }

  /** A reconnect was refused for good (a revoked token): every call fails with its error. */
  private failForever(error: IkigaiError): void {
    this.closed = true;
    this.failAll(error);
    for (const listener of this.closeListeners) listener(error);
  }

  private failAll(error: Error): void {
    this.failInFlight(error);
    const waiting = this.backlog;
    this.backlog = [];
    for (const call of waiting) call.reject(error);
  }

  private failInFlight(error: Error): void {
    const calls = [...this.inFlight.values()];
    this.inFlight.clear();
    for (const call of calls) call.reject(error);
  }
}

function closedError(): IkigaiError {
  return new IkigaiError("closed", "the platform connection was closed");
}

function openSocket(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    const failed = (error: Error) =>
      reject(new IkigaiError("unavailable", `cannot connect to ${path}: ${error.message}`, true));
    socket.once("error", failed);
    socket.once("connect", () => {
      socket.off("error", failed);
      resolve(socket);
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
