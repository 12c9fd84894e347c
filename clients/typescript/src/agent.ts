// `ikigai/agent`: an agent's life around a `Platform`. It sends heartbeats, runs a loop over a
// queue (claim, handle, complete or fail) or over its own mailbox (receive, handle, ack), and on
// SIGTERM or SIGINT stops gracefully: no new work is taken, the work in hand gets `stopGraceMs`
// to finish (its handler sees `signal` aborted), what is left is released, then the connection
// closes and the loop's promise resolves.

import { IkigaiError, Platform, type ConnectOptions, type Message, type Payload, type Task } from "./platform.js";

export { IkigaiError, Platform } from "./platform.js";
export type * from "./platform.js";

export interface AgentOptions {
  /** An open platform to use; else one is connected with `connect`. */
  platform?: Platform;
  connect?: ConnectOptions;
  /** Period of `agents.heartbeat` (default 10 s; 0: none). */
  heartbeatMs?: number;
  /** How long work in hand may take to finish once stopping (default 8 s, under the daemon's 10 s). */
  stopGraceMs?: number;
  /** Signals that stop the agent (default SIGTERM and SIGINT). */
  signals?: NodeJS.Signals[];
}

/** What a handler gets beside its task or message. */
export interface WorkContext {
  platform: Platform;
  /** Aborted when the agent begins to stop. */
  signal: AbortSignal;
}

export interface QueueLoopOptions {
  /** Tasks claimed at once, handled one after another (default 1). */
  max?: number;
  /** How long one claim waits for work (default 1 s; bounds how fast a stop is noticed). */
  waitMs?: number;
  leaseMs?: number;
}

export interface MailboxLoopOptions {
  max?: number;
  waitMs?: number;
  visibilityMs?: number;
}

export class Agent {
  private readonly stopping = new AbortController();
  private readonly heartbeat: NodeJS.Timeout | undefined;
  private readonly removeSignals: () => void;
  private readonly loops: Promise<void>[] = [];

  private constructor(
    readonly platform: Platform,
    private readonly options: AgentOptions,
  ) {
    this.heartbeat = this.startHeartbeat(options.heartbeatMs ?? 10_000);
    const signals = options.signals ?? ["SIGTERM", "SIGINT"];
    const stop = () => void this.stop();
    for (const signal of signals) process.on(signal, stop);
    this.removeSignals = () => signals.forEach((signal) => process.off(signal, stop));
  }

  /** Connects (unless given a platform) and starts heartbeats and the stop signals. */
  static async start(options: AgentOptions = {}): Promise<Agent> {
    const platform = options.platform ?? (await Platform.connect(options.connect));
    return new Agent(platform, options);
  }

  /** Aborted once the agent is stopping. */
  get signal(): AbortSignal {
    return this.stopping.signal;
  }

  /**
   * Claims tasks of `queue` until stopped: each is completed with what `handler` returns, or
   * failed with the message of what it throws. Resolves once stopped.
   */
  runQueue(queue: string, handler: (task: Task, context: WorkContext) => Promise<Payload> | Payload, options: QueueLoopOptions = {}): Promise<void> {
    return this.loop(async () => {
      const tasks = await this.platform.queue(queue).claimMany({ max: options.max, waitMs: options.waitMs ?? 1000, leaseMs: options.leaseMs });
      for (const task of tasks) {
        if (this.signal.aborted) await task.release();
        else await this.settle(task, handler);
      }
    });
  }

  /**
   * Receives the agent's own mailbox until stopped: each message is acked after `handler`
   * returns; one whose handler throws is left to be delivered again. Resolves once stopped.
   */
  runMailbox(handler: (message: Message, context: WorkContext) => Promise<void> | void, options: MailboxLoopOptions = {}): Promise<void> {
    const mailbox = this.platform.mailbox(this.platform.agent);
    return this.loop(async () => {
      const messages = await mailbox.receive({ max: options.max, waitMs: options.waitMs ?? 1000, visibilityMs: options.visibilityMs });
      for (const message of messages) {
        // Unhandled messages are redelivered once this connection closes.
        if (this.signal.aborted) return;
        const handled = await this.withinGrace(async () => handler(message, this.context()));
        if (handled.done && !handled.error) await mailbox.ack([message]);
        else if (handled.error) report(`message ${message.id}`, handled.error);
      }
    });
  }

  /** Stops taking work, lets the work in hand finish (or releases it), then closes. */
  async stop(): Promise<void> {
    if (!this.signal.aborted) {
      this.stopping.abort();
      clearInterval(this.heartbeat);
      this.removeSignals();
    }
    await Promise.allSettled(this.loops);
    this.platform.close();
  }

  private loop(step: () => Promise<void>): Promise<void> {
    const running = (async () => {
      while (!this.signal.aborted) {
        try {
          await step();
        } catch (error) {
          if (this.signal.aborted || this.platform.isClosed) break;
          report("the run loop", error);
          if (!(error instanceof IkigaiError && error.retriable)) await pause(1000);
        }
      }
    })();
    this.loops.push(running);
    return running.then(() => this.stop());
  }

  private async settle(task: Task, handler: (task: Task, context: WorkContext) => Promise<Payload> | Payload): Promise<void> {
    const handled = await this.withinGrace(async () => handler(task, this.context()));
    if (!handled.done) await task.release();
    else if (handled.error) await task.fail(errorText(handled.error));
    else await task.complete(handled.value);
  }

  /** Runs `work`; once stopping, waits for it at most `stopGraceMs` (`done: false` past that). */
  private async withinGrace<T>(work: () => Promise<T>): Promise<{ done: boolean; value?: T; error?: unknown }> {
    const outcome = work().then(
      (value) => ({ done: true, value }),
      (error: unknown) => ({ done: true, error: error ?? new Error("handler failed") }),
    );
    const grace = new Promise<{ done: false }>((resolve) => {
      const expire = () => setTimeout(() => resolve({ done: false }), this.options.stopGraceMs ?? 8000).unref();
      if (this.signal.aborted) expire();
      else this.signal.addEventListener("abort", expire, { once: true });
    });
    return Promise.race([outcome, grace]);
  }

  private context(): WorkContext {
    return { platform: this.platform, signal: this.signal };
  }

  private startHeartbeat(everyMs: number): NodeJS.Timeout | undefined {
    if (everyMs <= 0) return undefined;
    const beat = () =>
      this.platform.agents.heartbeat().catch((error: unknown) => {
        // An agent that is not deployed has no heartbeat to keep.
        if (error instanceof IkigaiError && error.code === "not_found") clearInterval(timer);
      });
    const timer = setInterval(beat, everyMs);
    timer.unref();
    void beat();
    return timer;
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The agent's stderr becomes a `log` telemetry event of the agent (section 16). */
function report(what: string, error: unknown): void {
  console.error(`ikigai/agent: ${what} failed: ${errorText(error)}`);
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
