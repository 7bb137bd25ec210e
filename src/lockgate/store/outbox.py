"""The outbox: what the MQTT link publishes, oldest first, removed only on the broker's PUBACK.

Two kinds of message leave the station (mqtt-contract.md, Delivery guarantees):

- **Queued** messages — events, command documents, error documents — are a FIFO in the store. The
  link takes them oldest first and acknowledges each once the broker has; an unacknowledged one is
  handed out again on the next connection (at least once).
- **Retained** documents — one per lock (``locks/{bike}``) and the station ``status`` — are latest
  state, not history: one row per topic, overwritten at every change and carrying a generation.
  Only the newest generation is published; after every (re)connect all of them are published
  again, whatever was acknowledged before, because a broker may have lost its retained store.

The link, per connection (:mod:`lockgate.mqtt.drain`): :meth:`Outbox.connected`, then a windowed
drain: it iterates :meth:`Outbox.pending` (which reads the store a batch at a time and waits for
the store's listeners when nothing is left), keeps up to a window of QoS 1 publishes in flight at
once without waiting for each PUBACK, and hands the messages whose PUBACK came back to
:meth:`Outbox.acknowledge` in batches (one transaction each). A message is removed only once
acknowledged, so what was in flight when a connection dropped is handed out again on the next one.

An event that was already waiting when the connection came up is handed out with
``"replayed": true`` (its stored bytes are not changed; the flag is set on the way out, in the
bytes: :func:`mark_replayed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from lockgate.model import MessageKind
from lockgate.store.records import Correlation
from lockgate.store.store import Store, StoreError

QOS = 1
ACK_DELAY_S = 1.0
"""Acknowledged messages are removed from the store in one transaction at most this long after
their PUBACK (or when :meth:`Outbox.depth` is asked), not one transaction per PUBACK: a command's
half-dozen messages cost one removal (docs/store.md, "Writes a card survives")."""
ACK_BATCH = 500
"""…or as soon as this many wait."""


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """One message to publish under ``{root}/{station}/``; ``key`` is the row id or the topic."""

    key: int | str
    topic: str
    payload: bytes
    retain: bool
    kind: MessageKind | None = None  # None for a retained document
    generation: int = 0
    correlation: Correlation = field(default_factory=Correlation)
    qos: int = QOS


class Outbox:
    """The MQTT link's view of the store: pending messages in order, and their acknowledgement."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._changed = asyncio.Event()
        self._replay_below = 0
        # Acknowledged, not yet removed from the store (ACK_DELAY_S): never handed out again.
        self._acked: set[int] = set()
        self._acked_retained: dict[str, int] = {}
        self._remover: asyncio.Task[None] | None = None
        store.add_listener(self._changed.set)

    async def connected(self) -> None:
        """Call at every (re)connect, before :meth:`pending`: re-arms every retained document and
        marks what is already waiting as replayed."""
        self._replay_below = await self._store.last_queued_id() + 1
        self._acked_retained.clear()  # every retained document is published again anyway
        await self._store.unacknowledge_retained()
        self._changed.set()

    async def next_batch(self, limit: int = 100, *, after: int = 0) -> list[OutboxMessage]:
        """Retained documents not yet acknowledged at their newest generation, then up to
        ``limit`` queued messages with an id above ``after``, oldest first."""
        return (await self._batch(limit, after))[0]

    async def _batch(self, limit: int, after: int) -> tuple[list[OutboxMessage], int, int]:
        """:meth:`next_batch`, with how many queued rows the store gave and the last one's id
        (acknowledged ones not yet removed are left out of the messages, not of those)."""
        stored_retained, stored_queued = await self._store.outbox_batch(after=after, limit=limit)
        retained = [
            OutboxMessage(row.topic, row.topic, row.payload, retain=True, generation=row.generation)
            for row in stored_retained
            if self._acked_retained.get(row.topic, 0) < row.generation
        ]
        queued = [
            OutboxMessage(
                row.id,
                row.topic,
                mark_replayed(row.payload) if self._is_replay(row.id, row.kind) else row.payload,
                retain=False,
                kind=row.kind,
                correlation=row.correlation,
            )
            for row in stored_queued
            if row.id not in self._acked
        ]
        last = stored_queued[-1].id if stored_queued else after
        return retained + queued, len(stored_queued), last

    async def pending(self, batch: int = 100) -> AsyncIterator[OutboxMessage]:
        """Every message to publish, in order, waiting for new ones; each once per iteration.

        A retained document comes again only if a newer generation of it was written.
        """
        cursor = 0
        handed: dict[str, int] = {}
        while True:
            self._changed.clear()
            progressed = False
            messages, read, last = await self._batch(batch, cursor)
            # A short batch was everything: unless the store changed since, the next read would
            # find nothing (one trip to the store's thread saved per change).
            complete = read < batch
            for message in messages:
                if message.retain:
                    if handed.get(message.topic, 0) >= message.generation:
                        continue
                    handed[message.topic] = message.generation
                else:
                    assert isinstance(message.key, int)
                    cursor = message.key
                progressed = True
                yield message
            if last > cursor:  # rows acknowledged but not yet removed: past them too
                cursor, progressed = last, True
            if not progressed or complete:
                await self._changed.wait()

    async def acknowledge(self, *messages: OutboxMessage) -> None:
        """The broker acknowledged these: queued ones are removed, retained ones marked done, in
        one transaction with every other acknowledgement of the next :data:`ACK_DELAY_S` (never
        handed out again meanwhile; lost in a power cut, they are published again, which at least
        once allows, as the removal was never synced on its own)."""
        self._acked.update(message.key for message in messages if isinstance(message.key, int))
        for topic, generation in _retained(messages):
            self._acked_retained[topic] = max(generation, self._acked_retained.get(topic, 0))
        if len(self._acked) >= ACK_BATCH:
            await self.remove_acknowledged()
        elif self._remover is None or self._remover.done():
            self._remover = asyncio.get_running_loop().create_task(
                self._remove_later(), name="lockgate.store.outbox-acknowledged"
            )

    async def _remove_later(self) -> None:
        await asyncio.sleep(ACK_DELAY_S)
        with contextlib.suppress(StoreError):  # kept: the next acknowledgement tries again
            await self.remove_acknowledged()

    async def remove_acknowledged(self) -> None:
        """Removes from the store, in one transaction, what the broker acknowledged so far."""
        queued, retained = sorted(self._acked), list(self._acked_retained.items())
        if not queued and not retained:
            return
        await self._store.acknowledge(queued, retained)
        self._acked.difference_update(queued)
        for topic, generation in retained:
            if self._acked_retained.get(topic) == generation:
                del self._acked_retained[topic]

    async def close(self) -> None:
        """Removes what was acknowledged (at a clean stop, before the store closes)."""
        if self._remover is not None:
            self._remover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._remover
        await self.remove_acknowledged()

    async def set_retained(self, topic: str, payload: bytes) -> None:
        """Writes a latest-state document such as ``status``, to be published once (and after
        every reconnect)."""
        await self._store.set_retained(topic, payload)

    async def depth(self) -> int:
        """Queued messages not yet acknowledged (what was acknowledged is removed first)."""
        await self.remove_acknowledged()
        return await self._store.outbox_depth()

    async def oldest_created_at(self) -> datetime | None:
        """When the oldest waiting queued message was written; None when none waits."""
        await self.remove_acknowledged()
        return await self._store.oldest_queued_at()

    def _is_replay(self, message_id: int, kind: MessageKind) -> bool:
        return kind is MessageKind.EVENT and message_id < self._replay_below


_REPLAYED_KEY = b'"replayed":'


def mark_replayed(payload: bytes) -> bytes:
    """An event's stored bytes with ``replayed`` true, without parsing them (a drain after an
    outage hands out tens of thousands; a JSON load and dump each was a tenth of its time).

    Sound for what the store writes (``Event.to_bytes``: pydantic's compact JSON): every field of
    an event is a scalar, so the only keys are the field names and just one is ``replayed``; and a
    quote inside a JSON string is always escaped, so ``"replayed":`` cannot occur inside a value
    (its last quote, followed by a colon, can only close a key). The first occurrence is therefore
    the key. A payload not of that form (none is written so) is parsed and written again.
    """
    head, key, tail = payload.partition(_REPLAYED_KEY)
    if key and tail.startswith(b"false"):
        return b"".join((head, _REPLAYED_KEY, b"true", tail[5:]))
    if key and tail.startswith(b"true"):
        return payload
    document = json.loads(payload)
    document["replayed"] = True
    return json.dumps(document, separators=(",", ":")).encode()


def _retained(messages: Iterable[OutboxMessage]) -> list[tuple[str, int]]:
    return [(message.topic, message.generation) for message in messages if message.retain]
