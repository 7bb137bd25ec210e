"""Ledger.conclude, the one place a command that asked the radio ends: pure, so shown directly,
for a command that ran and for one settled by a read (the engine tests show both end to end)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from lockgate.contract.request import CommandRequest
from lockgate.engine.booking import AVAILABLE, Booking, BookingStep
from lockgate.engine.ledger import Ledger, Settling
from lockgate.model import (
    BookingChange,
    BookingState,
    CommandName,
    CommandState,
    ErrorCode,
    LockState,
)
from lockgate.radio import Operation, Outcome, Reading, Result
from lockgate.store.records import CommandRecord, LockRecord
from tests.engine.harness import STATION

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
BIKE = "FR1540"


def request(name: CommandName, **fields: object) -> CommandRequest:
    return CommandRequest(
        id="c1",
        name=name,
        bike=BIKE,
        timeout_at=NOW + timedelta(minutes=1),
        fingerprint="f",
        **fields,  # type: ignore[arg-type]
    )


def sent(name: CommandName) -> CommandRecord:
    return CommandRecord(
        id="c1",
        fingerprint="f",
        name=name.value,
        bike=BIKE,
        state=CommandState.SENT,
        version=3,
        received_at=NOW - timedelta(seconds=5),
    )


def rented(lock_state: LockState) -> LockRecord:
    return LockRecord(BIKE, lock_state=lock_state, booking=BookingState.OCCUPIED, booking_user="U")


def test_a_lock_that_ran_and_ended_the_rental() -> None:
    ended = BookingStep(AVAILABLE, BookingChange.AVAILABLE)
    concluded = Ledger(STATION).conclude(
        rented(LockState.UNLOCKED),
        sent(CommandName.LOCK),
        request(CommandName.LOCK, user_id="U", end_rental=True),
        Result(Outcome.OK, "ok", Reading(battery=80)),
        NOW,
        operation=Operation.LOCK,
        on_success=ended,
    )
    command = concluded.command
    assert (command.state, command.version, command.ended_at) == (CommandState.SUCCESS, 4, NOW)
    assert [e.name for e in command.events] == ["STATE_LOCKED", "RESPONSE_LOCK", "STATE_AVAILABLE"]
    assert (concluded.record.lock_state, concluded.record.booking) == (
        LockState.LOCKED,
        BookingState.AVAILABLE,
    )
    assert [e.type for e in concluded.events] == ["lock_state", "battery", "booking"]


def test_a_blocked_unlock_leaves_the_bolt_and_the_booking() -> None:
    concluded = Ledger(STATION).conclude(
        rented(LockState.LOCKED),
        sent(CommandName.UNLOCK),
        request(CommandName.UNLOCK, user_id="U"),
        Result(Outcome.BLOCKED, "the lock answered 0x0c"),
        NOW,
        operation=Operation.UNLOCK,
        on_success=BookingStep(Booking(), BookingChange.AVAILABLE),  # for a success only
    )
    command = concluded.command
    assert (command.state, command.error_code) == (CommandState.ERROR, ErrorCode.LOCK_BLOCKED)
    assert [e.name for e in command.events] == ["RESPONSE_UNLOCK"]
    assert concluded.record == rented(LockState.LOCKED)
    assert concluded.events == []


def test_a_lock_settled_by_a_read_ends_the_rental_as_if_it_ran() -> None:
    concluded = Ledger(STATION).conclude(
        rented(LockState.UNLOCKED),
        sent(CommandName.LOCK),
        request(CommandName.LOCK, user_id="U", end_rental=True),
        Result(Outcome.OK, "read", Reading(LockState.LOCKED)),
        NOW,
        settling=Settling(),
    )
    command = concluded.command
    assert command.state is CommandState.SUCCESS
    assert command.reason == "settled after a restart: the lock is locked"
    assert [e.name for e in command.events] == ["STATE_LOCKED", "STATE_AVAILABLE"]
    assert concluded.record.booking is BookingState.AVAILABLE
    assert [(e.type, e.cause) for e in concluded.events] == [
        ("lock_state", "startup"),
        ("booking", "command"),
    ]
