"""The store on a real SQLite file: migrations, seq, the outbox and its bound, retained docs."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from lockgate.contract.documents import ErrorDocument, LockStateEvent
from lockgate.contract.station import RegisteredLock, Station
from lockgate.model import CommandState, ErrorCode, LockState, MessageKind, Profile
from lockgate.store import (
    SCHEMA_VERSION,
    Change,
    CommandRecord,
    LockRecord,
    Outbox,
    SchemaError,
    StationKey,
    Store,
)
from lockgate.store.packing import unpack
from lockgate.store.schema import MIGRATIONS, _statements

STATION = Station(
    "FR101",
    "47.976634",
    "7.825490",
    (
        RegisteredLock(
            "FR1540", "ISHAREIT-2200540", "00000000-0000-0000-0000-fc3c002a2add", Profile.SHAREE
        ),
    ),
    "boot-1",
)
KEY = StationKey.from_bytes(bytes(range(32)))


def now() -> datetime:
    return datetime.now(UTC)


def event(state: LockState = LockState.LOCKED) -> LockStateEvent:
    return LockStateEvent(
        event_id=str(uuid.uuid4()),
        station="FR101",
        boot_id="boot-1",
        seq=0,
        bike="FR1540",
        at=now(),
        latitude="47.976634",
        longitude="7.825490",
        lock_state=state,
        previous=LockState.UNKNOWN,
    )


def command(command_id: str, state: CommandState = CommandState.NOT_SENT) -> CommandRecord:
    return CommandRecord(
        id=command_id,
        fingerprint="f",
        name="unlock",
        bike="FR1540",
        state=state,
        version=1,
        received_at=now(),
        timeout_at=now(),
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store(tmp_path / "s.db", station=STATION, key=KEY, max_outbox=50) as opened:
        yield opened


async def test_migrates_an_empty_database_and_reopens_it(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    async with Store(path, station=STATION, key=KEY) as store:
        assert store.schema_found == 0
        await store.apply(Change(commands=(command("a"),)), at=now())
    async with Store(path, station=STATION, key=KEY) as store:
        assert store.schema_found == SCHEMA_VERSION
        assert (await store.command("a")) is not None
    with sqlite3.connect(path) as db:
        versions = [row[0] for row in db.execute("SELECT version FROM schema_version")]
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert mode == "wal"


async def test_migration_4_keeps_the_outbox_and_its_ids_never_go_back(tmp_path: Path) -> None:
    """Migration 4 rebuilds the outbox without AUTOINCREMENT (docs/store.md, writes): its rows
    stay, ids and order unchanged; the store gives ids above them, and never one again within a
    run, even once the outbox was emptied (as AUTOINCREMENT did)."""
    path = tmp_path / "v3.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT)")
        for version, script in enumerate(MIGRATIONS[:3], start=1):
            for statement in _statements(script):
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
        for message_id in (5, 9):
            db.execute(
                "INSERT INTO outbox (id, kind, topic, payload, created_at)"
                " VALUES (?, 'event', 'events', ?, '2026-12-03T10:00:00.000Z')",
                (message_id, f'{{"n":{message_id}}}'.encode()),
            )
    async with Store(path, station=STATION, key=KEY) as store:
        assert store.schema_found == 3
        assert [(m.id, m.payload) for m in await store.queued(after=0, limit=10)] == [
            (5, b'{"n":5}'),
            (9, b'{"n":9}'),
        ]
        outbox = Outbox(store)
        await store.apply(Change(events=(event(),)), at=now())
        assert [m.id for m in await store.queued(after=0, limit=10)] == [5, 9, 10]
        await outbox.acknowledge(*await outbox.next_batch(10))
        await outbox.remove_acknowledged()
        assert await store.outbox_depth() == 0
        await store.apply(Change(events=(event(),)), at=now())
        assert [m.id for m in await store.queued(after=0, limit=10)] == [11]
    with sqlite3.connect(path) as db:
        (table,) = db.execute("SELECT sql FROM sqlite_schema WHERE name = 'outbox'").fetchone()
        sequences = db.execute("SELECT name FROM sqlite_sequence").fetchall()
        indexes = db.execute("SELECT name FROM sqlite_schema WHERE tbl_name = 'outbox'").fetchall()
    assert "AUTOINCREMENT" not in table
    assert ("outbox",) not in sequences
    assert ("outbox_kind",) in indexes


async def test_a_database_from_a_newer_lockgate_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    async with Store(path, station=STATION, key=KEY):
        pass
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    store = Store(path, station=STATION, key=KEY)
    with pytest.raises(SchemaError):
        await store.open()
    await store.close()


async def test_seq_rises_by_one_and_goes_on_across_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "seq.db"
    seqs: list[int] = []
    for _ in range(3):
        async with Store(path, station=STATION, key=KEY) as store:
            applied = await store.apply(Change(events=(event(), event())), at=now())
            seqs += applied.seqs
    assert seqs == [1, 2, 3, 4, 5, 6]
    async with Store(path, station=STATION, key=KEY) as store:
        stored = [json.loads(m.payload)["seq"] for m in await store.queued(after=0, limit=100)]
    assert stored == seqs


async def test_a_change_is_one_transaction(store: Store) -> None:
    """A change that fails midway leaves nothing: no record, no message, no seq used."""
    broken = LockRecord("FR1540", battery="not a number")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="battery"):
        await store.apply(
            Change(commands=(command("t"),), events=(event(),), locks=(broken,)), at=now()
        )
    assert await store.command("t") is None
    assert await store.outbox_depth() == 0
    assert await store.seq() == 0
    assert await store.locks() == {}


async def test_the_outbox_bound_drops_the_oldest_events_and_says_how_many(store: Store) -> None:
    await store.apply(Change(commands=(command("keep"),)), at=now())
    for _ in range(80):
        await store.apply(Change(events=(event(),)), at=now())
    await store.apply(
        Change(
            errors=(
                ErrorDocument(
                    error_message="x",
                    status_code=400,
                    correlation_id="c",
                    error_code=ErrorCode.BAD_REQUEST,
                ),
            )
        ),
        at=now(),
    )
    queued = await store.queued(after=0, limit=1000)
    assert len(queued) <= store.max_outbox
    assert queued[0].kind is MessageKind.COMMAND  # the command document is kept
    events = [json.loads(m.payload) for m in queued if m.kind is MessageKind.EVENT]
    health = [e for e in events if e["type"] == "health"]
    assert health
    assert all(e["bike"] is None and e["dropped"] > 0 for e in health)
    total = health[-1]["dropped_total"]
    # Earlier health events may be dropped in turn; the running total still counts every loss.
    assert total >= sum(e["dropped"] for e in health)
    # Every seq that is missing was announced as dropped: no silent loss.
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))
    missing = set(range(1, seqs[-1] + 1)) - set(seqs)
    assert 0 < len(missing) <= total


async def test_the_outbox_hands_out_oldest_first_and_forgets_only_on_ack(store: Store) -> None:
    outbox = Outbox(store)
    await store.apply(Change(commands=(command("a"),), events=(event(),)), at=now())
    await store.apply(Change(events=(event(LockState.UNLOCKED),)), at=now())
    batch = [m for m in await outbox.next_batch(10) if not m.retain]
    # In a change, its events are queued before its command documents.
    assert [m.topic for m in batch] == ["events", "commands/a", "events"]
    assert all(m.qos == 1 for m in batch)
    await outbox.acknowledge(batch[0])
    again = [m for m in await outbox.next_batch(10) if not m.retain]
    assert [m.key for m in again] == [m.key for m in batch[1:]]


async def test_events_waiting_at_a_reconnect_are_marked_replayed(store: Store) -> None:
    outbox = Outbox(store)
    await store.apply(Change(events=(event(),)), at=now())
    await outbox.connected()
    await store.apply(Change(events=(event(LockState.UNLOCKED),)), at=now())
    flags = [json.loads(m.payload)["replayed"] for m in await outbox.next_batch(10)]
    assert flags == [True, False]


async def test_retained_documents_are_latest_state_and_come_again_after_reconnect(
    store: Store,
) -> None:
    outbox = Outbox(store)
    await store.apply(Change(locks=(LockRecord("FR1540", lock_state=LockState.LOCKED),)), at=now())
    await store.apply(
        Change(locks=(LockRecord("FR1540", lock_state=LockState.UNLOCKED),)), at=now()
    )
    await outbox.set_retained("status", b'{"state": "online"}')
    retained = [m for m in await outbox.next_batch(10) if m.retain]
    assert [m.topic for m in retained] == ["locks/FR1540", "status"]
    assert json.loads(retained[0].payload)["lock_state"] == "unlocked"  # only the newest
    await outbox.acknowledge(*retained)
    assert [m for m in await outbox.next_batch(10) if m.retain] == []
    await outbox.connected()
    assert {m.topic for m in await outbox.next_batch(10) if m.retain} == {"locks/FR1540", "status"}


async def test_pending_waits_for_new_messages(store: Store) -> None:
    outbox = Outbox(store)
    received: list[str] = []

    async def link() -> None:
        async for message in outbox.pending():
            received.append(message.topic)
            await outbox.acknowledge(message)
            if len(received) == 2:
                return

    task = asyncio.create_task(link())
    await asyncio.sleep(0.05)
    assert received == []
    await store.apply(Change(commands=(command("p"),), events=(event(),)), at=now())
    await asyncio.wait_for(task, 2)
    assert received == ["events", "commands/p"]
    assert await outbox.depth() == 0


def error_document(correlation_id: str) -> ErrorDocument:
    return ErrorDocument(
        error_message="refused",
        status_code=400,
        correlation_id=correlation_id,
        error_code=ErrorCode.BAD_REQUEST,
    )


async def test_an_answer_without_its_own_sync_is_committed_before_apply_returns(
    store: Store,
) -> None:
    await store.apply(Change(errors=(error_document("a"),)), at=now(), durable=False)
    # Another connection (another process, as after a crash of this one) reads it at once.
    with sqlite3.connect(store.path) as other:
        payloads = [unpack(row[0]) for row in other.execute("SELECT payload FROM outbox")]
    assert [json.loads(p)["correlation_id"] for p in payloads] == ["a"]


async def test_an_answer_without_sync_that_gives_out_a_seq_is_synced(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's own syncs happen in C; the store's explicit one (Database.sync) goes through
    # os.fsync, counted here and still done.
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(descriptor)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    for _ in range(store.max_outbox - 1):
        await store.apply(Change(events=(event(),)), at=now())
    seq = await store.seq()
    quiet = await store.apply(Change(errors=(error_document("a"),)), at=now(), durable=False)
    assert quiet.dropped == 0
    assert synced == []
    # Past the bound: events dropped, announced by a health event whose seq must never be given
    # out twice, so this transaction is synced before apply returns.
    loud = await store.apply(Change(errors=(error_document("b"),)), at=now(), durable=False)
    assert loud.dropped > 0
    assert await store.seq() == seq + 1
    assert len(synced) == 1
