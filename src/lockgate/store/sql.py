"""The store's SQL: every statement, and the rows they read turned back into records.

Plain functions on a :class:`sqlite3.Connection`, run only on the store's database thread
(:mod:`lockgate.store.database`) and composed into transactions by the async API
(:mod:`lockgate.store.store`). The tables are those of :mod:`lockgate.store.schema`: ``command``
(the receipt and every change of a command, which is also the dedupe record of ids), ``lock``,
``credentials`` (sealed), ``outbox`` (queued messages), ``retained`` (latest-state documents with a
generation) and ``counter`` (the station's ``seq`` and the outbox's dropped total).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from lockgate.contract.documents import CommandEvent
from lockgate.contract.times import format_time, parse_time
from lockgate.model import (
    BookingState,
    CommandState,
    ErrorCode,
    HardwareState,
    Health,
    LockState,
    MessageKind,
)
from lockgate.store.database import BadRow
from lockgate.store.packing import pack, unpack
from lockgate.store.records import CommandRecord, Correlation, LockRecord

_R = TypeVar("_R")


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


# --- writes ------------------------------------------------------------------------------------


def _text(stored: str | bytes) -> str:
    """A JSON column: text as rows before packing had it, or :func:`pack`'s bytes."""
    return stored if isinstance(stored, str) else unpack(stored).decode()


def put_command(db: sqlite3.Connection, command: CommandRecord) -> None:
    # Rewritten at every step of the command, and most of its row: kept packed, as payloads are.
    events = pack(
        json.dumps(
            [event.model_dump(mode="json") for event in command.events], separators=(",", ":")
        ).encode()
    )
    if command.ended_at is None and command.version > 1:
        # A step of a running command: an UPDATE that names neither ended_at nor any column of
        # an index leaves every index page alone (the upsert's SET names ended_at, which moves
        # the command's entry in the partial indexes even when it stays NULL).
        updated = db.execute(
            "UPDATE command SET state = ?, version = ?, error_code = ?, reason = ?, events = ?,"
            " dispatched_at = ? WHERE id = ? AND ended_at IS NULL",
            (
                command.state.value,
                command.version,
                command.error_code.value if command.error_code else None,
                command.reason,
                events,
                _time(command.dispatched_at),
                command.id,
            ),
        )
        if updated.rowcount == 1:
            return
    db.execute(
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
            events,
            json.dumps(command.parameters),
            command.correlation.correlation_data,
            command.correlation.response_topic,
            format_time(command.received_at),
            _time(command.dispatched_at),
            _time(command.ended_at),
        ),
    )


def mark_dispatched(db: sqlite3.Connection, command: CommandRecord) -> None:
    db.execute(
        "UPDATE command SET dispatched_at = ? WHERE id = ?",
        (_time(command.dispatched_at), command.id),
    )


