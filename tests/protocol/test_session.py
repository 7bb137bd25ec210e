"""The app-side session state machine: order, failures, unprompted statuses, and garbage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lockgate.model import LockState
from lockgate.protocol import (
    AuthorisationFailed,
    Authorised,
    BatteryRead,
    Channel,
    ConfigRead,
    NobondCredentials,
    ProtocolError,
    Session,
    SessionState,
    SessionStateError,
    ShareeCredentials,
    Status,
    StatusReported,
    UnexpectedFrameError,
    UnrecognisedStatus,
)
from lockgate.protocol.errors import FrameError
from lockgate.protocol.frames import GdioFrame, chunks
from tests.protocol.lockside import NONCE, LockSide

SHAREE = ShareeCredentials(bytes(range(16)), bytes(range(1, 21)) + bytes(4))
NOBOND = NobondCredentials(7, bytes(range(8)), bytes(range(32)))
GDIO, USDIO = Channel.GDIO, Channel.USDIO


def feed(session: Session, channel: Channel, frame: bytes) -> list[object]:
    """Feed a whole frame in chunks; return the events and writes the last chunk produced."""
    outputs = [session.receive(channel, piece) for piece in chunks(frame)]
    return [*outputs[-1].events, *outputs[-1].writes]


def authorised(credentials: ShareeCredentials | NobondCredentials = SHAREE) -> Session:
    lock = LockSide(credentials)
    session = Session(credentials)
    session.start()
    feed(session, GDIO, lock.iv())
    feed(session, USDIO, lock.challenge())
    assert feed(session, GDIO, lock.status(0x30)) == [Authorised()]
    return session


@pytest.mark.parametrize("credentials", [SHAREE, NOBOND], ids=["sharee", "nobond"])
def test_whole_session_in_order(credentials: ShareeCredentials | NobondCredentials) -> None:
    lock = LockSide(credentials)
    session = Session(credentials)
    assert session.state is SessionState.IDLE
    assert session.start().frame.hex() == "01000900ec48"
    assert session.state is SessionState.AWAITING_IV

    (request,) = feed(session, GDIO, lock.iv())
    assert lock.open(request.frame).payload == b"\x04\x00"  # type: ignore[attr-defined]
    assert session.state is SessionState.AWAITING_CHALLENGE

    (answer,) = feed(session, USDIO, lock.challenge())
    assert lock.open(answer.frame).payload == NONCE + credentials.identity  # type: ignore[attr-defined]
    assert session.state is SessionState.AWAITING_AUTHORISATION

    assert feed(session, GDIO, lock.status(0x31)) == [Authorised()]
    unlock = lock.open(session.unlock().frame)
    assert (unlock.command, unlock.payload) == (0x0011, b"\x01\x00\x01")
    lock_ = lock.open(session.lock().frame)
    assert (lock_.command, lock_.payload) == (0x0011, b"\x02\x00\x02")
    assert session.counter == 2
    assert feed(session, GDIO, lock.status(0x0A)) == [StatusReported(Status.UNLOCKING)]
    assert feed(session, USDIO, lock.usdio(0x001B, b"\x2a")) == [BatteryRead(42)]
    assert feed(session, USDIO, lock.usdio(0x000F, b"\x0b\x01")) == [
        ConfigRead(LockState.UNLOCKED, alarm=True, raw_state=0x0B)
    ]


@pytest.mark.parametrize("status", [0x97, 0x96, 0x92, 0x90])
def test_refused_authorisation(status: int) -> None:
    lock = LockSide(SHAREE)
    session = Session(SHAREE)
    session.start()
    feed(session, GDIO, lock.iv())
    feed(session, USDIO, lock.challenge())
    assert feed(session, GDIO, lock.status(status)) == [AuthorisationFailed(Status(status))]
    assert session.state is SessionState.FAILED
    with pytest.raises(SessionStateError):
        session.unlock()


def test_wrong_auth_id_answered_before_the_challenge() -> None:
    session = Session(NOBOND)
    session.start()
    feed(session, GDIO, LockSide(NOBOND).iv())
    assert feed(session, GDIO, LockSide.status(0x96)) == [AuthorisationFailed(Status.WRONG_AUTH_ID)]


def test_commands_need_authorisation() -> None:
    session = Session(SHAREE)
    for command in (session.unlock, session.lock, session.read_battery, session.read_config):
        with pytest.raises(SessionStateError, match="idle"):
            command()


def test_unprompted_statuses_in_any_state() -> None:
    """A rider may push the bolt shut at any moment; the lock then indicates locking, closed."""
    session = Session(SHAREE)
    session.start()
    assert feed(session, GDIO, LockSide.status(0x01)) == [StatusReported(Status.LOCKING)]
    session = authorised()
    assert feed(session, GDIO, LockSide.status(0x02)) == [StatusReported(Status.CLOSED)]
    assert feed(session, GDIO, LockSide.status(0x9A)) == [StatusReported(Status.WRONG_COUNTER)]
    assert feed(session, GDIO, LockSide.status(0x55)) == [UnrecognisedStatus(0x55)]


def test_new_iv_resets_counter_and_authorisation() -> None:
    session = authorised()
    session.unlock()
    session.start()
    assert session.state is SessionState.AWAITING_IV
    assert session.counter == 0
    with pytest.raises(SessionStateError):
        session.lock()


def test_out_of_order_frames_are_protocol_errors() -> None:
    lock = LockSide(SHAREE)
    with pytest.raises(UnexpectedFrameError, match="before the session"):
        Session(SHAREE).receive(GDIO, lock.iv())
    session = Session(SHAREE)
    session.start()
    with pytest.raises(UnexpectedFrameError, match="authorised status"):
        feed(session, GDIO, lock.status(0x30))
    with pytest.raises(UnexpectedFrameError, match="USDIO frame while"):
        feed(session, USDIO, lock.challenge())
    session = authorised()
    with pytest.raises(UnexpectedFrameError, match="IV indicated"):
        feed(session, GDIO, lock.iv())
    with pytest.raises(UnexpectedFrameError, match="challenge while"):
        feed(session, USDIO, lock.challenge())
    with pytest.raises(UnexpectedFrameError, match="auth id"):
        feed(session, USDIO, LockSide(SHAREE, auth_id=9).usdio(0x001B, b"\x10"))
    with pytest.raises(UnexpectedFrameError, match="unknown command"):
        feed(session, USDIO, lock.usdio(0x0077))


def test_malformed_replies_are_frame_errors() -> None:
    session = authorised()
    lock = LockSide(SHAREE)
    with pytest.raises(FrameError, match="percentage"):
        feed(session, USDIO, lock.usdio(0x001B, b"\xc8"))
    with pytest.raises(FrameError, match="fewer than 2"):
        feed(session, USDIO, lock.usdio(0x000F, b"\x02"))
    with pytest.raises(FrameError, match="carries 2 bytes, not 1"):
        feed(session, GDIO, GdioFrame(0x0E, b"\x02\x00").encode())
    with pytest.raises(UnexpectedFrameError, match="unknown type"):
        feed(session, GDIO, GdioFrame(0x33, b"").encode())
    fresh = Session(SHAREE)
    fresh.start()
    feed(fresh, GDIO, lock.iv())
    with pytest.raises(FrameError, match="nonce"):
        feed(fresh, USDIO, lock.usdio(0x0004, NONCE[:16]))


def test_counter_is_exhausted_at_its_maximum() -> None:
    session = authorised()
    session._counter = 0xFFFF  # the lock would refuse a counter that wraps
    with pytest.raises(SessionStateError, match="exhausted"):
        session.unlock()


@given(
    st.lists(
        st.tuples(st.sampled_from([GDIO, USDIO]), st.binary(min_size=0, max_size=24)),
        max_size=30,
    ),
    st.integers(0, 3),
)
def test_garbage_raises_only_protocol_errors(
    garbage: list[tuple[Channel, bytes]], authorise_steps: int
) -> None:
    """Random bytes at any point of a session: never an exception other than ProtocolError."""
    lock = LockSide(SHAREE)
    session = Session(SHAREE)
    session.start()
    script = [(GDIO, lock.iv()), (USDIO, lock.challenge()), (GDIO, lock.status(0x30))]
    for channel, frame in script[:authorise_steps]:
        feed(session, channel, frame)
    for channel, chunk in garbage:
        try:
            session.receive(channel, chunk)
        except ProtocolError:
            continue
