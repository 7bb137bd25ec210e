"""Recovery at start, on a real SQLite file closed and opened again: never a blind second motion."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from lockgate.engine import utc_now
from lockgate.model import BookingState, CommandState, ErrorCode, LockState
from lockgate.radio import Operation
from lockgate.store import CommandRecord, Store
from tests.engine.harness import SHAREE_JSON, STATION, STATION_KEY, Harness, model_locks
from tests.engine.radio_model import ModelRadio

BIKE = "FR1540"


async def restart(h: Harness, clock: Callable[[], datetime] = utc_now) -> Harness:
    return await Harness(h.path, h.radio, boot_id="boot-2", clock=clock).start()


async def test_a_sent_unlock_is_settled_by_reading_and_never_repeated(harness: Harness) -> None:
    await harness.run(command="provision", bike=BIKE, credentials=SHAREE_JSON)
    harness.radio.locks[BIKE].hold = asyncio.Event()
    await harness.send(id="u", command="unlock", bike=BIKE, user_id="U")
    await harness.radio_moved(BIKE)
    await harness.engine.stop(grace_s=0)
    await harness.close()
    await asyncio.wait_for(harness.radio.locks[BIKE].arrived.wait(), 5)  # the lock is open
    harness.radio.locks[BIKE].hold = None
    calls_before = len(harness.radio.calls)
    again = await restart(harness)
    try:
        await again.engine.wait_idle(5)
        record = await again.store.command("u")
        assert record is not None
        assert record.state is CommandState.SUCCESS
        assert record.reason == "settled after a restart: the lock is unlocked"
        assert harness.radio.unlocks(BIKE) == 1
        assert [c[:2] for c in again.radio.calls[calls_before:]] == [(BIKE, Operation.READ)]
        lock = again.engine.lock_record(BIKE)
        assert lock is not None
        assert (lock.lock_state, lock.booking, lock.booking_user) == (
            LockState.UNLOCKED,
            BookingState.OCCUPIED,
            "U",
        )
        states = [doc["state"]["value"] for doc in await again.documents("u")]
        assert states[-1] == "SUCCESS"
        assert states.count("SUCCESS") == 1
    finally:
        await again.close()


async def test_a_dispatched_command_not_yet_sent_is_read_not_run(harness: Harness) -> None:
    """Stopped after the write-ahead mark, before the lock heard anything: the unlock never runs."""
    await harness.run(command="provision", bike=BIKE, credentials=SHAREE_JSON)
    harness.radio.locks[BIKE].connecting = asyncio.Event()
    await harness.send(id="d", command="unlock", bike=BIKE)
    async with asyncio.timeout(5):
        while not harness.radio.calls:  # noqa: ASYNC110 - polls the model's record
            await asyncio.sleep(0.005)
    await harness.engine.stop(grace_s=0)
    await harness.close()
    stored = await _read(harness.path, "d")
    assert stored.state is CommandState.NOT_SENT
    assert stored.dispatched_at is not None
    harness.radio.locks[BIKE].connecting = None
    again = await restart(harness)
    try:
        await again.engine.wait_idle(5)
        record = await again.store.command("d")
        assert record is not None
        assert record.error_code is ErrorCode.INTERRUPTED
        assert harness.radio.motions == []
    finally:
        await again.close()


async def test_a_waiting_command_runs_after_a_restart_if_its_time_is_not_up(
    harness: Harness,
) -> None:
    await harness.run(command="provision", bike=BIKE, credentials=SHAREE_JSON)
    await harness.engine.stop()
    await harness.send(id="w", command="unlock", bike=BIKE, timeout_at=harness.later(30))
    await harness.send(id="w2", command="lock", bike="FR1541", credentials=SHAREE_JSON)
    await harness.close()
    again = await restart(harness)
    try:
        await again.engine.wait_idle(5)
        resumed = await again.store.command("w")
        without_key = await again.store.command("w2")
        assert resumed is not None
        assert without_key is not None
        assert resumed.state is CommandState.SUCCESS  # the provisioned credentials serve
        # A command's own credentials are never stored: after a restart it cannot run.
        assert without_key.error_code is ErrorCode.MISSING_CREDENTIALS
        assert harness.radio.unlocks(BIKE) == 1
    finally:
        await again.close()


async def test_a_waiting_command_whose_time_is_up_ends_timed_out(harness: Harness) -> None:
    await harness.engine.stop()
    await harness.send(id="old", command="unlock", bike=BIKE, credentials=SHAREE_JSON)
    await harness.close()
    late = harness.clock() + timedelta(minutes=5)
    again = await restart(harness, clock=lambda: late)
    try:
        record = await again.store.command("old")
        assert record is not None
        assert record.error_code is ErrorCode.TIMED_OUT
        assert harness.radio.calls == []
    finally:
        await again.close()


async def test_state_booking_and_seq_survive_a_restart(harness: Harness) -> None:
    await harness.run(command="unlock", bike=BIKE, user_id="U", credentials=SHAREE_JSON)
    seq = await harness.store.seq()
    await harness.close()
    again = await restart(harness)
    try:
        lock = again.engine.lock_record(BIKE)
        assert lock is not None
        assert (lock.lock_state, lock.booking, lock.booking_user) == (
            LockState.UNLOCKED,
            BookingState.OCCUPIED,
            "U",
        )
        await again.run(
            command="lock", bike=BIKE, user_id="U", end_rental=True, credentials=SHAREE_JSON
        )
        seqs = [event["seq"] for event in await again.events()]
        assert seqs == list(range(1, len(seqs) + 1))  # no gap, no repeat, across the restart
        assert seqs[-1] > seq
        document = await again.lock_document(BIKE)
        assert document["boot_id"] == "boot-2"
    finally:
        await again.close()


async def test_recovery_of_a_fresh_radio_reads_unknown_locks(tmp_path: Path) -> None:
    """A store that names no command starts clean: nothing settled, nothing run."""
    station = await Harness(tmp_path / "fresh.db", ModelRadio(*model_locks())).start()
    try:
        assert station.radio.calls == []
        recovery = await station.engine.recover()  # a second call does nothing
        assert (recovery.settled, recovery.resumed, recovery.timed_out) == ((), (), ())
    finally:
        await station.close()


async def _read(path: Path, command_id: str) -> CommandRecord:
    async with Store(path, station=STATION, key=STATION_KEY) as store:
        record = await store.command(command_id)
    assert record is not None
    return record


async def test_ids_are_forgotten_after_the_dedupe_window(harness: Harness) -> None:
    await harness.run(id="old", command="book", bike=BIKE, user_id="U")
    await harness.close()
    later = harness.clock() + timedelta(days=8)
    again = await restart(harness, clock=lambda: later)
    try:
        async with asyncio.timeout(2):
            while await again.store.command("old") is not None:  # noqa: ASYNC110 - polls the disk
                await asyncio.sleep(0.01)
        assert (await again.send(id="old", command="sync-device", bike=BIKE)).admission.value == (
            "accepted"
        )
    finally:
        await again.close()


async def test_an_end_of_rental_settled_after_a_restart_ends_the_rental(harness: Harness) -> None:
    await harness.run(command="provision", bike=BIKE, credentials=SHAREE_JSON)
    await harness.run(command="unlock", bike=BIKE, user_id="U")
    harness.radio.locks[BIKE].hold = asyncio.Event()
    await harness.send(id="end", command="lock", bike=BIKE, user_id="U", end_rental=True)
    await harness.radio_moved(BIKE, count=2)
    await harness.engine.stop(grace_s=0)
    await harness.close()
    # the bolt went home while the gateway was down
    await asyncio.wait_for(harness.radio.locks[BIKE].arrived.wait(), 5)
    harness.radio.locks[BIKE].hold = None
    again = await restart(harness)
    try:
        await again.engine.wait_idle(5)
        record = await again.store.command("end")
        assert record is not None
        assert record.state is CommandState.SUCCESS
        lock = again.engine.lock_record(BIKE)
        assert lock is not None
        assert (lock.lock_state, lock.booking) == (LockState.LOCKED, BookingState.AVAILABLE)
        assert (await again.events("booking"))[-1]["booking_state"] == "available"
        assert len(harness.radio.motions) == 2
    finally:
        await again.close()


async def test_a_command_whose_motor_still_runs_at_the_restart_ends_as_the_motion_does(
    harness: Harness,
) -> None:
    """Killed mid-motion and back before the motor stopped: the settling read sees the bolt
    moving, waits for it, and the command ends as the motion did, not INTERRUPTED."""
    await harness.run(command="provision", bike=BIKE, credentials=SHAREE_JSON)
    harness.radio.locks[BIKE].motor_s = 1.5
    await harness.send(id="u", command="unlock", bike=BIKE, user_id="U")
    await harness.radio_moved(BIKE)
    await harness.engine.stop(grace_s=0)
    await harness.close()
    assert harness.radio.locks[BIKE].state is LockState.UNLOCKING  # the motor still runs
    again = await restart(harness)
    try:
        await again.engine.wait_idle(10)
        record = await again.store.command("u")
        assert record is not None
        assert record.state is CommandState.SUCCESS, record.reason
        assert harness.radio.unlocks(BIKE) == 1
        reads = [c for c in again.radio.calls if c[:2] == (BIKE, Operation.READ)]
        assert len(reads) >= 2  # it read the moving bolt, then the bolt at rest
    finally:
        await again.close()
