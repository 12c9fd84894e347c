// The mailbox round trip through the TypeScript client, for the cross-language bench:
//   node dist/bench/mailbox_roundtrip.js --socket S --producer NAME:TOKEN --consumer NAME:TOKEN \
//     --messages N --window W
// One producer connection pipelines N `mailbox.send`s (at most W in flight) to the consumer's
// mailbox; one consumer connection receives batches (max 1000) and acks each without waiting;
// the time runs from the first send to the last ack. Prints one JSON line.

import { parseArgs } from "node:util";
import { Platform } from "../src/platform.js";

const { values } = parseArgs({
  options: {
    socket: { type: "string" },
    producer: { type: "string" },
    consumer: { type: "string" },
    messages: { type: "string", default: "100000" },
    window: { type: "string", default: "1024" },
  },
});

function identity(flag: string, value: string | undefined): { agent: string; token: string } {
  const at = value?.indexOf(":") ?? -1;
  if (!value || at < 1) throw new Error(`--${flag} NAME:TOKEN is required`);
  return { agent: value.slice(0, at), token: value.slice(at + 1) };
}

const socket = values.socket ?? process.env.IKIGAI_SOCKET;
const messages = Number(values.messages);
const window = Number(values.window);
const producer = await Platform.connect({ socket, ...identity("producer", values.producer) });
const consumer = await Platform.connect({ socket, ...identity("consumer", values.consumer) });
const outbox = producer.mailbox(consumer.agent);
const inbox = consumer.mailbox(consumer.agent);

/** Sends `count` messages with at most `window` unanswered. */
async function produce(count: number): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < count) await outbox.send({ n: next++ });
  };
  await Promise.all(Array.from({ length: Math.min(window, count) }, lane));
}

/** Receives until `count` messages came, acking each batch; resolves after the last ack. */
async function consume(count: number): Promise<void> {
  const acks: Promise<number>[] = [];
  for (let received = 0; received < count; ) {
    const batch = await inbox.receive({ max: 1000, waitMs: 50 });
    received += batch.length;
    if (batch.length) acks.push(inbox.ack(batch));
  }
  await Promise.all(acks);
}

const started = process.hrtime.bigint();
await Promise.all([produce(messages), consume(messages)]);
const seconds = Number(process.hrtime.bigint() - started) / 1e9;
console.log(JSON.stringify({ messages, seconds, msgs_per_s: messages / seconds }));
producer.close();
consumer.close();
