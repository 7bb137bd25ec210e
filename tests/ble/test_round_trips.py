"""The driver makes no more ATT round trips per command than the lock protocol needs.

Each ATT round trip costs a BLE connection interval (docs/simulator.md, "The link layer"), so a
stray read, a second subscription or a write the protocol does not ask for lengthens every
rider's wait for the bolt. The simulator counts, per lock and per link, every round trip that
crosses the link; these tests run commands of each profile through the real driver (over real
bleak and the simulator's BlueZ, with a link layer of 30 ms connection intervals) and assert the
counts equal exactly what docs/protocol.md's session needs. Adding a round trip to the driver
fails them; so does losing one.

What one session needs (docs/protocol.md, "A session, step by step"; ATT MTU 23, so at most 20
bytes per write or indication, each 20-byte chunk of a frame written with response):

- turning on indications of GDIO and USDIO: 2 writes of a CCCD;
- "request IV" on GDIO, 6 bytes: 1 write; the IV frame (type, len, 16-byte IV, CRC: 20 bytes):
  1 indication;
- the challenge request on USDIO (inner frame 8 bytes, padded to 16, + auth_id and wire_len:
  18 bytes): 1 write; the lock's challenge (inner_len 38, padded to 48, wire_len 50): 3
  indications (20 + 20 + 10);
- the answer: nobond's wire_len 50, 3 writes; sharee's wire_len 66, 4 writes (20+20+20+6);
- "authorised" (a status frame, 5 bytes): 1 indication;
- lock control (inner frame 9 bytes, padded to 16, wire 18 bytes): 1 write; the lock's motion
  statuses, unlocking then open (or locking then closed): 2 indications.

So an unlock or a lock takes 2 CCCD writes, 7 writes (sharee) or 6 (nobond), 7 indications and
no read: 16 round trips (sharee) or 15 (nobond). bluetoothd adds its own on connecting: the MTU
exchange (1) and, at the first connect through an adapter, GATT discovery (25, the lock's table
at MTU 23); a later connect uses its cache (0).
"""

from __future__ import annotations

import pytest

from lockgate.model import Cause
from lockgate.radio import Operation, Outcome, Step, StepReached
from lockgate_sim.bluez.gatt_service import DISCOVERY
from lockgate_sim.linklayer import AttCounts
from lockgate_sim.world import AdapterConfig, WorldConfig
from tests.ble.conftest import ProgressLog, SimulatedStation, StationFactory, _lock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONNECTION_INTERVAL_MS = 30
CCCD_WRITES = 2
"""Indications on for GDIO and USDIO."""
INDICATIONS_PER_MOTION = 1 + 3 + 1 + 2
"""IV, challenge (3 chunks), authorised, the two motion statuses."""
WRITES_PER_MOTION = {"sharee": 1 + 1 + 4 + 1, "nobond": 1 + 1 + 3 + 1}
"""Request IV, challenge request, the answer (4 or 3 chunks), lock control."""
ROUND_TRIPS_PER_MOTION = {"sharee": 16, "nobond": 15}
DISCOVERY_ROUND_TRIPS = 25
"""The lock's attribute table at MTU 23 (docs/simulator.md): 4 + 1 + 5 + 11 + 4."""


def _world() -> WorldConfig:
    return WorldConfig.model_validate(
        {
            "adapter": AdapterConfig(connection_interval_ms=CONNECTION_INTERVAL_MS),
            "lock": [_lock(0), _lock(1)],
        }
    )


