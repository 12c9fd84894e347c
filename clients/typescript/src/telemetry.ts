// Telemetry (docs/protocol.md section 12): emit events of the caller, query them back.

import type { Connection } from "./connection.js";
import type { Payload, Timestamp } from "./values.js";

export interface TelemetryEvent {
  id: string;
  agent: string;
  event_type: string;
  payload: any;
  created_at: Timestamp;
}

export interface QueryOptions {
  /** `admin`: any agent (all when absent); others only themselves. */
  agent?: string;
  eventType?: string;
  /** RFC 3339, inclusive. */
  since?: string;
  /** RFC 3339, exclusive. */
  until?: string;
  /** Full-text search over the payload's strings. */
  text?: string;
  limit?: number;
}

export class Telemetry {
  constructor(private readonly conn: Connection) {}

  /** Resolves once the daemon accepted the event (it is written shortly after). */
  async emit(eventType: string, payload: Payload): Promise<void> {
    await this.conn.call("telemetry.emit", { event_type: eventType, payload: payload ?? null });
  }

  /** Newest first. */
  async query(options: QueryOptions = {}): Promise<TelemetryEvent[]> {
    const { eventType, ...rest } = options;
    const reply = await this.conn.call<{ events: TelemetryEvent[] }>("telemetry.query", {
      ...rest,
      event_type: eventType,
    });
    return reply.events;
  }
}
