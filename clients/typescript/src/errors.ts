// The one error class of the SDK: the daemon's error body (code, message, retriable) as the
// protocol defines it (docs/protocol.md section 5), plus the client's own outcomes
// (`unavailable` when the connection is lost, `closed` after `close()`).

/** The protocol's stable codes, and the client's own (`closed`, `invalid_options`). */
export type ErrorCode =
  | "bad_frame"
  | "bad_request"
  | "unknown_op"
  | "unauthenticated"
  | "permission_denied"
  | "not_found"
  | "conflict"
  | "quota_exceeded"
  | "unavailable"
  | "timeout"
  | "internal"
  | "closed"
  | "invalid_options";

/** An error answered by the daemon or raised by the client. Branch on `code`, not `message`. */
export class IkigaiError extends Error {
  override readonly name = "IkigaiError";
  /** The same request may succeed later (which does not mean the failed one had no effect). */
  readonly retriable: boolean;
  /** When the daemon knows when a retry can succeed (`quota_exceeded`). */
  readonly retryAfterMs: number | undefined;

  constructor(
    readonly code: ErrorCode,
    message: string,
    retriable = false,
    retryAfterMs?: number,
  ) {
    super(message);
    this.retriable = retriable;
    this.retryAfterMs = retryAfterMs;
  }

  /** The error of a failure reply's `err` body. */
  static fromBody(body: unknown): IkigaiError {
    const err = (body ?? {}) as Record<string, unknown>;
    const code = typeof err.code === "string" ? (err.code as ErrorCode) : "internal";
    const message = typeof err.message === "string" ? err.message : "malformed error reply";
    const retryAfter = typeof err.retry_after_ms === "number" ? err.retry_after_ms : undefined;
    return new IkigaiError(code, message, err.retriable === true, retryAfter);
  }

  /** A call whose connection was lost before its reply: retriable, outcome unknown. */
  static connectionLost(op: string): IkigaiError {
    return new IkigaiError(
      "unavailable",
      `connection to the daemon lost during ${op}; its outcome is unknown`,
      true,
    );
  }
}
