"""The BLE driver against the simulator: real dbus-daemon, real bleak and bleak-retry-connector.

Every test acts only through the driver's API and the simulator's control interface.
"""

from __future__ import annotations

import asyncio
import random

import pytest

from lockgate.ble.settings import StepTimeouts
from lockgate.model import Cause, Health, LockState, Profile
from lockgate.protocol.credentials import NobondCredentials, ShareeCredentials
from lockgate.radio import (
    HealthObserved,
    Operation,
    Outcome,
    StateObserved,
    Step,
    StepReached,
)
from lockgate_sim.world import LockConfig
from tests.ble.conftest import ProgressLog, SimulatedStation, StationFactory, world

pytestmark = pytest.mark.integration

# The state a motion ends in is the result's reading, not progress.
UNLOCK_PROGRESS = [
    Step.CONNECTED,
    Step.AUTHORISED,
    Step.SENT,
    Step.RECEIVED,
    LockState.UNLOCKING,
]
LOCK_PROGRESS = [
    Step.CONNECTED,
    Step.AUTHORISED,
    Step.SENT,
    Step.RECEIVED,
    LockState.LOCKING,
]


def milestones(log: ProgressLog) -> list[object]:
    return [p.step if isinstance(p, StepReached) else p.lock_state for p in log.items]


@pytest.mark.parametrize("index", [0, 1], ids=["sharee", "nobond"])
async def test_unlock_then_lock(station: StationFactory, index: int) -> None:
    s = await station(watch=False)
    assert s.lock(index).profile is (Profile.SHAREE if index == 0 else Profile.NOBOND)
    progress = ProgressLog()
    result = await s.driver.perform(
        s.bike(index), Operation.UNLOCK, s.credentials(index), timeout_s=30, progress=progress
    )
    assert result.outcome is Outcome.OK, result.reason
    assert result.reading.lock_state is LockState.UNLOCKED
    assert milestones(progress) == UNLOCK_PROGRESS
    assert (await s.sim.control.lock(s.lock(index).name)).bolt == "unlocked"

    progress = ProgressLog()
    result = await s.driver.perform(
        s.bike(index), Operation.LOCK, s.credentials(index), timeout_s=30, progress=progress
    )
    assert result.outcome is Outcome.OK, result.reason
    assert milestones(progress) == LOCK_PROGRESS
    after = await s.sim.control.lock(s.lock(index).name)
    assert (after.bolt, after.motor_opened, after.motor_closed) == ("locked", 1, 1)
    assert (after.commanded_open, after.commanded_close) == (1, 1)


