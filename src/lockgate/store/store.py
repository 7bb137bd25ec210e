"""The station's memory: one SQLite file (WAL, ``synchronous=FULL``) behind an async API.

Commands (the receipt and every change, which is also the dedupe record of ids), lock records, the
sealed standing credentials, the outbox of messages to publish, the retained documents and the
station's ``seq`` counter. Every :class:`~lockgate.store.records.Change` is one transaction: a state
change and the messages that announce it are written together or not at all.

Threading: one connection, owned by one worker thread (a single-thread executor). Every call is a
short job on that thread, awaited with a timeout, so the event loop never blocks on the disk and
there is exactly one writer. A transaction is a handful of rows; an fsync on a Pi's SD card is a few
milliseconds, which the loop does not feel.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self, TypeVar
from uuid import uuid4

import structlog

from lockgate.contract.documents import CommandEvent, Event, HealthEvent
from lockgate.contract.station import Station
from lockgate.contract.times import format_time, parse_time
from lockgate.model import (
    BookingState,
    CommandState,
    ErrorCode,
    HardwareState,
    Health,
    LockState,
    MessageKind,
    Profile,
)
from lockgate.protocol.credentials import Credentials
from lockgate.store.key import StationKey
from lockgate.store.records import Change, CommandRecord, Correlation, LockRecord
from lockgate.store.schema import migrate

_T = TypeVar("_T")
_log = structlog.get_logger(__name__)

DEFAULT_MAX_OUTBOX = 100_000
DEFAULT_OPERATION_TIMEOUT_S = 10.0
# Kinds the outbox may drop when full. A command document at a change of state is the only answer
# the backend gets to its command, and there are at most a few per command, so it is never dropped.
DROPPABLE = (MessageKind.EVENT, MessageKind.REPLY, MessageKind.ERROR)


class StoreError(Exception):
    """The store could not do what was asked (disk, timeout, or a schema it does not know)."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What a transaction gave out: the ``seq`` of each of its events, in order."""

    seqs: tuple[int, ...]
    dropped: int


@dataclass(frozen=True, slots=True)
class Stored:
    """One queued message as stored, for the outbox to hand out."""

    id: int
    kind: MessageKind
    topic: str
    payload: bytes
    correlation: Correlation


@dataclass(frozen=True, slots=True)
class StoredRetained:
    topic: str
    payload: bytes
    generation: int