async def _run(s: SimulatedStation, index: int, operation: Operation) -> AttCounts:
    """One operation on a fresh link; the round trips of that link."""
    name = s.lock(index).name
    links = (await s.sim.control.radio_counts(name)).links
    result = await s.driver.perform(
        s.bike(index), operation, s.credentials(index), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    counts = await s.sim.control.radio_counts(name)
    assert counts.links == links + 1, "one link per operation (no watch kept it)"
    return counts.link


def _expected(profile: str, *, discovery: int) -> dict[str, int]:
    return {
        "writes": WRITES_PER_MOTION[profile],
        "reads": 0,
        "indications": INDICATIONS_PER_MOTION,
        "cccd_writes": CCCD_WRITES,
        "mtu_exchanges": 1,
        "discovery": discovery,
        "lost_packets": 0,
    }


def _measured(counts: AttCounts) -> dict[str, int]:
    return {key: getattr(counts, key) for key in _expected("sharee", discovery=0)}


@pytest.mark.parametrize(("index", "profile"), [(0, "sharee"), (1, "nobond")])
async def test_an_unlock_and_a_lock_make_only_the_round_trips_the_protocol_needs(
    station: StationFactory, index: int, profile: str
) -> None:
    assert DISCOVERY.total == DISCOVERY_ROUND_TRIPS
    s = await station(world_config=_world(), watch=False)
    assert str(s.lock(index).profile) == profile

    unlock = await _run(s, index, Operation.UNLOCK)
    assert _measured(unlock) == _expected(profile, discovery=DISCOVERY_ROUND_TRIPS)
    protocol = unlock.writes + unlock.reads + unlock.indications + unlock.cccd_writes
    assert protocol == ROUND_TRIPS_PER_MOTION[profile]
    assert unlock.round_trips == protocol + 1 + DISCOVERY_ROUND_TRIPS
    # With no loss, every round trip cost one connection interval, no more.
    assert unlock.intervals == unlock.round_trips

    lock = await _run(s, index, Operation.LOCK)
    assert _measured(lock) == _expected(profile, discovery=0), "the second connect uses the cache"
    assert lock.round_trips == ROUND_TRIPS_PER_MOTION[profile] + 1
    assert lock.intervals == lock.round_trips


@pytest.mark.parametrize(("index", "profile"), [(0, "sharee"), (1, "nobond")])
async def test_a_read_makes_only_its_session_and_two_gatt_reads(
    station: StationFactory, index: int, profile: str
) -> None:
    """A read (a sync, the first read at start): the session with "read lock config" in place of
    lock control (1 write; its answer, 18 bytes on the wire, 1 indication), then the standard
    Battery Level and Firmware Revision characteristics read once each (2 reads)."""
    s = await station(world_config=_world(), watch=False)
    read = await _run(s, index, Operation.READ)
    expected = _expected(profile, discovery=DISCOVERY_ROUND_TRIPS)
    expected["indications"] = INDICATIONS_PER_MOTION - 2 + 1
    expected["reads"] = 2
    assert _measured(read) == expected
    assert read.intervals == read.round_trips


async def test_a_command_on_a_watched_link_makes_only_lock_control_and_its_statuses(
    station: StationFactory,
) -> None:
    """An unlock leaves the lock open, so the driver keeps the link for a watch; the lock
    command that follows takes that link over: no connect, no MTU exchange, no discovery, no
    CCCD write, nothing read while the link was only watched, and no new session: the lock
    keeps the link's authorisation until a new IV (docs/protocol.md), so the driver takes up the
    link's authorised session with the same credentials. What is left is what the protocol
    needs: the lock control write and the two motion statuses."""
    s = await station(world_config=_world())
    name = s.lock(0).name
    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    unlocked = await s.sim.control.radio_counts(name)
    result = await s.driver.perform(
        s.bike(0), Operation.LOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    locked = await s.sim.control.radio_counts(name)
    assert locked.links == unlocked.links == 1, "the watched link was taken over"
    assert _added(locked.total, unlocked.total) == {
        **_expected("sharee", discovery=0),
        "writes": 1,
        "indications": 2,
        "cccd_writes": 0,
        "mtu_exchanges": 0,
    }


async def test_a_kept_session_the_lock_ended_is_authorised_again_once(
    station: StationFactory,
) -> None:
    """The lock ends the kept link's authorisation on its own (the link stays up): the command
    is answered 0x99 and not taken, so the driver authorises once more and sends it again: one
    command taken by the lock, the command's round trips plus one session's. The link is then
    authorised again for the command after."""
    s = await station(world_config=_world())
    name = s.lock(0).name
    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    await s.sim.control.deauthorise(name)
    before = await s.sim.control.radio_counts(name)
    taken = (await s.sim.control.lock(name)).commanded_open
    progress = ProgressLog()
    # Unlock the open lock again: the lock answers with its position, the motor stays still,
    # and the link stays kept (the lock is open).
    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=progress
    )
    assert result.outcome is Outcome.OK, result.reason
    assert (await s.sim.control.lock(name)).commanded_open == taken + 1, "taken once"
    after = await s.sim.control.radio_counts(name)
    assert after.links == before.links == 1
    assert _added(after.total, before.total) == {
        **_expected("sharee", discovery=0),
        "writes": 1 + WRITES_PER_MOTION["sharee"],  # refused lock control, a session, again
        "indications": 1 + INDICATIONS_PER_MOTION - 1,  # 0x99, a session, the position
        "cccd_writes": 0,
        "mtu_exchanges": 0,
    }
    steps = [p.step for p in progress.items if isinstance(p, StepReached)]
    assert steps.count(Step.RECEIVED) == 1, "the refusal is no answer to the command"

    result = await s.driver.perform(
        s.bike(0), Operation.LOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    locked = await s.sim.control.radio_counts(name)
    assert _added(locked.total, after.total)["writes"] == 1, "the new session was kept"


def _added(after: AttCounts, before: AttCounts) -> dict[str, int]:
    return {
        key: getattr(after, key) - getattr(before, key) for key in _expected("sharee", discovery=0)
    }


async def test_a_booked_bike_kept_ready_unlocks_with_lock_control_alone(
    station: StationFactory,
) -> None:
    """``keep_booked_ready``: a booked bike's lock is connected and authorised with its
    provisioned credentials before the command, so the unlock makes only the lock control write
    and the two motion statuses; once no longer booked and closed, its link goes."""
    s = await station(world_config=_world(), keep_booked_ready=True)
    name, bike = s.lock(0).name, s.bike(0)
    s.driver.set_standing_credentials(bike, s.credentials(0))
    s.driver.keep_ready(bike, booked=True)
    await s.wait_for(lambda: bike in s.driver.watched())
    ready = await s.sim.control.radio_counts(name)
    assert ready.links == 1
    assert (ready.link.writes, ready.link.indications) == (6, 5), "connected and authorised"
    result = await s.driver.perform(
        bike, Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    unlocked = await s.sim.control.radio_counts(name)
    assert unlocked.links == 1
    assert _added(unlocked.total, ready.total) == {
        **_expected("sharee", discovery=0),
        "writes": 1,
        "indications": 2,
        "cccd_writes": 0,
        "mtu_exchanges": 0,
    }
    s.driver.keep_ready(bike, booked=False)  # rented now: watched while open
    result = await s.driver.perform(
        bike, Operation.LOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    await s.wait_for(lambda: bike not in s.driver.watched() and s.driver.links_in_use == 0)
    assert (await s.sim.control.lock(name)).links == 0


async def test_kept_ready_is_off_by_default(station: StationFactory) -> None:
    s = await station(world_config=_world())
    bike = s.bike(0)
    s.driver.set_standing_credentials(bike, s.credentials(0))
    s.driver.keep_ready(bike, booked=True)
    result = await s.driver.read(bike, Cause.SYNC, timeout_s=30)  # the driver at work meanwhile
    assert result.outcome is Outcome.OK, result.reason
    await s.wait_for(lambda: s.driver.links_in_use == 0)
    assert not s.driver.watched()


async def test_kept_ready_ends_with_the_booking(station: StationFactory) -> None:
    s = await station(world_config=_world(), keep_booked_ready=True)
    bike = s.bike(0)
    s.driver.set_standing_credentials(bike, s.credentials(0))
    s.driver.keep_ready(bike, booked=True)
    await s.wait_for(lambda: bike in s.driver.watched())
    s.driver.keep_ready(bike, booked=False)  # the booking was cancelled: the lock is closed
    await s.wait_for(lambda: s.driver.links_in_use == 0)
    assert (await s.sim.control.lock(s.lock(0).name)).links == 0
