"""What the store does to write less (docs/store.md, "Writes a card survives"): small pages, an
older store's pages made small once, acknowledgements removed together, and what that must not
change: nothing acknowledged is handed out again, and a reconnect past such rows does not stall."""

from __future__ import annotations

import asyncio
import sqlite3
import zlib
from pathlib import Path

import pytest

from lockgate.model import LockState
from lockgate.store import Change, Outbox, Store
from lockgate.store.database import PAGE_SIZE
from lockgate.store.packing import pack, unpack
from lockgate.store.schema import migrate
from tests.store.test_store import KEY, STATION, command, event, now


def page_size(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("PRAGMA page_size").fetchone()[0])


async def test_a_new_store_has_small_pages(tmp_path: Path) -> None:
    async with Store(tmp_path / "s.db", station=STATION, key=KEY):
        pass
    assert page_size(tmp_path / "s.db") == PAGE_SIZE == 512


async def test_a_store_with_larger_pages_is_rewritten_once_and_keeps_everything(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    async with Store(path, station=STATION, key=KEY) as store:
        await store.apply(Change(commands=(command("kept"),), events=(event(),)), at=now())
    # As an older lockgate left it: 4 KiB pages (rewritten here the way VACUUM does).
    with sqlite3.connect(path, isolation_level=None) as db:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("PRAGMA page_size=4096")
        db.execute("VACUUM")
        migrate(db)
    assert page_size(path) == 4096
    async with Store(path, station=STATION, key=KEY) as store:
        assert await store.command("kept") is not None
        assert [row.topic for row in await store.queued(after=0, limit=10)] == [
            "events",
            "commands/kept",
        ]
    assert page_size(path) == PAGE_SIZE
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_acknowledgements_are_removed_together_and_never_handed_out_again(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "s.db", station=STATION, key=KEY) as store:
        outbox = Outbox(store)
        for state in (LockState.LOCKED, LockState.UNLOCKING, LockState.UNLOCKED):
            await store.apply(Change(events=(event(state),)), at=now())
        batch = await outbox.next_batch(10)
        await outbox.acknowledge(batch[0])
        await outbox.acknowledge(batch[1])
        # Not removed yet, and not handed out again, this connection or the next.
        assert len(await store.queued(after=0, limit=10)) == 3
        assert [m.key for m in await outbox.next_batch(10)] == [batch[2].key]
        await outbox.connected()
        assert [m.key for m in await outbox.next_batch(10)] == [batch[2].key]
        assert await outbox.depth() == 1  # removed first, in one transaction
        assert [row.id for row in await store.queued(after=0, limit=10)] == [batch[2].key]


async def test_a_reconnect_past_acknowledged_rows_does_not_stall(tmp_path: Path) -> None:
    """pending() reads past rows acknowledged but not yet removed: a short batch of them is not
    taken for the end of the outbox (a drain cut twice stalled on it)."""
    async with Store(tmp_path / "s.db", station=STATION, key=KEY) as store:
        outbox = Outbox(store)
        await store.apply(Change(events=tuple(event() for _ in range(30))), at=now())
        first = await outbox.next_batch(10)
        await outbox.acknowledge(*first)
        await outbox.connected()
        handed: list[int | str] = []

        async def drain() -> None:
            async for message in outbox.pending(batch=10):
                handed.append(message.key)
                if len(handed) == 20:
                    return

        await asyncio.wait_for(drain(), 5)
        assert handed == sorted(handed)
        assert not set(handed) & {m.key for m in first}
        await outbox.close()
        assert len(await store.queued(after=0, limit=100)) == 20  # close removes the acked ones


def test_payloads_are_packed_against_the_dictionary_and_older_rows_still_read() -> None:
    document = (
        b'{"id":"c1","name":"unlock","station":"FR101","bike":"FR1540","version":1,'
        b'"state":{"value":"NOT_SENT","reason":null,"timeout_at":"2026-12-03T20:44:25.588Z"},'
        b'"error_code":null,"events":[{"name":"REQUEST_UNLOCK","value":null,'
        b'"timestamp":"2026-12-03T20:43:25.588Z"}]}'
    )
    packed = pack(document)
    assert packed[:1] == b"x"
    assert packed[1] & 0x20, "made with the preset dictionary"
    assert len(packed) * 2 < len(zlib.compress(document, 9)), "what the dictionary is for"
    assert unpack(packed) == document
    # As older stores wrote them: plain zlib, and plain JSON.
    assert unpack(zlib.compress(document, 6)) == document
    assert unpack(document) == document
    # Never shorter packed: kept as it is.
    assert pack(b"{}") == b"{}"


def test_a_payload_packed_with_an_unknown_dictionary_is_refused_not_misread() -> None:
    other = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=b"elsewhere")
    stranger = other.compress(b'{"a":"elsewhere"}') + other.flush()
    with pytest.raises(zlib.error):
        unpack(stranger)