class Store:
    """The SQLite store. Open with :meth:`open` (or ``async with``), close with :meth:`close`."""

    def __init__(
        self,
        path: Path,
        *,
        station: Station,
        key: StationKey,
        max_outbox: int = DEFAULT_MAX_OUTBOX,
        operation_timeout_s: float = DEFAULT_OPERATION_TIMEOUT_S,
    ) -> None:
        if max_outbox < 10:
            raise ValueError("max_outbox must be at least 10")
        self.path = path
        self.station = station
        self.key = key
        self.max_outbox = max_outbox
        self._timeout = operation_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._connection: sqlite3.Connection | None = None
        self._listeners: list[Callable[[], None]] = []
        self.schema_found = 0

    # --- life ----------------------------------------------------------------------------------

    async def open(self) -> Self:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self.schema_found = await self._run(self._open)
        return self

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self._run(self._close)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed transaction survives a power cut; every write here is one the
        # contract promises not to lose (a receipt, a rental start, an event).
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA busy_timeout=5000")
        self._connection = connection
        return migrate(connection)

    def _close(self) -> None:
        if self._connection is not None:
            # Fold the WAL back into the database so a clean stop leaves one file.
            self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._connection.close()
            self._connection = None

    def add_listener(self, listener: Callable[[], None]) -> None:
        """Called on the event loop after every transaction that queued a message."""
        self._listeners.append(listener)

    async def _run(self, job: Callable[[], _T]) -> _T:
        if self._executor is None:
            raise StoreError("the store is not open")
        future = asyncio.get_running_loop().run_in_executor(self._executor, job)
        try:
            # asyncio.wait never cancels the job: a write that was asked for lands or fails
            # whole, so the caller's memory of what it wrote never runs ahead of the disk.
            done, _ = await asyncio.wait({future}, timeout=self._timeout)
        except asyncio.CancelledError:
            await asyncio.wait({future}, timeout=self._timeout)
            raise
        if not done:
            raise StoreError(f"the store did not answer within {self._timeout} s")
        try:
            return future.result()
        except sqlite3.Error as err:
            raise StoreError(f"the store failed: {err}") from err

    @property
    def _db(self) -> sqlite3.Connection:
        if self._connection is None:
            raise StoreError("the store is not open")
        return self._connection

    # --- writes --------------------------------------------------------------------------------

    async def apply(self, change: Change, *, at: datetime) -> Applied:
        """Writes ``change`` and queues its messages, in one transaction."""
        applied = await self._run(lambda: self._transaction(lambda: self._apply(change, at)))
        if change.commands or change.events or change.replies or change.errors or change.locks:
            for listener in self._listeners:
                listener()
        return applied

    def _transaction(self, job: Callable[[], _T]) -> _T:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = job()
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def _apply(self, change: Change, at: datetime) -> Applied:
        db = self._db
        for provisioning in change.provisioning:
            if provisioning.credentials is None:
                db.execute("DELETE FROM credentials WHERE bike = ?", (provisioning.bike,))
            else:
                sealed = self.key.seal(provisioning.bike, provisioning.credentials)
                db.execute(
                    "INSERT OR REPLACE INTO credentials (bike, profile, sealed) VALUES (?, ?, ?)",
                    (provisioning.bike, provisioning.credentials.profile.value, sealed),
                )
        for command in change.commands:
            self._put_command(command)
            self._queue(
                MessageKind.COMMAND,
                f"commands/{command.id}",
                command.document(self.station.id).to_bytes(),
                command.correlation,
                at,
            )
        for dispatched in change.dispatches:
            self._db.execute(
                "UPDATE command SET dispatched_at = ? WHERE id = ?",
                (_time(dispatched.dispatched_at), dispatched.id),
            )
        for reply in change.replies:
            self._queue(
                MessageKind.REPLY,
                f"commands/{reply.document.id}",
                reply.document.to_bytes(),
                reply.correlation,
                at,
            )
        for error in change.errors:
            self._queue(MessageKind.ERROR, "errors", error.to_bytes(), Correlation(), at)
        seqs = [self._queue_event(event, at) for event in change.events]
        dropped = self._bound(at)
        seq = self._counter("seq")
        for lock in change.locks:
            self._put_lock(lock)
            registered = self.station.lock(lock.bike)
            if registered is not None:
                document = lock.document(registered, seq=seq, boot_id=self.station.boot_id)
                self._put_retained(f"locks/{lock.bike}", document.to_bytes())
        return Applied(tuple(seqs), dropped)

    def _queue(
        self,
        kind: MessageKind,
        topic: str,
        payload: bytes,
        correlation: Correlation,
        at: datetime,
    ) -> int:
        cursor = self._db.execute(
            "INSERT INTO outbox (kind, topic, payload, correlation_data, response_topic,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                kind.value,
                topic,
                payload,
                correlation.correlation_data,
                correlation.response_topic,
                format_time(at),
            ),
        )
        return int(cursor.lastrowid or 0)

    def _queue_event(self, event: Event, at: datetime) -> int:
        seq = self._counter("seq") + 1
        self._db.execute("UPDATE counter SET value = ? WHERE name = 'seq'", (seq,))
        stamped = event.model_copy(update={"seq": seq})
        self._queue(MessageKind.EVENT, "events", stamped.to_bytes(), Correlation(), at)
        return seq

    def _bound(self, at: datetime) -> int:
        """Drops the oldest droppable messages while the outbox is over its bound, and says so."""
        db = self._db
        # The id span bounds the depth from above and costs two index probes; only count the
        # rows (a scan) when the span says the bound may be passed.
        span = db.execute(
            "SELECT COALESCE((SELECT MAX(id) FROM outbox) - (SELECT MIN(id) FROM outbox) + 1, 0)"
        ).fetchone()[0]
        if span <= self.max_outbox:
            return 0
        depth = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        if depth <= self.max_outbox:
            return 0
        # Drop a slice at once (1 % of the bound, at least what is over), so a long outage
        # makes one health event per slice rather than one per message.
        wanted = max(depth - self.max_outbox + 1, self.max_outbox // 100)
        kinds = tuple(kind.value for kind in DROPPABLE)
        dropped = db.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE kind IN (?, ?, ?)"
            " ORDER BY id LIMIT ?)",
            (*kinds, wanted),
        ).rowcount
        if dropped <= 0:
            return 0  # only command documents are queued: they are kept, beyond the bound
        total = self._counter("dropped_total") + dropped
        db.execute("UPDATE counter SET value = ? WHERE name = 'dropped_total'", (total,))
        _log.warning("outbox full: dropped the oldest messages", dropped=dropped, total=total)
        self._queue_event(
            HealthEvent(
                event_id=str(uuid4()),
                station=self.station.id,
                boot_id=self.station.boot_id,
                seq=0,
                bike=None,
                at=at,
                latitude=self.station.latitude,
                longitude=self.station.longitude,
                dropped=dropped,
                dropped_total=total,
                reason=f"outbox full ({self.max_outbox}): the oldest {dropped} messages dropped",
            ),
            at,
        )
        return int(dropped)

    def _counter(self, name: str) -> int:
        return int(
            self._db.execute("SELECT value FROM counter WHERE name = ?", (name,)).fetchone()[0]
        )

    def _put_command(self, command: CommandRecord) -> None:
        self._db.execute(
            "INSERT INTO command (id, arrival, fingerprint, name, bike, state, version, timeout_at,"
            " error_code, reason, events, parameters, correlation_data, response_topic,"
            " received_at, dispatched_at, ended_at)"
            " VALUES (?, (SELECT COALESCE(MAX(arrival), 0) + 1 FROM command),"
            " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state, version = excluded.version,"
            " error_code = excluded.error_code, reason = excluded.reason,"
            " events = excluded.events, dispatched_at = excluded.dispatched_at,"
            " ended_at = excluded.ended_at",
            (
                command.id,
                command.fingerprint,
                command.name,
                command.bike,
                command.state.value,
                command.version,
                _time(command.timeout_at),
                command.error_code.value if command.error_code else None,
                command.reason,
                json.dumps([event.model_dump(mode="json") for event in command.events]),
                json.dumps(command.parameters),
                command.correlation.correlation_data,
                command.correlation.response_topic,
                format_time(command.received_at),
                _time(command.dispatched_at),
                _time(command.ended_at),
            ),
        )

    def _put_lock(self, lock: LockRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO lock (bike, lock_state, state_changed_at, hardware_state,"
            " health, last_seen, dead_since, booking_state, booking_user, booking_timeout_at,"
            " battery, firmware, rssi, alarm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                lock.bike,
                lock.lock_state.value,
                _time(lock.state_changed_at),
                lock.hardware_state.value,
                lock.health.value,
                _time(lock.last_seen),
                _time(lock.dead_since),
                lock.booking.value,
                lock.booking_user,
                _time(lock.booking_timeout_at),
                lock.battery,
                lock.firmware,
                lock.rssi,
                None if lock.alarm is None else int(lock.alarm),
            ),
        )

    def _put_retained(self, topic: str, payload: bytes) -> None:
        self._db.execute(
            "INSERT INTO retained (topic, payload, generation, acked_generation)"
            " VALUES (?, ?, 1, 0) ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload,"
            " generation = retained.generation + 1",
            (topic, payload),
        )

    async def set_retained(self, topic: str, payload: bytes) -> None:
        """Latest-state document (the station status): replaces what was there, to publish once."""
        await self._run(lambda: self._transaction(lambda: self._put_retained(topic, payload)))
        for listener in self._listeners:
            listener()

    # --- reads ---------------------------------------------------------------------------------

    async def command(self, command_id: str) -> CommandRecord | None:
        rows = await self._run(
            lambda: self._db.execute(_SELECT_COMMAND + " WHERE id = ?", (command_id,)).fetchall()
        )
        return _command(rows[0]) if rows else None

    async def unfinished_commands(self) -> list[CommandRecord]:
        """Commands not in a final state, in order of arrival."""
        rows = await self._run(
            lambda: self._db.execute(
                _SELECT_COMMAND + " WHERE ended_at IS NULL ORDER BY arrival"
            ).fetchall()
        )
        return [_command(row) for row in rows]

    async def prune_commands(self, ended_before: datetime) -> int:
        """Forgets final commands that ended before ``ended_before`` (the dedupe window)."""
        return await self._run(
            lambda: self._transaction(
                lambda: (
                    self._db.execute(
                        "DELETE FROM command WHERE ended_at IS NOT NULL AND ended_at < ?",
                        (format_time(ended_before),),
                    ).rowcount
                )
            )
        )

    async def locks(self) -> dict[str, LockRecord]:
        rows = await self._run(lambda: self._db.execute(_SELECT_LOCK).fetchall())
        return {row[0]: _lock(row) for row in rows}

    async def credentials(self) -> dict[str, Credentials]:
        """Every lock's standing credentials, opened with the station key."""
        rows = await self._run(
            lambda: self._db.execute("SELECT bike, profile, sealed FROM credentials").fetchall()
        )
        return {
            bike: self.key.open(bike, Profile(profile), sealed) for bike, profile, sealed in rows
        }

    async def seq(self) -> int:
        return await self._run(lambda: self._counter("seq"))

    # --- the outbox's side ---------------------------------------------------------------------

    async def queued(self, *, after: int, limit: int) -> list[Stored]:
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT id, kind, topic, payload, correlation_data, response_topic FROM outbox"
                " WHERE id > ? ORDER BY id LIMIT ?",
                (after, limit),
            ).fetchall()
        )
        return [
            Stored(row[0], MessageKind(row[1]), row[2], bytes(row[3]), Correlation(row[4], row[5]))
            for row in rows
        ]

    async def unacknowledged_retained(self) -> list[StoredRetained]:
        rows = await self._run(
            lambda: self._db.execute(
                "SELECT topic, payload, generation FROM retained"
                " WHERE generation > acked_generation ORDER BY topic"
            ).fetchall()
        )
        return [StoredRetained(row[0], bytes(row[1]), row[2]) for row in rows]

    async def acknowledge(self, queued: Iterable[int], retained: Iterable[tuple[str, int]]) -> None:
        ids = [(message_id,) for message_id in queued]
        generations = [(generation, topic, generation) for topic, generation in retained]

        def job() -> None:
            self._db.executemany("DELETE FROM outbox WHERE id = ?", ids)
            self._db.executemany(
                "UPDATE retained SET acked_generation = ? WHERE topic = ? AND acked_generation < ?",
                generations,
            )

        await self._run(lambda: self._transaction(job))

    async def unacknowledge_retained(self) -> None:
        """Every retained document is to be published again (after a reconnect)."""
        await self._run(
            lambda: self._transaction(
                lambda: self._db.execute("UPDATE retained SET acked_generation = 0")
            )
        )

    async def outbox_depth(self) -> int:
        return await self._run(
            lambda: int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        )

    async def oldest_queued_at(self) -> datetime | None:
        """When the oldest queued message was written (None for an empty outbox)."""
        row = await self._run(
            lambda: self._db.execute("SELECT created_at FROM outbox ORDER BY id LIMIT 1").fetchone()
        )
        return None if row is None else _parsed(row[0])

    async def last_queued_id(self) -> int:
        return await self._run(
            lambda: int(self._db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0])
        )


