"""A store that cannot write in the middle of a command: nothing false is said, nothing is lost.

The disk fills through SQLite's own ceiling (``Store(max_size_bytes=…)``, ``max_page_count``):
a write past it fails with SQLITE_FULL, the same error and the same code path in SQLite and in the
store as a full filesystem, and it needs no root, no mount and no wrapper around the store, so it
runs wherever the tests run. Space comes back the way it does on a station: the MQTT link
acknowledges the outbox and its rows are deleted. The locks are the engine tests' model; "no lock
moves twice" is its record of motions.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from lockgate.contract.documents import HealthEvent
from lockgate.contract.stamps import stamp
from lockgate.model import Admission, Cause, CommandState, ErrorCode, LockState
from lockgate.radio import StateObserved
from lockgate.store import Change, StoreError
from tests.engine.harness import SHAREE_JSON, Harness
from tests.engine.radio_model import ModelRadio

BIKE = "FR1540"
CEILING = 512 * 1024


async def fill(harness: Harness) -> int:
    """Queues filler events until the store refuses even the smallest; how many landed. Every
    later write that queues a message (each of a command's does) then needs a page it cannot get."""
    landed = 0
    for batch, size in ((8, 2000), (1, 2000), (1, 200), (1, 0)):
        for n in itertools.count():
            event = HealthEvent(
                **stamp(harness.station, harness.clock(), bike=None),
                dropped=0,
                dropped_total=0,
                reason=f"filler {n} " + "x" * size,
            )
            try:
                await harness.store.apply(Change(events=(event,) * batch), at=harness.clock())
            except StoreError:
                break
            landed += batch
    return landed


async def free(harness: Harness) -> None:
    """What the MQTT link does once the broker has everything: acknowledge, so rows go."""
    rows = await harness.store.queued(after=0, limit=1_000_000)
    await harness.store.acknowledge([row.id for row in rows], [])


def refused_end(harness: Harness, command_id: str) -> asyncio.Event:
    """Set once the store refused the write that would end ``command_id``: the worker has tried
    to conclude, failed, and waits for the store (what a fixed sleep used to hope for)."""
    refused = asyncio.Event()
    apply = harness.store.apply

    async def watched(*changes: Change, **options: Any) -> Any:
        try:
            return await apply(*changes, **options)
        except StoreError:
            commands = [c for change in changes for c in change.commands]
            if any(c.id == command_id and c.state.final for c in commands):
                refused.set()
            raise

    harness.store.apply = watched  # type: ignore[method-assign]
    return refused


@pytest.fixture
async def full(tmp_path: Path, radio: ModelRadio) -> Harness:
    station = await Harness(tmp_path / "lockgate.db", radio, max_size_bytes=CEILING).start()
    await station.run(command="provision", bike=BIKE, credentials=SHAREE_JSON)
    return station


async def test_disk_full_mid_unlock_is_settled_by_a_read_once_it_writes(full: Harness) -> None:
    harness = full
    try:
        lock = harness.radio.locks[BIKE]
        lock.connecting = asyncio.Event()  # the session waits here, after the write-ahead mark
        concluded = refused_end(harness, "u1")
        submission = await harness.send(id="u1", command="unlock", bike=BIKE, user_id="U")
        assert submission.admission is Admission.ACCEPTED
        async with asyncio.timeout(5):
            while not harness.radio.active:  # noqa: ASYNC110 - polls the model's record
                await asyncio.sleep(0.005)
        assert await fill(harness) > 0
        lock.connecting.set()  # every write of the command from here on fails: the disk is full
        await harness.radio_moved(BIKE)
        await lock.arrived.wait()
        await asyncio.wait_for(concluded.wait(), 15)  # tried, failed, waiting for the store
        stored = await harness.store.command("u1")
        assert stored is not None
        assert not stored.state.final, "a final state was written while the disk was full"
        assert lock.state is LockState.UNLOCKED

        before = await harness.store.queued(after=0, limit=1_000_000)
        await free(harness)
        await harness.engine.wait_idle(15)
        after = await harness.store.queued(after=0, limit=1_000_000)

        record = await harness.store.command("u1")
        assert record is not None
        assert record.state is CommandState.SUCCESS, record
        assert record.reason == "settled after a store failure: the lock is unlocked"
        assert harness.radio.unlocks(BIKE) == 1
        memory = harness.engine.lock_record(BIKE)
        assert memory is not None
        assert memory.lock_state is LockState.UNLOCKED
        published = [json.loads(row.payload) for row in {r.id: r for r in before + after}.values()]
        documents = [d for d in published if d.get("id") == "u1"]
        # The receipt, the rental start (written ahead), the end: versions 1..n without a gap.
        assert [d["version"] for d in documents] == list(range(1, record.version + 1))
        assert [d["state"]["value"] for d in documents] == ["NOT_SENT", "NOT_SENT", "SUCCESS"]
        states = [d["lock_state"] for d in published if d.get("type") == "lock_state"]
        assert states[-1] == "unlocked"
        assert states.count("unlocked") == 1, "the move is announced exactly once"
    finally:
        await harness.close()


async def test_disk_full_at_the_receipt_raises_and_the_resent_request_runs_once(
    full: Harness,
) -> None:
    harness = full
    try:
        await fill(harness)
        with pytest.raises(StoreError, match=str(harness.path)):
            await harness.send(id="u2", command="unlock", bike=BIKE, user_id="U")
        assert await harness.store.command("u2") is None
        assert harness.radio.unlocks(BIKE) == 0

        await free(harness)  # the broker delivers the unacknowledged message again
        record = await harness.run(id="u2", command="unlock", bike=BIKE, user_id="U")
        assert record.state is CommandState.SUCCESS
        assert harness.radio.unlocks(BIKE) == 1
    finally:
        await harness.close()


async def test_an_observation_on_a_full_disk_is_written_when_seen_again(full: Harness) -> None:
    """A manual close seen while the disk is full does not stop the engine; the lock's record
    stays as the disk has it, so the next read of the lock writes the change and its event."""
    harness = full
    try:
        await fill(harness)
        seen = StateObserved(BIKE, LockState.UNLOCKED, Cause.SYNC, harness.clock())
        await harness.engine.observe(seen)  # logged, not raised
        memory = harness.engine.lock_record(BIKE)
        assert memory is not None
        assert memory.lock_state is LockState.LOCKED

        await free(harness)
        await harness.engine.observe(seen)
        memory = harness.engine.lock_record(BIKE)
        assert memory is not None
        assert memory.lock_state is LockState.UNLOCKED
        assert [e["lock_state"] for e in await harness.events("lock_state")][-1:] == ["unlocked"]
    finally:
        await harness.close()


async def test_a_queued_command_behind_a_failed_one_runs_once_when_the_store_writes(
    full: Harness,
) -> None:
    """An unlock at the lock when the disk fills, a booking queued behind it: the unlock is
    settled by a read, the booking (which never touched the lock) runs from the start, once."""
    harness = full
    try:
        lock = harness.radio.locks[BIKE]
        lock.hold = asyncio.Event()  # the motion waits here after it started
        concluded = refused_end(harness, "u3")
        await harness.send(id="u3", command="unlock", bike=BIKE, user_id="U")
        await harness.radio_moved(BIKE)
        await harness.send(id="b3", command="book", bike=BIKE, user_id="V")
        await fill(harness)
        lock.hold.set()
        await lock.arrived.wait()
        await asyncio.wait_for(concluded.wait(), 15)  # the unlock's end failed: it is retried
        waiting = await harness.store.command("b3")
        assert waiting is not None
        assert waiting.state is CommandState.NOT_SENT

        before = await harness.store.queued(after=0, limit=1_000_000)
        await free(harness)
        await harness.engine.wait_idle(15)
        after = await harness.store.queued(after=0, limit=1_000_000)

        unlock = await harness.store.command("u3")
        booking = await harness.store.command("b3")
        assert unlock is not None
        assert booking is not None
        assert unlock.state is CommandState.SUCCESS
        assert (booking.state, booking.error_code) == (
            CommandState.ERROR,
            ErrorCode.ALREADY_OCCUPIED,
        )
        assert harness.radio.unlocks(BIKE) == 1
        published = [json.loads(row.payload) for row in {r.id: r for r in before + after}.values()]
        versions = [d["version"] for d in published if d.get("id") == "b3"]
        assert versions == [1, 2], "the booking's receipt, then its one end"
    finally:
        await harness.close()
