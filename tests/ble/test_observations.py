"""The driver's observations as its consumer sees them: in order, every one, and then the end."""

from __future__ import annotations

import asyncio

import pytest

from lockgate.ble.driver import Driver
from lockgate.ble.settings import RadioSettings
from lockgate.model import Cause, Health, LockState
from lockgate.radio import HealthObserved, Observation, ReadingObserved, StateObserved
from lockgate_sim.testing import run_simulator
from tests.ble.conftest import bike_of, identities, world

pytestmark = pytest.mark.integration


async def test_everything_seen_is_handed_out_before_the_iteration_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = world(locks=2)
    async with run_simulator(config, time_scale=0.1) as sim:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)
        seen: list[Observation] = []
        driver = Driver(identities(config), RadioSettings(sync_interval_s=3600.0))

        async def consume() -> None:
            seen.extend([observation async for observation in driver.observations()])

        async with asyncio.TaskGroup() as tasks:
            consumer = tasks.create_task(consume())
            async with driver:
                for lock in config.locks:
                    driver.set_standing_credentials(bike_of(lock), lock.credentials())
                    result = await driver.read(bike_of(lock), Cause.STARTUP, timeout_s=30)
                    assert result.ok, result.reason
            # Leaving the driver ends the iteration, after what it saw up to then.
            async with asyncio.timeout(10):
                await consumer
        for lock in config.locks:
            bike = bike_of(lock)
            mine = [o for o in seen if o.bike == bike]
            assert [type(o) for o in mine if not isinstance(o, HealthObserved)] == [
                StateObserved,
                ReadingObserved,
            ]
            state = next(o for o in mine if isinstance(o, StateObserved))
            assert (state.lock_state, state.cause) == (LockState.LOCKED, Cause.STARTUP)
            assert [o.health for o in mine if isinstance(o, HealthObserved)] == [Health.HEALTHY]