def put_lock(db: sqlite3.Connection, lock: LockRecord) -> None:
    db.execute(
        # An upsert, not INSERT OR REPLACE: a replace deletes the row and inserts it under a new
        # rowid, which rewrites the primary key's index page too (docs/store.md, writes).
        "INSERT INTO lock (bike, lock_state, state_changed_at, hardware_state,"
        " health, last_seen, dead_since, booking_state, booking_user, booking_timeout_at,"
        " battery, firmware, rssi, alarm) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (bike) DO UPDATE SET lock_state = excluded.lock_state,"
        " state_changed_at = excluded.state_changed_at, hardware_state = excluded.hardware_state,"
        " health = excluded.health, last_seen = excluded.last_seen,"
        " dead_since = excluded.dead_since, booking_state = excluded.booking_state,"
        " booking_user = excluded.booking_user, booking_timeout_at = excluded.booking_timeout_at,"
        " battery = excluded.battery, firmware = excluded.firmware, rssi = excluded.rssi,"
        " alarm = excluded.alarm",
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


def put_credentials(db: sqlite3.Connection, bike: str, profile: str, sealed: bytes) -> None:
    db.execute(
        "INSERT OR REPLACE INTO credentials (bike, profile, sealed) VALUES (?, ?, ?)",
        (bike, profile, sealed),
    )


def delete_credentials(db: sqlite3.Connection, bike: str) -> None:
    db.execute("DELETE FROM credentials WHERE bike = ?", (bike,))


def put_retained(db: sqlite3.Connection, topic: str, payload: bytes) -> None:
    db.execute(
        "INSERT INTO retained (topic, payload, generation, acked_generation)"
        " VALUES (?, ?, 1, 0) ON CONFLICT (topic) DO UPDATE SET payload = excluded.payload,"
        " generation = retained.generation + 1",
        (topic, pack(payload)),
    )


def queue(
    db: sqlite3.Connection,
    message_id: int,
    kind: MessageKind,
    topic: str,
    payload: bytes,
    *,
    correlation: Correlation,
    at: datetime,
) -> None:
    """Appends one message to the outbox under ``message_id`` (above every id the outbox held
    since the store opened: :attr:`Store._next_outbox_id`)."""
    db.execute(
        "INSERT INTO outbox (id, kind, topic, payload, correlation_data, response_topic,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            message_id,
            kind.value,
            topic,
            pack(payload),
            correlation.correlation_data,
            correlation.response_topic,
            format_time(at),
        ),
    )


def counter(db: sqlite3.Connection, name: str) -> int:
    return int(db.execute("SELECT value FROM counter WHERE name = ?", (name,)).fetchone()[0])


def set_counter(db: sqlite3.Connection, name: str, value: int) -> None:
    db.execute("UPDATE counter SET value = ? WHERE name = ?", (value, name))


def outbox_over(db: sqlite3.Connection, bound: int) -> int:
    """How many messages the outbox holds beyond ``bound`` (0 if none)."""
    # The id span bounds the depth from above and costs two index probes; only count the
    # rows (a scan) when the span says the bound may be passed.
    span = db.execute(
        "SELECT COALESCE((SELECT MAX(id) FROM outbox) - (SELECT MIN(id) FROM outbox) + 1, 0)"
    ).fetchone()[0]
    if span <= bound:
        return 0
    return max(outbox_depth(db) - bound, 0)


def drop_oldest(db: sqlite3.Connection, kinds: Sequence[MessageKind], count: int) -> int:
    """Deletes the ``count`` oldest messages of ``kinds``; how many it deleted."""
    marks = ", ".join("?" for _ in kinds)
    return int(
        db.execute(
            f"DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE kind IN ({marks})"  # noqa: S608 - only "?" marks are formatted in
            " ORDER BY id LIMIT ?)",
            (*(kind.value for kind in kinds), count),
        ).rowcount
    )


def acknowledge(
    db: sqlite3.Connection, queued: Sequence[int], retained: Sequence[tuple[str, int]]
) -> None:
    db.executemany("DELETE FROM outbox WHERE id = ?", [(message_id,) for message_id in queued])
    db.executemany(
        "UPDATE retained SET acked_generation = ? WHERE topic = ? AND acked_generation < ?",
        [(generation, topic, generation) for topic, generation in retained],
    )


def unacknowledge_retained(db: sqlite3.Connection) -> None:
    db.execute("UPDATE retained SET acked_generation = 0")


# A refused request is the only kind of command that is final at version 1: an accepted one is
# stored NOT_SENT at version 1 and every later change raises the version. The partial index
# ``command_refused`` (migration 2) serves both statements below.
_REFUSED = "version = 1 AND ended_at IS NOT NULL"


def prune_refusals(db: sqlite3.Connection, ended_before: datetime) -> int:
    return int(
        db.execute(
            f"DELETE FROM command WHERE {_REFUSED} AND ended_at < ?",  # noqa: S608 - constant
            (format_time(ended_before),),
        ).rowcount
    )


def bound_refusals(db: sqlite3.Connection, keep: int) -> int:
    """Forgets the oldest refusals beyond the newest ``keep``."""
    return int(
        db.execute(
            f"DELETE FROM command WHERE arrival IN (SELECT arrival FROM command WHERE {_REFUSED}"  # noqa: S608 - constant
            " ORDER BY arrival DESC LIMIT -1 OFFSET ?)",
            (keep,),
        ).rowcount
    )


