"""The contract's booking table as one pure function: what a command may do to a lock's booking.

No I/O and no clock: the engine passes the booking (already expired if its time has passed), the
command and its user, and gets a :class:`Decision`: refuse with a code, or which booking to write
before the lock is touched (a rental start, a booking, a cancellation), which radio operation to
run, and which booking to write once that operation succeeded (the end of a rental).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from lockgate.model import BookingChange, BookingState, CommandName, ErrorCode
from lockgate.radio import Operation


@dataclass(frozen=True, slots=True)
class Booking:
    state: BookingState = BookingState.AVAILABLE
    user: str | None = None
    timeout_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return (
            self.state is BookingState.BOOKED
            and self.timeout_at is not None
            and self.timeout_at <= now
        )


AVAILABLE = Booking()


@dataclass(frozen=True, slots=True)
class BookingStep:
    """A booking to write, and the word the ``booking`` event says it with."""

    booking: Booking
    change: BookingChange


@dataclass(frozen=True, slots=True)
class Decision:
    refusal: ErrorCode | None = None
    reason: str | None = None
    before: BookingStep | None = None  # written, durably, before the operation starts
    operation: Operation | None = None
    on_success: BookingStep | None = None  # written with the command's SUCCESS


def decide(
    command: CommandName,
    booking: Booking,
    *,
    user: str | None,
    end_rental: bool = False,
    timeout_at: datetime | None = None,
) -> Decision:
    """One cell of the booking table (mqtt-contract.md, Commands, Rules)."""
    state, holder = booking.state, booking.user
    available, booked, occupied = (
        state is BookingState.AVAILABLE,
        state is BookingState.BOOKED,
        state is BookingState.OCCUPIED,
    )
    match command:
        case CommandName.BOOK:
            if booked:
                return _refuse(ErrorCode.ALREADY_BOOKED, "the lock is booked")
            if occupied:
                return _refuse(ErrorCode.ALREADY_OCCUPIED, "the lock is in a rental")
            step = BookingStep(Booking(BookingState.BOOKED, user, timeout_at), BookingChange.BOOKED)
            return Decision(before=step)
        case CommandName.CANCEL_BOOKING:
            if available:
                return _refuse(ErrorCode.NOT_BOOKED, "the lock is not booked")
            if occupied:
                return _refuse(ErrorCode.ALREADY_OCCUPIED, "the lock is in a rental")
            if user != holder:
                return _refuse(ErrorCode.BOOKED_BY_OTHER_USER, "the lock is booked by another user")
            return Decision(before=BookingStep(AVAILABLE, BookingChange.CANCELED))
        case CommandName.FORCE_CANCEL_BOOKING:
            if available:
                return _refuse(ErrorCode.NOT_BOOKED, "the lock is not booked")
            return Decision(before=BookingStep(AVAILABLE, BookingChange.CANCELED))
        case CommandName.UNLOCK:
            if booked and user != holder:
                return _refuse(ErrorCode.BOOKED_BY_OTHER_USER, "the lock is booked by another user")
            if occupied and user != holder:
                return _refuse(ErrorCode.ALREADY_OCCUPIED, "the lock is in another user's rental")
            if occupied or user is None:
                return Decision(operation=Operation.UNLOCK)  # a pause ends, or a plain opening
            rental = BookingStep(Booking(BookingState.OCCUPIED, user), BookingChange.OCCUPIED)
            return Decision(before=rental, operation=Operation.UNLOCK)
        case CommandName.LOCK:
            if not (occupied and end_rental):
                return Decision(operation=Operation.LOCK)
            if user is not None and user != holder:
                return _refuse(
                    ErrorCode.ALREADY_OCCUPIED, "only the renter may end the rental of this lock"
                )
            return Decision(
                operation=Operation.LOCK,
                on_success=BookingStep(AVAILABLE, BookingChange.AVAILABLE),
            )
        case CommandName.FORCE_LOCK:
            return Decision(operation=Operation.LOCK)
        case CommandName.FORCE_UNLOCK:
            return Decision(operation=Operation.UNLOCK)
        case CommandName.SYNC_DEVICE:
            return Decision(operation=Operation.READ)
        case CommandName.TAKE_PHOTO | CommandName.PROVISION:
            return Decision()


def _refuse(code: ErrorCode, reason: str) -> Decision:
    return Decision(refusal=code, reason=reason)
