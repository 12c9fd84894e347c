// LLM access (docs/protocol.md section 17): `prompt` through the daemon, which routes the model
// alias, runs platform tools and logs every call. Custom tools carry their handler: the daemon
// pushes their calls (`llm.tool_call`) and this client answers them (`llm.tool_result`). With
// `stream: true` the prompt is an async iterator of text deltas (`llm.delta` pushes).

import type { CallOptions, Connection } from "./connection.js";
import type { Payload } from "./values.js";

export interface ToolCall {
  id: string;
  name: string;
  arguments: { [key: string]: any };
}

export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content?: string;
  tool_calls?: ToolCall[];
  tool_call_id?: string;
  is_error?: boolean;
}

/** A tool the agent offers and runs itself: its result (or thrown error) goes back to the model. */
export interface CustomTool {
  name: string;
  description?: string;
  /** A JSON schema of the arguments. */
  parameters: object;
  handler: (args: { [key: string]: any }, call: ToolCall) => unknown;
}

export interface PromptRequest {
  /** A configured alias (the daemon may default it to the agent's first manifest model). */
  model?: string;
  messages: ChatMessage[];
  /** A thread id from `threads.create`, or `DEFAULT_THREAD`: its context goes first, and this exchange is appended. */
  thread?: string;
  tools?: { platform?: string[]; custom?: CustomTool[] };
  maxTokens?: number;
  temperature?: number;
  /** Stored with every logged call of this prompt (e.g. `{ task_id }`). */
  metadata?: { [key: string]: Payload };
  stream?: boolean;
  /** On a thread another prompt is running on: `wait` (the default) for it, or `reject` (`conflict`). */
  ifBusy?: "wait" | "reject";
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
}

export interface PromptResponse {
  /** The `llm_interactions` row of the last provider call. */
  id: string;
  content: string;
  /** Calls left open (only when `stop_reason` is `max_steps`). */
  tool_calls?: ToolCall[];
  usage: Usage;
  cost_usd: number;
  model: string;
  provider: string;
  provider_model: string;
  stop_reason: "end_turn" | "tool_use" | "max_tokens" | "stop_sequence" | "max_steps" | "other";
  steps: number;
  thread?: string;
}

export interface UsageRow {
  agent: string;
  model: string;
  calls: number;
  input_tokens: number;
  output_tokens: number;
  tokens: number;
  cost_usd: number;
  errors: number;
}

/** A streaming prompt: iterate it for the text deltas; `response` is the whole answer. */
export class PromptStream implements AsyncIterable<string> {
  private readonly deltas: string[] = [];
  private wake: (() => void) | undefined;
  private finished = false;
  readonly response: Promise<PromptResponse>;

  constructor(start: (onDelta: (delta: string) => void) => Promise<PromptResponse>) {
    this.response = start((delta) => {
      this.deltas.push(delta);
      this.wake?.();
    });
    const finish = () => {
      this.finished = true;
      this.wake?.();
    };
    this.response.then(finish, finish);
  }

  async *[Symbol.asyncIterator](): AsyncIterator<string> {
    for (;;) {
      const delta = this.deltas.shift();
      if (delta !== undefined) {
        yield delta;
        continue;
      }
      if (this.finished) {
        await this.response;
        return;
      }
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

export class Llm {
  constructor(private readonly conn: Connection) {}

  prompt(request: PromptRequest & { stream: true }): PromptStream;
  prompt(request: PromptRequest & { stream?: false }): Promise<PromptResponse>;
  prompt(request: PromptRequest): Promise<PromptResponse> | PromptStream;
  prompt(request: PromptRequest): Promise<PromptResponse> | PromptStream {
    if (!request.stream) return this.send(request, undefined);
    return new PromptStream((onDelta) => this.send(request, onDelta));
  }

  /** Answers a custom tool call (the client does this itself for tools with a handler). */
  async toolResult(callId: string, content: Payload, options: { isError?: boolean } = {}): Promise<void> {
    await this.conn.call("llm.tool_result", { call_id: callId, content: content ?? null, is_error: options.isError });
  }

  /** `admin`: usage per agent and alias over the last `sinceMs` (default 24 hours). */
  async usage(options: { sinceMs?: number } = {}): Promise<UsageRow[]> {
    const reply = await this.conn.call<{ usage: UsageRow[] }>("llm.usage", { since_ms: options.sinceMs });
    return reply.usage;
  }

  private send(request: PromptRequest, onDelta: ((delta: string) => void) | undefined): Promise<PromptResponse> {
    const custom = request.tools?.custom ?? [];
    const handlers = new Map(custom.map((tool) => [tool.name, tool.handler]));
    const options: CallOptions = {
      onPush: (push, data: any) => {
        if (push === "llm.delta") onDelta?.(data.delta);
        else if (push === "llm.tool_call") void this.answer(handlers.get(data.tool_call.name), data.tool_call);
      },
    };
    return this.conn.call("llm.prompt", promptArgs(request, custom), options);
  }

  private async answer(handler: CustomTool["handler"] | undefined, call: ToolCall): Promise<void> {
    let content: unknown;
    let isError = false;
    try {
      if (!handler) throw new Error(`no handler for tool ${call.name}`);
      content = await handler(call.arguments ?? {}, call);
    } catch (error) {
      content = error instanceof Error ? error.message : String(error);
      isError = true;
    }
    // The prompt may have ended meanwhile (timeout): its failure is the prompt's to report.
    await this.toolResult(call.id, content, { isError }).catch(() => {});
  }
}

function promptArgs(request: PromptRequest, custom: CustomTool[]): object {
  const tools = request.tools && {
    platform: request.tools.platform,
    custom: request.tools.custom && custom.map(({ name, description, parameters }) => ({ name, description, parameters })),
  };
  return {
    model: request.model,
    messages: request.messages,
    thread: request.thread,
    tools,
    max_tokens: request.maxTokens,
    temperature: request.temperature,
    metadata: request.metadata,
    stream: request.stream,
    if_busy: request.ifBusy,
  };
}