def prune_commands(db: sqlite3.Connection, ended_before: datetime) -> int:
    return int(
        db.execute(
            "DELETE FROM command WHERE ended_at IS NOT NULL AND ended_at < ?",
            (format_time(ended_before),),
        ).rowcount
    )


# --- reads -------------------------------------------------------------------------------------


_SELECT_COMMAND = (
    "SELECT id, fingerprint, name, bike, state, version, received_at, timeout_at, error_code,"
    " reason, events, parameters, correlation_data, response_topic, dispatched_at, ended_at"
    " FROM command"
)
_SELECT_LOCK = (
    "SELECT bike, lock_state, state_changed_at, hardware_state, health, last_seen, dead_since,"
    " booking_state, booking_user, booking_timeout_at, battery, firmware, rssi, alarm FROM lock"
)


def command(db: sqlite3.Connection, command_id: str) -> CommandRecord | None:
    rows = db.execute(_SELECT_COMMAND + " WHERE id = ?", (command_id,)).fetchall()
    return _read("command", _command, rows[0]) if rows else None


def unfinished_commands(db: sqlite3.Connection) -> list[CommandRecord]:
    rows = db.execute(_SELECT_COMMAND + " WHERE ended_at IS NULL ORDER BY arrival").fetchall()
    return [_read("command", _command, row) for row in rows]


def locks(db: sqlite3.Connection) -> dict[str, LockRecord]:
    return {row[0]: _read("lock", _lock, row) for row in db.execute(_SELECT_LOCK).fetchall()}


def _read(table: str, reader: Callable[[Any], _R], row: Any) -> _R:
    """A row turned into its record, or :class:`BadRow` naming the row (never its values)."""
    try:
        return reader(row)
    except (ValueError, TypeError, KeyError, IndexError) as err:
        key = row[0] if isinstance(row[0], str) and len(row[0]) <= 64 else "?"
        raise BadRow(f"the {table} row {key!r} cannot be read ({type(err).__name__})") from err


def sealed_credentials(db: sqlite3.Connection) -> list[tuple[str, str, bytes]]:
    rows = db.execute("SELECT bike, profile, sealed FROM credentials").fetchall()
    return [(bike, profile, bytes(sealed)) for bike, profile, sealed in rows]


def queued(db: sqlite3.Connection, *, after: int, limit: int) -> list[Stored]:
    rows = db.execute(
        "SELECT id, kind, topic, payload, correlation_data, response_topic FROM outbox"
        " WHERE id > ? ORDER BY id LIMIT ?",
        (after, limit),
    ).fetchall()
    return [
        Stored(row[0], MessageKind(row[1]), row[2], unpack(row[3]), Correlation(row[4], row[5]))
        for row in rows
    ]


def retained_topics(db: sqlite3.Connection) -> list[str]:
    return [row[0] for row in db.execute("SELECT topic FROM retained ORDER BY topic")]


def provisioned_bikes(db: sqlite3.Connection) -> list[str]:
    return [row[0] for row in db.execute("SELECT bike FROM credentials ORDER BY bike")]


def unacknowledged_retained(db: sqlite3.Connection) -> list[StoredRetained]:
    rows = db.execute(
        "SELECT topic, payload, generation FROM retained"
        " WHERE generation > acked_generation ORDER BY topic"
    ).fetchall()
    return [StoredRetained(row[0], unpack(row[1]), row[2]) for row in rows]


def outbox_depth(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])


def last_queued_id(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(MAX(id), 0) FROM outbox").fetchone()[0])


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def oldest_queued_at(db: sqlite3.Connection) -> datetime | None:
    row = db.execute("SELECT created_at FROM outbox ORDER BY id LIMIT 1").fetchone()
    return None if row is None else _parsed(row[0])


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
        events=tuple(CommandEvent.model_validate(event) for event in json.loads(_text(row[10]))),
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
