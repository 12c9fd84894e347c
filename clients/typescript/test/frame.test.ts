// Frames as docs/protocol.md section 2 specifies them: the example bytes, bodies cut at any
// chunk boundary, and frames larger than the request limit.

import assert from "node:assert/strict";
import { test } from "node:test";
import { FrameReader, FrameWriter, encodeBody } from "../src/frame.js";

test("a ping request is the protocol's 23-byte example frame", () => {
  const writer = new FrameWriter();
  writer.append(1, "ping", {});
  assert.equal(writer.take().toString("hex"), "00000013" + "83a2696401a26f70a470696e67a46172677380");
});

test("undefined args are left out, as absent fields mean default", () => {
  const writer = new FrameWriter();
  writer.append(2, "cache.get", { key: "k", shared: undefined });
  const frames: unknown[] = [];
  new FrameReader().feed(writer.take(), (body) => frames.push(body));
  assert.deepEqual(frames, [{ id: 2, op: "cache.get", args: { key: "k" } }]);
});

test("frames split at every byte, or several in one chunk, decode the same", () => {
  const replies = [{ id: 1, ok: {} }, { push: "s", data: { topic: "t", message: [1, 2] } }, { id: 3, err: { code: "conflict", message: "m", retriable: false } }];
  const bytes = Buffer.concat(replies.map((reply) => frame(encodeBody(reply))));
  for (const size of [1, 2, 5, bytes.length]) {
    const reader = new FrameReader();
    const got: unknown[] = [];
    for (let at = 0; at < bytes.length; at += size) reader.feed(bytes.subarray(at, at + size), (body) => got.push(body));
    assert.deepEqual(got, replies, `chunks of ${size}`);
  }
});

test("a reply larger than the request limit (16 MiB) is read whole", () => {
  const big = { id: 9, ok: { messages: ["x".repeat(17 * 1024 * 1024)] } };
  const bytes = frame(encodeBody(big));
  const reader = new FrameReader();
  const got: any[] = [];
  for (let at = 0; at < bytes.length; at += 65536) reader.feed(bytes.subarray(at, at + 65536), (body) => got.push(body));
  assert.equal(got.length, 1);
  assert.equal(got[0].ok.messages[0].length, 17 * 1024 * 1024);
});

function frame(body: Uint8Array): Buffer {
  const prefix = Buffer.alloc(4);
  prefix.writeUInt32BE(body.length);
  return Buffer.concat([prefix, body]);
}
