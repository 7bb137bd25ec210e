"""The lock's turn shared by operations and its watch, under timeouts, cancellation and load.

Regression tests for sequences a review found: an operation that gives up while waiting for the
lock's turn, a second operation arriving while the first runs on a watched lock, syncs when every
slot is a watch's, and a caller that cancels an operation mid-motion. Each checks what a station
would see: the manual close still mirrored, no false health, no slot held by nobody.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from lockgate.ble.settings import StepTimeouts
from lockgate.model import Cause, Health, LockState
from lockgate.radio import (
    HealthObserved,
    Operation,
    Outcome,
    Progress,
    StateObserved,
    Step,
    StepReached,
)
from tests.ble.conftest import ProgressLog, SimulatedStation, StationFactory

pytestmark = pytest.mark.integration


async def manual_close_is_mirrored(s: SimulatedStation, index: int) -> None:
    """The lock is watched: a rider closing it reaches the driver's observations."""
    bike = s.bike(index)
    await s.wait_for(lambda: bike in s.driver.watched())
    before = len(s.observations)
    await s.sim.control.close_by_hand(s.lock(index).name)

    def manual() -> list[tuple[LockState, Cause]]:
        return [
            (o.lock_state, o.cause)
            for o in s.observations[before:]
            if isinstance(o, StateObserved) and o.bike == bike
        ]

    await s.wait_for(lambda: len(manual()) >= 2)
    assert manual() == [(LockState.LOCKING, Cause.MANUAL), (LockState.LOCKED, Cause.MANUAL)]
    await s.wait_for(lambda: s.driver.links_in_use == 0)


def healths(s: SimulatedStation, bike: str) -> list[Health]:
    return [o.health for o in s.observations if isinstance(o, HealthObserved) and o.bike == bike]


async def test_giving_up_on_a_busy_lock_changes_nothing(station: StationFactory) -> None:
    s = await station(time_scale=0.5, watch=True)
    bike = s.bike(0)
    await s.sim.control.set_motor_ms(s.lock(0).name, 4000)
    connected = asyncio.Event()

    async def holding_the_turn(progress: Progress) -> None:
        if isinstance(progress, StepReached) and progress.step is Step.CONNECTED:
            connected.set()

    slow = asyncio.create_task(
        s.driver.perform(
            bike, Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=holding_the_turn
        )
    )
    async with asyncio.timeout(10):  # a wait limit: the unlock holds the lock's turn from here
        await connected.wait()
    impatient = await s.driver.perform(
        bike, Operation.READ, s.credentials(0), timeout_s=0.3, progress=ProgressLog()
    )
    assert impatient.outcome is Outcome.TIMED_OUT
    assert "busy" in impatient.reason
    assert (await slow).outcome is Outcome.OK
    assert Health.UNHEALTHY not in healths(s, bike)  # the lock answered all along
    await manual_close_is_mirrored(s, 0)


async def test_a_second_operation_during_the_first_on_a_watched_lock(
    station: StationFactory,
) -> None:
    s = await station(time_scale=1.0, watch=True)
    bike = s.bike(0)
    first = await s.driver.perform(
        bike, Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert first.ok, first.reason
    await s.wait_for(lambda: bike in s.driver.watched())
    later: list[asyncio.Task[object]] = []

    async def start_another(progress: Progress) -> None:
        if isinstance(progress, StepReached) and progress.step is Step.AUTHORISED and not later:
            later.append(
                asyncio.create_task(
                    s.driver.perform(
                        bike, Operation.READ, s.credentials(0), timeout_s=30, progress=ProgressLog()
                    )
                )
            )

    read = await s.driver.perform(
        bike, Operation.READ, s.credentials(0), timeout_s=30, progress=start_another
    )
    assert read.ok, read.reason
    await asyncio.gather(*later)
    await manual_close_is_mirrored(s, 0)


async def test_syncs_do_not_wait_behind_watches(station: StationFactory) -> None:
    s = await station(
        time_scale=0.2,
        watch=True,
        connection_slots=1,
        sync_interval_s=0.5,
        dead_after_s=3.0,
        connect_timeout_s=1.0,
        steps=StepTimeouts(gatt_s=1.0, answer_s=0.5, motion_s=5.0),
        configured=2,
    )
    idle, open_ = s.bike(1), s.bike(0)
    assert (await s.driver.read(idle, Cause.STARTUP, timeout_s=30)).ok
    unlocked = await s.driver.perform(
        open_, Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert unlocked.ok, unlocked.reason
    await s.wait_for(lambda: open_ in s.driver.watched())
    # Time itself is what is waited for here: past dead_after_s, a sync that found no slot and
    # counted as a miss would have made the idle lock DEAD.
    await asyncio.sleep(4.0)
    assert healths(s, idle) == [Health.HEALTHY]
    assert open_ in s.driver.watched()


async def test_an_operation_cancelled_mid_motion_leaves_nothing_held(
    station: StationFactory,
) -> None:
    s = await station(watch=False)
    bike = s.bike(0)
    await s.sim.control.set_motor_ms(s.lock(0).name, 5000)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.4):  # as the engine does when timeout_at passes
            await s.driver.perform(
                bike, Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
            )
    assert s.driver.links_in_use == 0
    await s.wait_for(lambda: s.driver.links_in_use == 0)
    await s.sim.control.set_motor_ms(s.lock(0).name, 1200)
    after = await s.driver.perform(
        bike, Operation.READ, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert after.ok, after.reason


async def test_a_lock_left_in_doubt_is_read_again_soon(station: StationFactory) -> None:
    s = await station(time_scale=0.2, watch=True, sync_interval_s=3600.0)
    bike = s.bike(0)
    s.driver.set_standing_credentials(bike, s.credentials(0))
    await s.sim.control.set_motor_ms(s.lock(0).name, 5000)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.3):  # the engine gives up; the motor goes on
            await s.driver.perform(
                bike, Operation.UNLOCK, None, timeout_s=30, progress=ProgressLog()
            )

    def synced() -> list[LockState]:
        return [
            o.lock_state
            for o in s.observations
            if isinstance(o, StateObserved) and o.bike == bike and o.cause is Cause.SYNC
        ]

    # Not after sync_interval_s (an hour): at the sync loop's next tick.
    await s.wait_for(lambda: LockState.UNLOCKED in synced(), timeout_s=20)
    await manual_close_is_mirrored(s, 0)
