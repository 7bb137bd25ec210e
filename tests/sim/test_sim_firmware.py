"""The simulated lock's firmware, alone: byte-exact against the vectors, and every refusal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.protocol import Channel, NobondCredentials, ShareeCredentials
from lockgate.protocol.credentials import Credentials
from lockgate.protocol.frames import GdioFrame, LockAction
from lockgate.protocol.session import Authorised, Session, SessionEvent, StatusReported
from lockgate.protocol.status import Status
from lockgate_sim.firmware import (
    FAILURE_DROP_S,
    MAX_LINKS,
    Bolt,
    Effect,
    Indication,
    LinkDropped,
    Lock,
    NoFreeLink,
)

VECTORS = json.loads((Path(__file__).parent.parent / "data" / "ilockit-sessions.json").read_text())


def _credentials(session: dict[str, Any]) -> Credentials:
    c = session["credentials"]
    if session["profile"] == "sharee":
        return ShareeCredentials(bytes.fromhex(c["K_seed_hex"]), bytes.fromhex(c["K_u_hex"]))
    return NobondCredentials(c["auth_id"], bytes.fromhex(c["phone_id"]), bytes.fromhex(c["ltk"]))


def _feeder(*values: bytes) -> Any:
    queue: Iterator[bytes] = iter(values)

    def random_bytes(n: int) -> bytes:
        value = next(queue)
        assert len(value) == n
        return value

    return random_bytes


def _lock(credentials: Credentials, *randoms: bytes, **kwargs: Any) -> Lock:
    return Lock(
        name="ILOCKIT-1" if isinstance(credentials, NobondCredentials) else "ISHAREIT-1",
        address="FC:3C:00:2A:2A:DD",
        credentials=credentials,
        random_bytes=_feeder(*randoms),
        battery=87,
        **kwargs,
    )


def _indications(effects: list[Effect]) -> list[tuple[Channel, str]]:
    return [(e.channel, e.chunk.hex()) for e in effects if isinstance(e, Indication)]


@pytest.mark.parametrize("session", VECTORS["sessions"], ids=lambda s: s["profile"])
def test_lock_answers_the_vectors_byte_for_byte(session: dict[str, Any]) -> None:
    lock = _lock(
        _credentials(session), bytes.fromhex(session["iv"]), bytes.fromhex(session["nonce"])
    )
    link = lock.connect()
    lock.set_indications(link, Channel.GDIO, on=True)
    lock.set_indications(link, Channel.USDIO, on=True)
    now = 0.0
    got: list[tuple[Channel, str]] = []
    expected: list[tuple[Channel, str]] = []
    for step in session["steps"]:
        channel = Channel(step["characteristic"])
        if step["from"] == "lock":
            expected += [(channel, chunk) for chunk in step["chunks"]]
            continue
        for chunk in step["chunks"]:
            got += _indications(lock.write(link, channel, bytes.fromhex(chunk), now))
        now += 10.0  # let any motion end before the app's next step
        got += _indications(lock.advance(now))
    assert got == expected
    assert lock.bolt is Bolt.CLOSED


def _authorised(lock: Lock, credentials: Credentials) -> tuple[int, Session]:
    link = lock.connect()
    lock.set_indications(link, Channel.GDIO, on=True)
    lock.set_indications(link, Channel.USDIO, on=True)
    session = Session(credentials)
    pending = [session.start()]
    while pending:
        write = pending.pop(0)
        for chunk in write.chunks:
            for effect in lock.write(link, write.channel, chunk, 0.0):
                assert isinstance(effect, Indication)
                out = session.receive(effect.channel, effect.chunk)
                pending += out.writes
    return link, session


SHAREE = _credentials(VECTORS["sessions"][0])
NOBOND = _credentials(VECTORS["sessions"][1])


def _statuses(effects: list[Effect]) -> list[int]:
    out = []
    for e in effects:
        if isinstance(e, Indication) and e.channel is Channel.GDIO:
            frame = GdioFrame.decode(e.chunk)
            out.append(frame.payload[0])
    return out


def _random(n: int) -> bytes:
    return bytes(range(n))


def test_wrong_identity_gets_auth_failed_and_the_link_dropped() -> None:
    lock = Lock(
        name="ISHAREIT-1",
        address="FC:3C:00:2A:2A:DD",
        credentials=SHAREE,
        random_bytes=_random,
    )
    assert isinstance(SHAREE, ShareeCredentials)
    wrong = ShareeCredentials(bytes(16), SHAREE.k_u)
    link = lock.connect()
    lock.set_indications(link, Channel.GDIO, on=True)
    lock.set_indications(link, Channel.USDIO, on=True)
    session = Session(wrong)
    pending = [session.start()]
    statuses: list[int] = []
    while pending:
        write = pending.pop(0)
        for chunk in write.chunks:
            for effect in lock.write(link, write.channel, chunk, 1.0):
                assert isinstance(effect, Indication)
                if effect.channel is Channel.GDIO and effect.chunk[0] == 0x0E:
                    statuses += _statuses([effect])
                else:
                    pending += session.receive(effect.channel, effect.chunk).writes
    assert statuses == [Status.AUTH_FAILED]
    assert lock.advance(1.0 + FAILURE_DROP_S / 2) == []
    assert lock.advance(1.0 + FAILURE_DROP_S) == [LinkDropped(link, "authorisation failed")]
    assert lock.links == ()


@pytest.mark.parametrize(
    ("credentials", "status"),
    [
        (ShareeCredentials(bytes(16), bytes(24)), Status.CRC_ERROR),
        (NobondCredentials(7, bytes(8), bytes(32)), Status.WRONG_AUTH_ID),
    ],
    ids=["wrong-key", "wrong-auth-id"],
)
def test_wrong_keys_are_refused(credentials: Credentials, status: Status) -> None:
    lock = Lock(
        name="ILOCKIT-1", address="FC:3C:00:2A:2A:DD", credentials=NOBOND, random_bytes=_random
    )
    if isinstance(credentials, ShareeCredentials):
        assert isinstance(NOBOND, NobondCredentials)
        credentials = NobondCredentials(NOBOND.auth_id, NOBOND.phone_id, bytes(32))
    link = lock.connect()
    lock.set_indications(link, Channel.GDIO, on=True)
    lock.set_indications(link, Channel.USDIO, on=True)
    session = Session(credentials)
    (iv,) = lock.write(link, Channel.GDIO, session.start().frame, 0.0)
    assert isinstance(iv, Indication)
    (challenge,) = session.receive(Channel.GDIO, iv.chunk).writes
    effects: list[Effect] = []
    for chunk in challenge.chunks:
        effects += lock.write(link, Channel.USDIO, chunk, 0.0)
    assert _statuses(effects) == [status]
    assert lock.advance(5.0) == [LinkDropped(link, "authorisation failed")]


def test_motion_jam_counter_and_reads() -> None:
    lock = Lock(
        name="ILOCKIT-1",
        address="FC:3C:00:2A:2A:DD",
        credentials=NOBOND,
        random_bytes=_random,
        motor_ms=1200,
        battery=15,
    )
    link, session = _authorised(lock, NOBOND)
    assert session.state.value == "authorised"
    unlock = session.unlock()
    effects = lock.write(link, Channel.USDIO, unlock.frame, 0.0)
    assert _statuses(effects) == [Status.UNLOCKING]
    assert lock.advance(1.1) == []
    assert _statuses(lock.advance(1.2)) == [Status.OPEN, Status.BATTERY_LOW]
    assert lock.bolt is Bolt.OPEN
    assert lock.battery == 15  # 14.9 rounds up
    # the same frame again (a replay, counter 1) is refused
    assert lock.view().bolt == "unlocked"
    assert _statuses(lock.write(link, Channel.USDIO, unlock.frame, 2.0)) == [Status.WRONG_COUNTER]
    lock.jam()
    assert _statuses(lock.write(link, Channel.USDIO, session.lock().frame, 2.0)) == [Status.LOCKING]
    assert _statuses(lock.advance(3.2)) == [Status.LOCKING_BLOCKED]
    assert lock.bolt is Bolt.OPEN
    effects = lock.write(link, Channel.USDIO, session.lock().frame, 4.0)
    effects += lock.advance(5.2)
    assert _statuses(effects) == [Status.LOCKING, Status.CLOSED, Status.BATTERY_LOW]
    assert lock.battery == 15  # 15 - 0.3 = 14.7
    # reads
    events: list[SessionEvent] = []
    for write in (session.read_battery(), session.read_config()):
        for e in lock.write(link, write.channel, write.frame, 6.0):
            assert isinstance(e, Indication)
            events += session.receive(e.channel, e.chunk).events
    assert [type(e).__name__ for e in events] == ["BatteryRead", "ConfigRead"]


def test_a_new_iv_ends_the_authorisation() -> None:
    lock = Lock(
        name="ILOCKIT-1", address="FC:3C:00:2A:2A:DD", credentials=NOBOND, random_bytes=_random
    )
    link, session = _authorised(lock, NOBOND)
    unlock = session.unlock()
    lock.write(link, Channel.GDIO, session.start().frame, 0.0)
    assert _statuses(lock.write(link, Channel.USDIO, unlock.frame, 0.0)) == [Status.NOT_AUTHORISED]


def test_close_by_hand_reaches_every_indicating_link() -> None:
    lock = Lock(
        name="ILOCKIT-1",
        address="FC:3C:00:2A:2A:DD",
        credentials=NOBOND,
        random_bytes=_random,
        bolt=Bolt.OPEN,
    )
    first, _ = _authorised(lock, NOBOND)
    second = lock.connect()  # subscribed to nothing: sees nothing
    effects = lock.close_by_hand(0.0) + lock.advance(1.0)
    assert {e.link for e in effects if isinstance(e, Indication)} == {first}
    assert _statuses(effects) == [Status.LOCKING, Status.CLOSED]
    assert second in lock.links
    assert lock.close_by_hand(2.0) == []


def test_at_most_three_links() -> None:
    lock = Lock(
        name="ILOCKIT-1", address="FC:3C:00:2A:2A:DD", credentials=NOBOND, random_bytes=_random
    )
    links = [lock.connect() for _ in range(MAX_LINKS)]
    with pytest.raises(NoFreeLink):
        lock.connect()
    lock.disconnect(links[0])
    lock.connect()
    assert len(lock.power_cycle()) == MAX_LINKS
    assert lock.links == ()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=20), max_size=12))
def test_garbage_never_crashes_the_lock(writes: list[bytes]) -> None:
    lock = Lock(
        name="ILOCKIT-1", address="FC:3C:00:2A:2A:DD", credentials=NOBOND, random_bytes=_random
    )
    link = lock.connect()
    lock.set_indications(link, Channel.GDIO, on=True)
    lock.set_indications(link, Channel.USDIO, on=True)
    for i, chunk in enumerate(writes):
        channel = Channel.GDIO if i % 2 else Channel.USDIO
        for effect in lock.write(link, channel, chunk, float(i)):
            assert not isinstance(effect, Indication) or len(effect.chunk) <= 20
        lock.advance(float(i))
    assert lock.bolt is Bolt.CLOSED
    _ = (Authorised, StatusReported, LockAction)


def test_alarm_moving_bike_and_a_failed_sensor() -> None:
    lock = Lock(
        name="ILOCKIT-1",
        address="FC:3C:00:2A:2A:DD",
        credentials=NOBOND,
        random_bytes=_random,
        bolt=Bolt.OPEN,
    )
    link, session = _authorised(lock, NOBOND)
    assert _statuses(lock.set_alarm(True)) == [Status.ALARM_ON]
    assert lock.set_alarm(True) == []
    events: list[SessionEvent] = []
    for e in lock.write(link, Channel.USDIO, session.read_config().frame, 0.0):
        assert isinstance(e, Indication)
        events += session.receive(e.channel, e.chunk).events
    assert [(type(e).__name__, getattr(e, "alarm", None)) for e in events] == [("ConfigRead", True)]
    assert _statuses(lock.set_alarm(False)) == [Status.ALARM_OFF]

    lock.set_bike_moving(True)
    assert _statuses(lock.write(link, Channel.USDIO, session.lock().frame, 0.0)) == [
        Status.LOCK_MOVED
    ]
    assert lock.bolt is Bolt.OPEN
    assert lock.motion is None
    lock.set_bike_moving(False)

    lock.set_sensor_fault(True)
    effects = lock.write(link, Channel.USDIO, session.lock().frame, 1.0) + lock.advance(9.0)
    assert _statuses(effects) == [Status.LOCKING, Status.UNKNOWN]
    events = []
    for e in lock.write(link, Channel.USDIO, session.read_config().frame, 9.0):
        assert isinstance(e, Indication)
        events += session.receive(e.channel, e.chunk).events
    assert [getattr(e, "raw_state", None) for e in events] == [0x0F]
