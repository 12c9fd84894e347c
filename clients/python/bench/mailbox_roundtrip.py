"""Mailbox round trip through the Python client: one producer connection pipelines N sends
(at most W in flight) to the consumer's mailbox; one consumer connection receives batches of up
to 1000 and acks each batch. Prints one JSON line: messages, seconds (first send to last ack),
msgs_per_s.

python clients/python/bench/mailbox_roundtrip.py --socket S --producer NAME:TOKEN \
    --consumer NAME:TOKEN --messages N --window W
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from ikigai import Platform


def identity(value: str) -> tuple[str, str]:
    name, _, token = value.partition(":")
    return name, token


async def produce(platform: Platform, mailbox: str, messages: int, window: int) -> None:
    box = platform.mailbox(mailbox)
    slots = asyncio.Semaphore(window)

    async def send(n: int) -> None:
        try:
            await box.send({"n": n})
        finally:
            slots.release()

    tasks = []
    for n in range(messages):
        await slots.acquire()
        tasks.append(asyncio.ensure_future(send(n)))
    await asyncio.gather(*tasks)


async def consume(platform: Platform, messages: int) -> None:
    box = platform.mailbox()
    received = 0
    acks = []
    while received < messages:
        batch = await box.receive(max=1000, wait_ms=50)
        received += len(batch)
        if batch:
            acks.append(asyncio.ensure_future(box.ack([m["id"] for m in batch])))
    await asyncio.gather(*acks)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--socket", required=True)
    parser.add_argument("--producer", required=True, type=identity)
    parser.add_argument("--consumer", required=True, type=identity)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=1024)
    args = parser.parse_args()
    producer = await Platform.connect(args.socket, *args.producer)
    consumer = await Platform.connect(args.socket, *args.consumer)
    started = time.perf_counter()
    await asyncio.gather(
        produce(producer, consumer.agent, args.messages, args.window),
        consume(consumer, args.messages),
    )
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "messages": args.messages,
                "seconds": round(seconds, 4),
                "msgs_per_s": round(args.messages / seconds, 1),
            }
        )
    )
    await producer.close()
    await consumer.close()


if __name__ == "__main__":
    asyncio.run(main())
