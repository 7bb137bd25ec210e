"""Properties of the pure booking table (lockgate.engine.booking.decide), over every input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from lockgate.engine import Booking, decide
from lockgate.model import BookingChange, BookingState, CommandName
from lockgate.radio import Operation

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
USERS = st.sampled_from([None, "U", "V"])
BOOKINGS = st.one_of(
    st.just(Booking()),
    st.builds(
        Booking,
        st.just(BookingState.BOOKED),
        st.sampled_from(["U", "V"]),
        st.just(NOW + timedelta(hours=1)),
    ),
    st.builds(Booking, st.just(BookingState.OCCUPIED), st.sampled_from(["U", "V"])),
)


@given(
    command=st.sampled_from(list(CommandName)),
    booking=BOOKINGS,
    user=USERS,
    end_rental=st.booleans(),
)
def test_the_table_never_contradicts_itself(
    command: CommandName, booking: Booking, user: str | None, end_rental: bool
) -> None:
    decision = decide(
        command, booking, user=user, end_rental=end_rental, timeout_at=NOW + timedelta(hours=1)
    )
    if decision.refusal is not None:
        # A refusal changes nothing and moves nothing.
        assert (decision.before, decision.operation, decision.on_success) == (None, None, None)
        assert decision.reason
        return
    if command in (CommandName.FORCE_LOCK, CommandName.FORCE_UNLOCK, CommandName.SYNC_DEVICE):
        assert decision.before is None
        assert decision.on_success is None  # booking unchanged
    if decision.before is not None and decision.before.change is BookingChange.OCCUPIED:
        # A rental starts only for the one who unlocks, and only with an unlock.
        assert decision.operation is Operation.UNLOCK
        assert decision.before.booking.user == user is not None
    if decision.operation is Operation.UNLOCK and booking.state is not BookingState.AVAILABLE:
        # Nobody opens a lock someone else holds, except by force.
        assert command is CommandName.FORCE_UNLOCK or booking.user == user
    if decision.on_success is not None:
        assert command is CommandName.LOCK
        assert end_rental
        assert booking.state is BookingState.OCCUPIED


def test_an_expired_booking_is_seen_as_expired() -> None:
    booking = Booking(BookingState.BOOKED, "U", NOW)
    assert booking.expired(NOW)
    assert not booking.expired(NOW - timedelta(milliseconds=1))
    assert not Booking(BookingState.OCCUPIED, "U").expired(NOW + timedelta(days=1))
