"""Pub/sub (§10): `platform.pubsub.publish`, and `subscribe`, an async iterator of messages
that survives a daemon restart (it subscribes again on the new connection; messages published
in between are lost, delivery being at most once)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any, Self, cast

from .connection import Connection
from .errors import IkigaiError
from .types import JSON, PubSubMessage


class Subscription:
    """Messages of one topic pattern; `lost` counts those the daemon dropped (overflow)."""

    def __init__(self, pubsub: PubSub, topic: str) -> None:
        self._pubsub = pubsub
        self.topic = topic
        self.id = ""
        self.lost = 0
        self._messages: asyncio.Queue[PubSubMessage | None] = asyncio.Queue()
        self._closed = False

    def _push(self, _name: str, data: Any) -> None:
        if isinstance(data, dict) and "overflow" in data:
            self.lost += int(data["overflow"])
        else:
            self._messages.put_nowait(cast(PubSubMessage, data))

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> PubSubMessage:
        message = await self._messages.get()
        if message is None:
            raise StopAsyncIteration
        return message

    async def next(self, timeout: float | None = None) -> PubSubMessage:
        """The next message; `TimeoutError` after `timeout` seconds."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def unsubscribe(self) -> bool:
        """Ends the subscription; the iteration stops."""
        if self._closed:
            return False
        self._closed = True
        self._messages.put_nowait(None)
        return await self._pubsub._unsubscribe(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            await self.unsubscribe()
        except IkigaiError:
            pass  # the connection is gone, and the subscription with it


class PubSub:
    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._live: list[Subscription] = []
        connection.on_reconnect(self._resubscribe)

    async def publish(self, topic: str, message: JSON) -> int:
        """Publishes; returns the number of this daemon's subscriptions it was handed to."""
        reply = await self._connection.call("pubsub.publish", {"topic": topic, "message": message})
        return cast(int, reply["delivered"])

    async def subscribe(self, topic: str) -> Subscription:
        subscription = Subscription(self, topic)
        await self._attach(subscription)
        return subscription

    async def _attach(self, subscription: Subscription) -> None:
        reply = await self._connection.call("pubsub.subscribe", {"topic": subscription.topic})
        subscription.id = reply["subscription"]
        if subscription not in self._live:
            self._live.append(subscription)
        self._connection.subscription_pushes[subscription.id] = subscription._push

    async def _unsubscribe(self, subscription: Subscription) -> bool:
        self._live.remove(subscription)
        self._connection.subscription_pushes.pop(subscription.id, None)
        reply = await self._connection.call("pubsub.unsubscribe", {"subscription": subscription.id})
        return cast(bool, reply["unsubscribed"])

    async def _resubscribe(self) -> None:
        self._connection.subscription_pushes.clear()
        for subscription in list(self._live):
            await self._attach(subscription)