async def test_read_with_and_without_credentials(station: StationFactory) -> None:
    s = await station(watch=False)
    with_keys = await s.driver.perform(
        s.bike(0), Operation.READ, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert with_keys.outcome is Outcome.OK, with_keys.reason
    assert with_keys.reading.lock_state is LockState.LOCKED
    assert with_keys.reading.battery == (await s.sim.control.lock(s.lock(0).name)).battery
    assert with_keys.reading.firmware == s.lock(0).firmware
    assert with_keys.reading.rssi is not None

    without = await s.driver.perform(
        s.bike(1), Operation.READ, None, timeout_s=30, progress=ProgressLog()
    )
    assert without.outcome is Outcome.OK
    assert without.reading.lock_state is None
    assert without.reading.battery is not None

    refused = await s.driver.perform(
        s.bike(1), Operation.UNLOCK, None, timeout_s=30, progress=ProgressLog()
    )
    assert refused.outcome is Outcome.MISSING_CREDENTIALS
    assert refused.outcome.error_code is not None
    s.driver.set_standing_credentials(s.bike(1), s.credentials(1))
    provisioned = await s.driver.perform(
        s.bike(1), Operation.UNLOCK, None, timeout_s=30, progress=ProgressLog()
    )
    assert provisioned.outcome is Outcome.OK, provisioned.reason


async def test_thirty_operations_on_twelve_locks_with_three_slots(
    station: StationFactory,
) -> None:
    s = await station(connection_slots=3, watch=True)
    rng = random.Random(20261122)
    operations = [(rng.randrange(12), rng.choice(list(Operation))) for _ in range(30)]
    expected_state = dict.fromkeys(range(12), LockState.LOCKED)
    expected: list[LockState] = []
    for index, operation in operations:
        if operation is Operation.UNLOCK:
            expected_state[index] = LockState.UNLOCKED
        elif operation is Operation.LOCK:
            expected_state[index] = LockState.LOCKED
        expected.append(expected_state[index])

    # Operations on one lock run in the order they are issued; start each after the one before it
    # on the same lock has queued, so that order is the list's.
    async def run(index: int, operation: Operation) -> tuple[Outcome, LockState | None, str]:
        result = await s.driver.perform(
            s.bike(index), operation, s.credentials(index), timeout_s=120, progress=ProgressLog()
        )
        return result.outcome, result.reading.lock_state, result.reason

    tasks = []
    for index, operation in operations:
        tasks.append(asyncio.create_task(run(index, operation)))
        await asyncio.sleep(0)
    results = await asyncio.gather(*tasks)
    for (outcome, state, reason), want in zip(results, expected, strict=True):
        assert outcome is Outcome.OK, reason
        assert state is want
    seen_by_the_adapter = await s.sim.control.show()
    assert 1 <= seen_by_the_adapter.most_links <= 3
    assert seen_by_the_adapter.overlapping_connects == 0
    for index in range(12):
        bolt = (await s.sim.control.lock(s.lock(index).name)).bolt
        assert bolt == expected_state[index].value


async def test_closed_by_hand_while_watched(station: StationFactory) -> None:
    s = await station(time_scale=1.0, watch=True)
    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    await s.wait_for(lambda: s.bike(0) in s.driver.watched())
    before = len(s.observations)
    await s.sim.control.close_by_hand(s.lock(0).name)

    def manual() -> list[StateObserved]:
        return [
            o
            for o in s.observations[before:]
            if isinstance(o, StateObserved) and o.bike == s.bike(0)
        ]

    await s.wait_for(lambda: len(manual()) >= 2)
    assert [(o.lock_state, o.cause) for o in manual()] == [
        (LockState.LOCKING, Cause.MANUAL),
        (LockState.LOCKED, Cause.MANUAL),
    ]
    # A closed lock is no longer watched: its link is let go.
    await s.wait_for(lambda: s.bike(0) not in s.driver.watched())
    await s.wait_for(lambda: s.driver.links_in_use == 0)


async def test_a_command_takes_a_watchs_slot(station: StationFactory) -> None:
    s = await station(connection_slots=2, watch=True)
    for index in (0, 1):
        result = await s.driver.perform(
            s.bike(index),
            Operation.UNLOCK,
            s.credentials(index),
            timeout_s=30,
            progress=ProgressLog(),
        )
        assert result.outcome is Outcome.OK, result.reason
    await s.wait_for(lambda: len(s.driver.watched()) == 2)
    result = await s.driver.perform(
        s.bike(2), Operation.UNLOCK, s.credentials(2), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    assert (await s.sim.control.show()).most_links == 2  # as the adapter counted its links


async def test_wrong_keys(station: StationFactory) -> None:
    s = await station(watch=False)
    right = s.credentials(0)
    assert isinstance(right, ShareeCredentials)
    wrong = ShareeCredentials(bytes(16), right.k_u)
    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, wrong, timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.AUTH_FAILED, result.reason
    nobond = s.credentials(1)
    assert isinstance(nobond, NobondCredentials)
    wrong_id = NobondCredentials((nobond.auth_id + 1) % 256, nobond.phone_id, nobond.ltk)
    result = await s.driver.perform(
        s.bike(1), Operation.UNLOCK, wrong_id, timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.AUTH_FAILED, result.reason
    await _next_works(s, 0)
    await _next_works(s, 1)


async def test_jammed_lock(station: StationFactory) -> None:
    s = await station(watch=False)
    await s.sim.control.jam(s.lock(0).name)
    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.BLOCKED, result.reason
    assert result.outcome.error_code is not None
    assert result.outcome.error_code.value == "ERRORS.LOCK_BLOCKED"
    await _next_works(s, 0)


async def test_out_of_range(station: StationFactory) -> None:
    s = await station(watch=False, find_timeout_s=1.0, connect_timeout_s=3.0)
    await _next_works(s, 2)
    await s.sim.control.out_of_range(s.lock(2).name)
    result = await s.driver.perform(
        s.bike(2), Operation.UNLOCK, s.credentials(2), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.UNREACHABLE, result.reason
    await s.sim.control.back_in_range(s.lock(2).name)
    await _next_works(s, 2)


async def test_link_dropped_mid_session(station: StationFactory) -> None:
    s = await station(watch=False)
    await s.sim.control.set_motor_ms(s.lock(0).name, 10000)
    log = ProgressLog()

    async def drop_when_sent(progress: object) -> None:
        await log(progress)  # type: ignore[arg-type]
        if isinstance(progress, StepReached) and progress.step is Step.SENT:
            await s.sim.control.drop_link(s.lock(0).name)

    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=drop_when_sent
    )
    assert result.outcome is Outcome.LINK_LOST, result.reason
    await s.sim.control.set_motor_ms(s.lock(0).name, 1200)
    await _next_works(s, 0)


async def test_bluez_busy(station: StationFactory) -> None:
    s = await station(watch=False, connect_attempts=2)
    await s.sim.control.refuse_connects(s.lock(0).name, 5)
    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=60, progress=ProgressLog()
    )
    assert result.outcome is Outcome.BUSY, result.reason
    await s.sim.control.refuse_connects(s.lock(0).name, 0)
    await _next_works(s, 0)


async def test_full_adapter(station: StationFactory) -> None:
    s = await station(watch=False, connect_timeout_s=3.0, connect_attempts=1)
    await s.sim.control.set_slots(0)
    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=60, progress=ProgressLog()
    )
    assert result.outcome is Outcome.NO_SLOT, result.reason
    await s.sim.control.set_slots(5)
    await _next_works(s, 0)


async def test_health_follows_reachability(station: StationFactory) -> None:
    s = await station(
        watch=False,
        sync_interval_s=0.5,
        dead_after_s=3.0,
        long_dead_after_s=3600.0,
        find_timeout_s=0.5,
        connect_timeout_s=2.0,
    )
    bike = s.bike(4)

    def healths() -> list[Health]:
        seen = [
            o.health for o in s.observations if isinstance(o, HealthObserved) and o.bike == bike
        ]
        return [h for i, h in enumerate(seen) if i == 0 or seen[i - 1] is not h]

    await s.wait_for(lambda: Health.HEALTHY in healths(), timeout_s=20)
    await s.sim.control.out_of_range(s.lock(4).name)
    await s.wait_for(lambda: Health.DEAD in healths(), timeout_s=30)
    await s.sim.control.back_in_range(s.lock(4).name)
    await s.wait_for(lambda: healths()[-1] is Health.HEALTHY, timeout_s=30)
    trail = healths()
    start = trail.index(Health.HEALTHY)
    assert trail[start:] == [Health.HEALTHY, Health.UNHEALTHY, Health.DEAD, Health.HEALTHY]


async def test_unknown_locks_are_reported_not_driven(station: StationFactory) -> None:
    stranger = LockConfig(
        name="ILOCKIT-9999999",
        address="D4:12:99:99:99:99",
        profile=Profile.NOBOND,
        auth_id=1,
        phone_id="00" * 8,
        ltk="00" * 32,
    )
    s = await station(world_config=world(locks=2, extra=[stranger]), configured=2)
    await s.wait_for(lambda: "ILOCKIT-9999999" in s.driver.unknown_locks)
    assert "ILOCKIT-9999999" not in s.driver.bikes


async def _next_works(s: SimulatedStation, index: int) -> None:
    """The next operation on the lock succeeds: a failure left nothing behind."""
    result = await s.driver.perform(
        s.bike(index), Operation.READ, s.credentials(index), timeout_s=60, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    assert result.reading.lock_state is not None


async def test_a_connect_whose_cleanup_waits_on_bluez_does_not_hold_the_adapter(
    station: StationFactory,
) -> None:
    """bleak, its connect cancelled, asks BlueZ to Disconnect and awaits the answer with no
    timeout of its own; bluetoothd answers once the link is down (here: 20 s, a lock gone quiet).
    The adapter's one connection attempt is not held all that while: another lock's command,
    whose deadline comes long before that answer, connects and succeeds."""
    base = world(locks=2)
    quiet = base.locks[0].model_copy(update={"connect_ms": 20_000, "disconnect_ms": 20_000})
    config = base.model_copy(update={"locks": [quiet, base.locks[1]]})
    s = await station(
        time_scale=1.0,
        world_config=config,
        watch=False,
        connect_timeout_s=1.0,
        connect_attempts=1,
        steps=StepTimeouts(gatt_s=1.0, answer_s=5.0, motion_s=10.0),
    )
    stuck = asyncio.create_task(
        s.driver.perform(
            s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=60, progress=ProgressLog()
        )
    )
    # Until the quiet lock's connect is under way at the simulated adapter and holds it (the
    # in-process station's attempt, a white-box look: no D-Bus call says it).
    sim_station = s.sim.station
    assert sim_station is not None
    quiet_name = s.lock(0).name

    def quiet_lock_connecting() -> bool:
        attempt = sim_station.first._connecting
        return attempt is not None and attempt.lock.name == quiet_name

    await s.wait_for(quiet_lock_connecting)
    result = await s.driver.perform(
        s.bike(1), Operation.UNLOCK, s.credentials(1), timeout_s=10, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    first = await stuck
    assert first.outcome is not Outcome.OK