_SELECT_COMMAND = (
    "SELECT id, fingerprint, name, bike, state, version, received_at, timeout_at, error_code,"
    " reason, events, parameters, correlation_data, response_topic, dispatched_at, ended_at"
    " FROM command"
)
_SELECT_LOCK = (
    "SELECT bike, lock_state, state_changed_at, hardware_state, health, last_seen, dead_since,"
    " booking_state, booking_user, booking_timeout_at, battery, firmware, rssi, alarm FROM lock"
)


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def _parsed(text: str | None) -> datetime | None:
    return None if text is None else parse_time(text)


def _command(row: Any) -> CommandRecord:
    return CommandRecord(
        id=row[0],
        fingerprint=row[1],
        name=row[2],
        bike=row[3],
        state=CommandState(row[4]),
        version=row[5],
        received_at=parse_time(row[6]),
        timeout_at=_parsed(row[7]),
        error_code=ErrorCode(row[8]) if row[8] else None,
        reason=row[9],
        events=tuple(CommandEvent.model_validate(event) for event in json.loads(row[10])),
        parameters=json.loads(row[11]),
        correlation=Correlation(row[12], row[13]),
        dispatched_at=_parsed(row[14]),
        ended_at=_parsed(row[15]),
    )


def _lock(row: Any) -> LockRecord:
    return LockRecord(
        bike=row[0],
        lock_state=LockState(row[1]),
        state_changed_at=_parsed(row[2]),
        hardware_state=HardwareState(row[3]),
        health=Health(row[4]),
        last_seen=_parsed(row[5]),
        dead_since=_parsed(row[6]),
        booking=BookingState(row[7]),
        booking_user=row[8],
        booking_timeout_at=_parsed(row[9]),
        battery=row[10],
        firmware=row[11],
        rssi=row[12],
        alarm=None if row[13] is None else bool(row[13]),
    )
