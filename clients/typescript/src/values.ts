// Value types shared by every service (docs/protocol.md section 6): JSON-compatible payloads,
// and the small helpers that turn camelCase options into the protocol's args.

/** A JSON value (payloads read back are typed `any` by default, or by the caller's type argument). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Anything the client may send as a payload; checked by the daemon. */
export type Payload = unknown;

/** A timestamp string: RFC 3339 in UTC with 6 fractional digits and `Z`. */
export type Timestamp = string;

/** How a waiting call (receive, claim) is issued again after a reconnect: with the wait it has left. */
export function resumeWait<A extends { wait_ms?: number }>(args: A): () => A {
  const deadline = Date.now() + (args.wait_ms ?? 0);
  return () => ({ ...args, wait_ms: Math.max(0, deadline - Date.now()) });
}
