"""The station's memory: one SQLite file behind an async API, every change one transaction.

Commands (the receipt and every change, which is also the dedupe record of ids), lock records, the
sealed standing credentials, the outbox of messages to publish, the retained documents and the
station's ``seq`` counter. Every :class:`~lockgate.store.records.Change` is one transaction: a state
change and the messages that announce it are written together or not at all.

The top of the store's three parts: this module says what a change writes and under which topic
(:mod:`lockgate.contract.topics`); :mod:`lockgate.store.sql` holds the statements;
:mod:`lockgate.store.database` owns the connection and the one thread that runs them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Self

import structlog

from lockgate.contract import topics
from lockgate.contract.documents import Event, HealthEvent
from lockgate.contract.stamps import stamp
from lockgate.contract.station import Station
from lockgate.model import MessageKind, Profile
from lockgate.protocol.credentials import Credentials
from lockgate.store import sql
from lockgate.store.database import (
    Database,
    StoreCorruptError,
    StoreMissingError,
    StoreUnusableError,
)
from lockgate.store.errors import StoreError
from lockgate.store.key import StationKey
from lockgate.store.records import Change, CommandRecord, Correlation, LockRecord
from lockgate.store.sql import Stored, StoredRetained

_log = structlog.get_logger(__name__)

DEFAULT_MAX_OUTBOX = 100_000
DEFAULT_OPERATION_TIMEOUT_S = 10.0
DEFAULT_MAX_REFUSALS = 10_000
# Kinds the outbox may drop when full. A command document at a change of state is the only answer
# the backend gets to its command, and there are at most a few per command, so it is never dropped.
DROPPABLE = (MessageKind.EVENT, MessageKind.REPLY, MessageKind.ERROR)

__all__ = [
    "DEFAULT_MAX_OUTBOX",
    "DEFAULT_MAX_REFUSALS",
    "DEFAULT_OPERATION_TIMEOUT_S",
    "DROPPABLE",
    "Applied",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreMissingError",
    "StoreUnusableError",
    "Stored",
    "StoredRetained",
]


@dataclass(frozen=True, slots=True)
class Applied:
    """What a transaction gave out: the ``seq`` of each of its events, in order."""

    seqs: tuple[int, ...]
    dropped: int


def _assumed_synced() -> bool:
    return True


class Store:
    """The SQLite store. Open with :meth:`open` (or ``async with``), close with :meth:`close`."""

    def __init__(
        self,
        path: Path,
        *,
        station: Station,
        key: StationKey,
        max_outbox: int = DEFAULT_MAX_OUTBOX,
        max_refusals: int = DEFAULT_MAX_REFUSALS,
        operation_timeout_s: float = DEFAULT_OPERATION_TIMEOUT_S,
        fresh: bool = False,
        max_size_bytes: int | None = None,
        clock_synced: Callable[[], bool] | None = None,
    ) -> None:
        if max_outbox < 10:
            raise ValueError("max_outbox must be at least 10")
        if max_refusals < 1:
            raise ValueError("max_refusals must be at least 1")
        self.path = path
        self.station = station
        self.key = key
        self.max_outbox = max_outbox
        self.max_refusals = max_refusals
        self._database = Database(
            path, timeout_s=operation_timeout_s, fresh=fresh, max_size_bytes=max_size_bytes
        )
        # Refusals written since the last bound; the bound runs every 1 % of max_refusals.
        self._refusals_unbounded = max_refusals
        self._listeners: list[Callable[[], None]] = []
        self.schema_found = 0
        # The next outbox id (on the store's thread): above every id the outbox held since the
        # store opened, so that an id is never given twice while a link may hold it, even once
        # the outbox was emptied (what AUTOINCREMENT did, with a page written per transaction).
        self._next_outbox_id = 1
        # Whether the wall clock is synchronised: every event says so as it is queued.
        self._clock_synced = clock_synced if clock_synced is not None else _assumed_synced

    # --- life ----------------------------------------------------------------------------------

    async def open(self) -> Self:
        """Opens the file; :class:`StoreMissingError` if the database this station created has
        vanished or is empty, :class:`StoreCorruptError` if it is not a sound database, unless the
        store was made with ``fresh=True`` (the old files are then set aside: :attr:`set_aside`);
        :class:`StoreError` (naming the file) for anything else that keeps it from being written."""
        self.schema_found = await self._database.open()
        self._next_outbox_id = await self._database.run(lambda: sql.last_queued_id(self._db) + 1)
        return self

    @property
    def set_aside(self) -> tuple[Path, ...]:
        """The unusable files an open with ``fresh=True`` renamed out of the way."""
        return self._database.set_aside

    async def close(self) -> None:
        await self._database.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Called on the event loop after every transaction that queued a message."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.connection

    # --- writes --------------------------------------------------------------------------------

    async def apply(self, *changes: Change, at: datetime, durable: bool = True) -> Applied:
        """Writes ``changes``, in order, and queues their messages, in one transaction: each as it
        would be written alone, so several changes written together leave the same rows and
        messages, in the same order, as one transaction each (the engine writes a command's steps
        with its next change so: docs/store.md, writes).

        ``durable=False`` commits without waiting for the disk (the next durable write syncs it
        along), for an answer whose loss in a power cut costs nothing but the same answer again:
        a refused request, whose repeat is refused again (docs/store.md). Still committed, and so
        readable by the outbox, before this returns. A transaction that gave out a ``seq`` (the
        outbox bound's health event) is synced before it returns all the same: a ``seq`` must
        never be given out twice, and a lost one would be."""

        def apply_all() -> Applied:
            seqs: list[int] = []
            dropped = 0
            for change in changes:
                applied = self._apply(change, at)
                seqs.extend(applied.seqs)
                dropped += applied.dropped
            return Applied(tuple(seqs), dropped)

        def write() -> Applied:
            applied = self._database.transaction(apply_all, durable=durable)
            if not durable and (applied.seqs or applied.dropped):  # a health event's seq
                self._database.sync()
            return applied

        applied = await self._database.run(write)
        if any(
            change.commands or change.events or change.replies or change.errors or change.locks
            for change in changes
        ):
            self._notify()
        return applied

    def _apply(self, change: Change, at: datetime) -> Applied:
        db = self._db
        for provisioning in change.provisioning:
            if provisioning.credentials is None:
                sql.delete_credentials(db, provisioning.bike)
            else:
                sealed = self.key.seal(provisioning.bike, provisioning.credentials)
                profile = provisioning.credentials.profile.value
                sql.put_credentials(db, provisioning.bike, profile, sealed)
        # What happened to the lock before what it meant for a command: a conclusion's final
        # state reaches the backend before the command's SUCCESS (one transaction either way).
        seqs = [self._queue_event(event, at) for event in change.events]
        for command in change.commands:
            sql.put_command(db, command)
            document = command.document(self.station.id).to_bytes()
            topic = topics.command(command.id)
            # A refusal's document may be dropped like a reply: a repeat of the request gets it
            # again from the stored record, and a flood of refusals must not outgrow the bound.
            refused = command.version == 1 and command.ended_at is not None
            kind = MessageKind.REPLY if refused else MessageKind.COMMAND
            self._queue(kind, topic, document, correlation=command.correlation, at=at)
            if refused:
                self._refusals_unbounded += 1
        for dispatched in change.dispatches:
            sql.mark_dispatched(db, dispatched)
        for reply in change.replies:
            topic = topics.command(reply.document.id)
            payload = reply.document.to_bytes()
            self._queue(MessageKind.REPLY, topic, payload, correlation=reply.correlation, at=at)
        for error in change.errors:
            payload = error.to_bytes()
            self._queue(MessageKind.ERROR, topics.ERRORS, payload, correlation=Correlation(), at=at)
        if self._refusals_unbounded >= max(1, self.max_refusals // 100):
            sql.bound_refusals(db, self.max_refusals)
            self._refusals_unbounded = 0
        dropped = self._bound(at)
        seq = sql.counter(db, "seq")
        for lock in change.locks:
            sql.put_lock(db, lock)
            registered = self.station.lock(lock.bike)
            if registered is not None:
                retained = lock.document(registered, seq=seq, boot_id=self.station.boot_id)
                sql.put_retained(db, topics.lock(lock.bike), retained.to_bytes())
        return Applied(tuple(seqs), dropped)

    def _queue_event(self, event: Event, at: datetime) -> int:
        seq = sql.counter(self._db, "seq") + 1
        sql.set_counter(self._db, "seq", seq)
        update = {"seq": seq, "clock_synced": self._clock_synced()}
        stamped = event.model_copy(update=update).to_bytes()
        self._queue(MessageKind.EVENT, topics.EVENTS, stamped, correlation=Correlation(), at=at)
        return seq

    def _queue(
        self,
        kind: MessageKind,
        topic: str,
        payload: bytes,
        *,
        correlation: Correlation,
        at: datetime,
    ) -> None:
        """On the store's thread: one message appended to the outbox under the next id (an id
        given to a transaction that failed is not given again: a gap, which nothing minds)."""
        message_id = self._next_outbox_id
        self._next_outbox_id += 1
        sql.queue(self._db, message_id, kind, topic, payload, correlation=correlation, at=at)

    def _bound(self, at: datetime) -> int:
        """Drops the oldest droppable messages while the outbox is over its bound, and says so."""
        db = self._db
        over = sql.outbox_over(db, self.max_outbox)
        if over <= 0:
            return 0
        # Drop a slice at once (1 % of the bound, at least what is over), so a long outage
        # makes one health event per slice rather than one per message.
        dropped = sql.drop_oldest(db, DROPPABLE, max(over + 1, self.max_outbox // 100))
        if dropped <= 0:
            return 0  # only command documents are queued: they are kept, beyond the bound
        total = sql.counter(db, "dropped_total") + dropped
        sql.set_counter(db, "dropped_total", total)
        _log.warning("outbox full: dropped the oldest messages", dropped=dropped, total=total)
        self._queue_event(
            HealthEvent(
                **stamp(self.station, at, bike=None),
                dropped=dropped,
                dropped_total=total,
                reason=f"outbox full ({self.max_outbox}): the oldest {dropped} messages dropped",
            ),
            at,
        )
        return dropped

    async def set_retained(self, topic: str, payload: bytes) -> None:
        """Latest-state document (the station status): replaces what was there, to publish once."""
        await self._database.write(lambda: sql.put_retained(self._db, topic, payload))
        self._notify()

    # --- reads ---------------------------------------------------------------------------------

    async def command(self, command_id: str) -> CommandRecord | None:
        return await self._database.run(lambda: sql.command(self._db, command_id))

    async def unfinished_commands(self) -> list[CommandRecord]:
        """Commands not in a final state, in order of arrival."""
        return await self._database.run(lambda: sql.unfinished_commands(self._db))

    async def prune_commands(self, ended_before: datetime) -> int:
        """Forgets final commands that ended before ``ended_before`` (the dedupe window)."""
        return await self._database.write(lambda: sql.prune_commands(self._db, ended_before))

    async def prune_refusals(self, ended_before: datetime) -> int:
        """Forgets refused requests answered before ``ended_before`` (the refusal window)."""
        return await self._database.write(lambda: sql.prune_refusals(self._db, ended_before))

    async def locks(self) -> dict[str, LockRecord]:
        return await self._database.run(lambda: sql.locks(self._db))

    async def credentials(self) -> dict[str, Credentials]:
        """Every lock's standing credentials, opened with the station key."""
        rows = await self._database.run(lambda: sql.sealed_credentials(self._db))
        return {
            bike: self.key.open(bike, Profile(profile), sealed) for bike, profile, sealed in rows
        }

    async def seq(self) -> int:
        return await self._database.run(lambda: sql.counter(self._db, "seq"))

    # --- the outbox's side ---------------------------------------------------------------------

    async def queued(self, *, after: int, limit: int) -> list[Stored]:
        return await self._database.run(lambda: sql.queued(self._db, after=after, limit=limit))

    async def retained_topics(self) -> list[str]:
        """The topic of every retained document the store holds."""
        return await self._database.run(lambda: sql.retained_topics(self._db))

    async def provisioned_bikes(self) -> frozenset[str]:
        """The bikes whose credentials are provisioned (nothing is unsealed)."""
        return frozenset(await self._database.run(lambda: sql.provisioned_bikes(self._db)))

    async def unacknowledged_retained(self) -> list[StoredRetained]:
        return await self._database.run(lambda: sql.unacknowledged_retained(self._db))

    async def outbox_batch(
        self, *, after: int, limit: int
    ) -> tuple[list[StoredRetained], list[Stored]]:
        """:meth:`unacknowledged_retained` and :meth:`queued` in one trip to the store's thread
        (the link asks for both each time the outbox changes)."""

        def both() -> tuple[list[StoredRetained], list[Stored]]:
            return (
                sql.unacknowledged_retained(self._db),
                sql.queued(self._db, after=after, limit=limit),
            )

        return await self._database.run(both)

    async def acknowledge(self, queued: Iterable[int], retained: Iterable[tuple[str, int]]) -> None:
        """Removes what the broker acknowledged. Not synced on its own: the next durable write
        syncs it along; a power cut before that only publishes these again (at least once)."""
        ids, generations = list(queued), list(retained)
        await self._database.write(
            lambda: sql.acknowledge(self._db, ids, generations), durable=False
        )

    async def unacknowledge_retained(self) -> None:
        """Every retained document is to be published again (after a reconnect)."""
        await self._database.write(lambda: sql.unacknowledge_retained(self._db))

    async def outbox_depth(self) -> int:
        return await self._database.run(lambda: sql.outbox_depth(self._db))

    async def oldest_queued_at(self) -> datetime | None:
        """When the oldest queued message was written (None for an empty outbox)."""
        return await self._database.run(lambda: sql.oldest_queued_at(self._db))

    async def last_queued_id(self) -> int:
        return await self._database.run(lambda: sql.last_queued_id(self._db))
