// Conversation threads (docs/protocol.md section 17): a persisted history that prompts given its
// id continue.

import type { Connection } from "./connection.js";

export class Threads {
  constructor(private readonly conn: Connection) {}

  /** Creates a thread; `context` is sent as a system message before its history. */
  create(options: { context?: string } = {}): Promise<{ id: string }> {
    return this.conn.call("threads.create", { context: options.context });
  }
}
