"""Every cell of the contract's booking table, one test id per cell; pause, resume, end, expiry."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from typing import Any

import pytest

from lockgate.model import BookingState, CommandState, ErrorCode, LockState
from lockgate.radio import Operation, Outcome
from lockgate.store.packing import unpack
from tests.engine.harness import SHAREE_JSON, Harness

BIKE = "FR1540"


async def given(harness: Harness, setup: str) -> None:
    """Brings FR1540 to one column of the table: available (closed or open), booked by U,
    occupied by U and paused (closed), occupied by U and riding (open)."""
    base = {"bike": BIKE, "credentials": SHAREE_JSON}
    if setup == "available_open":
        await harness.run(command="unlock", **base)
    elif setup == "booked":
        await harness.run(command="book", bike=BIKE, user_id="U")
    elif setup in ("occupied", "riding"):
        await harness.run(command="unlock", user_id="U", **base)
        if setup == "occupied":
            await harness.run(command="lock", user_id="U", **base)
    record = harness.engine.lock_record(BIKE)
    assert record is not None
    expected = {
        "available": BookingState.AVAILABLE,
        "available_open": BookingState.AVAILABLE,
        "booked": BookingState.BOOKED,
        "occupied": BookingState.OCCUPIED,
        "riding": BookingState.OCCUPIED,
    }[setup]
    assert record.booking is expected
    harness.radio.motions.clear()


@dataclass(frozen=True)
class Cell:
    setup: str
    command: str
    fields: dict[str, Any]
    error: ErrorCode | None
    booking: BookingState
    user: str | None
    motion: Operation | None
    change: str | None = None  # the booking event the cell publishes


CELLS: dict[str, Cell] = {
    # book by V
    "book/available": Cell(
        "available", "book", {"user_id": "V"}, None, BookingState.BOOKED, "V", None, "booked"
    ),
    "book/booked": Cell(
        "booked", "book", {"user_id": "V"}, ErrorCode.ALREADY_BOOKED, BookingState.BOOKED, "U", None
    ),
    "book/occupied": Cell(
        "occupied",
        "book",
        {"user_id": "V"},
        ErrorCode.ALREADY_OCCUPIED,
        BookingState.OCCUPIED,
        "U",
        None,
    ),
    # cancel-booking by V
    "cancel-booking/available": Cell(
        "available",
        "cancel-booking",
        {"user_id": "V"},
        ErrorCode.NOT_BOOKED,
        BookingState.AVAILABLE,
        None,
        None,
    ),
    "cancel-booking/booked-by-same": Cell(
        "booked",
        "cancel-booking",
        {"user_id": "U"},
        None,
        BookingState.AVAILABLE,
        None,
        None,
        "canceled",
    ),
    "cancel-booking/booked-by-other": Cell(
        "booked",
        "cancel-booking",
        {"user_id": "V"},
        ErrorCode.BOOKED_BY_OTHER_USER,
        BookingState.BOOKED,
        "U",
        None,
    ),
    "cancel-booking/occupied": Cell(
        "occupied",
        "cancel-booking",
        {"user_id": "U"},
        ErrorCode.ALREADY_OCCUPIED,
        BookingState.OCCUPIED,
        "U",
        None,
    ),
    # force-cancel-booking
    "force-cancel-booking/available": Cell(
        "available",
        "force-cancel-booking",
        {},
        ErrorCode.NOT_BOOKED,
        BookingState.AVAILABLE,
        None,
        None,
    ),
    "force-cancel-booking/booked": Cell(
        "booked",
        "force-cancel-booking",
        {},
        None,
        BookingState.AVAILABLE,
        None,
        None,
        "canceled",
    ),
    "force-cancel-booking/occupied": Cell(
        "occupied",
        "force-cancel-booking",
        {},
        None,
        BookingState.AVAILABLE,
        None,
        None,
        "canceled",
    ),
    # unlock by V
    "unlock/available-with-user": Cell(
        "available",
        "unlock",
        {"user_id": "V"},
        None,
        BookingState.OCCUPIED,
        "V",
        Operation.UNLOCK,
        "occupied",
    ),
    "unlock/available-without-user": Cell(
        "available", "unlock", {}, None, BookingState.AVAILABLE, None, Operation.UNLOCK
    ),
    "unlock/booked-by-same": Cell(
        "booked",
        "unlock",
        {"user_id": "U"},
        None,
        BookingState.OCCUPIED,
        "U",
        Operation.UNLOCK,
        "occupied",
    ),
    "unlock/booked-by-other": Cell(
        "booked",
        "unlock",
        {"user_id": "V"},
        ErrorCode.BOOKED_BY_OTHER_USER,
        BookingState.BOOKED,
        "U",
        None,
    ),
    "unlock/booked-without-user": Cell(
        "booked", "unlock", {}, ErrorCode.BOOKED_BY_OTHER_USER, BookingState.BOOKED, "U", None
    ),
    "unlock/occupied-by-same-pause-ends": Cell(
        "occupied", "unlock", {"user_id": "U"}, None, BookingState.OCCUPIED, "U", Operation.UNLOCK
    ),
    "unlock/occupied-by-other": Cell(
        "occupied",
        "unlock",
        {"user_id": "V"},
        ErrorCode.ALREADY_OCCUPIED,
        BookingState.OCCUPIED,
        "U",
        None,
    ),
    # lock by V
    "lock/available": Cell(
        "available_open", "lock", {}, None, BookingState.AVAILABLE, None, Operation.LOCK
    ),
    "lock/booked": Cell("booked", "lock", {"user_id": "V"}, None, BookingState.BOOKED, "U", None),
    "lock/occupied-by-anyone-closes": Cell(
        "riding", "lock", {"user_id": "V"}, None, BookingState.OCCUPIED, "U", Operation.LOCK
    ),
    "lock/occupied-end-rental-by-same": Cell(
        "riding",
        "lock",
        {"user_id": "U", "end_rental": True},
        None,
        BookingState.AVAILABLE,
        None,
        Operation.LOCK,
        "available",
    ),
    "lock/occupied-end-rental-without-user": Cell(
        "riding",
        "lock",
        {"end_rental": True},
        None,
        BookingState.AVAILABLE,
        None,
        Operation.LOCK,
        "available",
    ),
    "lock/occupied-end-rental-by-other": Cell(
        "riding",
        "lock",
        {"user_id": "V", "end_rental": True},
        ErrorCode.ALREADY_OCCUPIED,
        BookingState.OCCUPIED,
        "U",
        None,
    ),
    # force-lock and force-unlock: move, booking unchanged
    "force-unlock/available": Cell(
        "available",
        "force-unlock",
        {"reason": "TESTING"},
        None,
        BookingState.AVAILABLE,
        None,
        Operation.UNLOCK,
    ),
    "force-unlock/booked": Cell(
        "booked",
        "force-unlock",
        {"reason": "MAINTENANCE"},
        None,
        BookingState.BOOKED,
        "U",
        Operation.UNLOCK,
    ),
    "force-unlock/occupied": Cell(
        "occupied",
        "force-unlock",
        {"reason": "OTHER", "comment": "rider stuck"},
        None,
        BookingState.OCCUPIED,
        "U",
        Operation.UNLOCK,
    ),
    "force-lock/available": Cell(
        "available_open", "force-lock", {}, None, BookingState.AVAILABLE, None, Operation.LOCK
    ),
    "force-lock/booked": Cell(
        "booked", "force-lock", {"user_id": "V"}, None, BookingState.BOOKED, "U", None
    ),
    "force-lock/occupied": Cell(
        "riding", "force-lock", {}, None, BookingState.OCCUPIED, "U", Operation.LOCK
    ),
}


@pytest.mark.parametrize("cell", list(CELLS.values()), ids=list(CELLS))
async def test_booking_table_cell(harness: Harness, cell: Cell) -> None:
    await given(harness, cell.setup)
    before = len(await harness.events("booking"))
    record = await harness.run(
        command=cell.command, bike=BIKE, credentials=SHAREE_JSON, **cell.fields
    )
    assert record.error_code is cell.error, record.reason
    assert record.state is (CommandState.SUCCESS if cell.error is None else CommandState.ERROR)
    lock = harness.engine.lock_record(BIKE)
    assert lock is not None
    assert (lock.booking, lock.booking_user) == (cell.booking, cell.user)
    assert [m.operation for m in harness.radio.motions] == ([cell.motion] if cell.motion else [])
    changes = [e["booking_state"] for e in (await harness.events("booking"))[before:]]
    assert changes == ([cell.change] if cell.change else [])
    document = await harness.lock_document(BIKE)
    assert document["booking"]["state"] == cell.booking.value
    assert document["booking"]["user_id"] == cell.user


async def test_rental_start_records_occupied_before_the_lock_moves(harness: Harness) -> None:
    """At the instant the motor starts, the store already holds occupied and its queued event."""
    seen: list[tuple[str, bool]] = []

    async def look_at_the_disk(bike: str, operation: Operation) -> None:
        with sqlite3.connect(harness.path) as other:
            booking = other.execute(
                "SELECT booking_state FROM lock WHERE bike = ?", (bike,)
            ).fetchone()[0]
            payloads = other.execute("SELECT payload FROM outbox WHERE topic = 'events'").fetchall()
        queued = any(
            json.loads(unpack(p))["type"] == "booking"
            and json.loads(unpack(p))["booking_state"] == "occupied"
            for (p,) in payloads
        )
        seen.append((booking, queued))

    harness.radio.locks[BIKE].before_motion = look_at_the_disk
    record = await harness.run(command="unlock", bike=BIKE, user_id="V", credentials=SHAREE_JSON)
    assert record.state is CommandState.SUCCESS
    assert seen == [("occupied", True)]


async def test_a_failed_unlock_keeps_the_recorded_rental_start(harness: Harness) -> None:
    harness.radio.locks[BIKE].failures.append(Outcome.BLOCKED)
    record = await harness.run(command="unlock", bike=BIKE, user_id="V", credentials=SHAREE_JSON)
    assert record.error_code is ErrorCode.LOCK_BLOCKED
    lock = harness.engine.lock_record(BIKE)
    assert lock is not None
    assert (lock.booking, lock.booking_user) == (BookingState.OCCUPIED, "V")


async def test_pause_resume_and_end_of_rental(harness: Harness) -> None:
    creds = {"bike": BIKE, "credentials": SHAREE_JSON}
    await harness.run(command="book", bike=BIKE, user_id="U")
    await harness.run(command="unlock", user_id="U", **creds)  # rental starts
    await harness.run(command="lock", user_id="U", **creds)  # pause
    lock = harness.engine.lock_record(BIKE)
    assert lock is not None
    assert (lock.booking, lock.lock_state) == (BookingState.OCCUPIED, LockState.LOCKED)
    assert (await harness.lock_document(BIKE))["state"]["value"] == "BOOKED"
    await harness.run(command="unlock", user_id="U", **creds)  # resume
    await harness.run(command="lock", user_id="U", end_rental=True, **creds)  # end
    lock = harness.engine.lock_record(BIKE)
    assert lock is not None
    assert (lock.booking, lock.lock_state) == (BookingState.AVAILABLE, LockState.LOCKED)
    changes = [e["booking_state"] for e in await harness.events("booking")]
    assert changes == ["booked", "occupied", "available"]
    assert harness.radio.unlocks(BIKE) == 2


async def test_end_rental_waits_for_the_lock_to_close(harness: Harness) -> None:
    """A lock that does not close leaves the rental running."""
    creds = {"bike": BIKE, "credentials": SHAREE_JSON}
    await harness.run(command="unlock", user_id="U", **creds)
    harness.radio.locks[BIKE].failures.append(Outcome.MOVED)
    record = await harness.run(command="lock", user_id="U", end_rental=True, **creds)
    assert record.error_code is ErrorCode.LOCK_MOVED
    lock = harness.engine.lock_record(BIKE)
    assert lock is not None
    assert lock.booking is BookingState.OCCUPIED


async def test_a_booking_expires_at_its_timeout_with_a_canceled_event(harness: Harness) -> None:
    record = await harness.run(
        command="book", bike=BIKE, user_id="U", timeout_at=harness.later(0.3)
    )
    assert record.state is CommandState.SUCCESS
    document = await harness.lock_document(BIKE)
    assert document["booking"]["state"] == "booked"
    assert document["booking"]["timeout_at"] is not None
    for _ in range(100):
        await asyncio.sleep(0.02)
        lock = harness.engine.lock_record(BIKE)
        assert lock is not None
        if lock.booking is BookingState.AVAILABLE:
            break
    assert lock.booking is BookingState.AVAILABLE
    last = (await harness.events("booking"))[-1]
    assert last["booking_state"] == "canceled"
    assert last["user_id"] == "U"
    # Now anyone may book it again.
    record = await harness.run(command="book", bike=BIKE, user_id="V")
    assert record.state is CommandState.SUCCESS


async def test_default_booking_lasts_an_hour(harness: Harness) -> None:
    await harness.run(command="book", bike=BIKE, user_id="U")
    lock = harness.engine.lock_record(BIKE)
    assert lock is not None
    assert lock.booking_timeout_at is not None
    remaining = (lock.booking_timeout_at - harness.clock()).total_seconds()
    assert 3590 < remaining <= 3600


async def test_the_booking_table_answers_before_a_missing_key(harness: Harness) -> None:
    await harness.run(command="book", bike=BIKE, user_id="U")
    record = await harness.run(command="unlock", bike=BIKE, user_id="V")  # and no credentials
    assert record.error_code is ErrorCode.BOOKED_BY_OTHER_USER
    assert harness.radio.calls == []


async def test_the_radio_is_told_whether_a_bike_is_booked(harness: Harness) -> None:
    """So that it may keep a booked bike's lock ready (docs/ble-driver.md): told at the start,
    after every command, and when a booking expires."""
    assert harness.radio.booked[BIKE] is False
    await harness.run(command="book", bike=BIKE, user_id="U")
    assert harness.radio.booked[BIKE] is True
    await harness.run(command="cancel-booking", bike=BIKE, user_id="U")
    assert harness.radio.booked[BIKE] is False
    await harness.run(command="book", bike=BIKE, user_id="U", timeout_at=harness.later(0.2))
    assert harness.radio.booked[BIKE] is True
    for _ in range(100):
        await asyncio.sleep(0.02)
        if not harness.radio.booked[BIKE]:
            break
    assert harness.radio.booked[BIKE] is False, "the expiry told the radio"
    await harness.run(command="book", bike=BIKE, user_id="U")
    await harness.run(command="unlock", bike=BIKE, user_id="U", credentials=SHAREE_JSON)
    assert harness.radio.booked[BIKE] is False, "rented, not booked"
