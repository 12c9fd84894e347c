// Frames (docs/protocol.md section 2): a u32 big-endian body length, then one msgpack map.
// `FrameWriter` appends encoded requests to one growing buffer that the connection writes out in
// a single `write` per burst; `FrameReader` cuts incoming chunks into frame bodies and decodes
// them, accepting any length a 4-byte prefix can describe.

import { Decoder, Encoder } from "@msgpack/msgpack";

/** The daemon's nesting limit; payloads may nest as deep as it accepts. */
const MAX_DEPTH = 1024;

const encoder = new Encoder({ ignoreUndefined: true, maxDepth: MAX_DEPTH });
const decoder = new Decoder();

/** Encodes one value as a msgpack body (a fresh copy). */
export function encodeBody(value: unknown): Uint8Array {
  return encoder.encode(value);
}

/** Request frames waiting to be written, in one buffer. */
export class FrameWriter {
  private buffer = Buffer.allocUnsafe(64 * 1024);
  private length = 0;

  get pending(): number {
    return this.length;
  }

  /** Appends the frame of `{id, op, args}`. Undefined fields are left out (they mean default). */
  append(id: number, op: string, args: object): void {
    const body = encoder.encodeSharedRef({ id, op, args });
    this.reserve(4 + body.length);
    this.buffer.writeUInt32BE(body.length, this.length);
    this.buffer.set(body, this.length + 4);
    this.length += 4 + body.length;
  }

  /** Takes every frame appended so far, as one buffer the caller owns. */
  take(): Buffer {
    const out = Buffer.from(this.buffer.subarray(0, this.length));
    this.length = 0;
    return out;
  }

  clear(): void {
    this.length = 0;
  }

  private reserve(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, this.length + extra));
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
  }
}

/** Cuts a byte stream into decoded frame bodies. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private size = 0;
  /** Bytes needed before the next frame can be cut (its prefix, then its whole frame). */
  private need = 4;

  /** Feeds one chunk; calls `onFrame` with each complete body, decoded. */
  feed(chunk: Buffer, onFrame: (body: unknown) => void): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    if (this.size < this.need) return;
    const data = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.size);
    let at = 0;
    this.need = 4;
    while (data.length - at >= 4) {
      const end = at + 4 + data.readUInt32BE(at);
      if (end > data.length) {
        this.need = end - at;
        break;
      }
      onFrame(decoder.decode(data.subarray(at + 4, end)));
      at = end;
    }
    this.chunks = at < data.length ? [data.subarray(at)] : [];
    this.size = data.length - at;
  }

  reset(): void {
    this.chunks = [];
    this.size = 0;
    this.need = 4;
  }
}
