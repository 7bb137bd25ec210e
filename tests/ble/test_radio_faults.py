"""The radio's field faults, against the simulator: bluetoothd restarting or hanging, an adapter
powered off, pulled and plugged back as another hciN, a second adapter taking over a dead one's
locks. The driver recovers by itself, in the same process, and never moves a lock twice.

Every test acts only through the driver's API and the simulator's control interface; every wait
is for what it asserts (a bound, never a timing assertion).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from lockgate.ble.adapters import AdapterStatus
from lockgate.ble.driver import Driver
from lockgate.model import Health, LockState
from lockgate.radio import HealthObserved, Operation, Outcome, Result
from lockgate_sim.world import AdapterConfig, LockConfig, WorldConfig
from tests.ble.conftest import ProgressLog, SimulatedStation, StationFactory, _lock, world

pytestmark = pytest.mark.integration

# A hung bluetoothd is noticed within two seconds (a loaded machine answers within 1.5 s).
FAST = {"probe_interval_s": 0.3, "probe_timeout_s": 1.5}


class Turns:
    """Every adapter turn the driver reported, as it reports them."""

    def __init__(self, driver: Driver) -> None:
        self.seen: list[AdapterStatus] = []
        self._driver = driver
        self._changed = asyncio.Event()

    async def run(self) -> None:
        async for turn in self._driver.radio_turns():
            self.seen.append(turn)
            self._changed.set()

    async def until(self, *, up: bool, name: str | None = None, timeout_s: float = 15.0) -> None:
        """Until an adapter turn up (or down) has been reported, through ``name`` if given."""
        async with asyncio.timeout(timeout_s):
            while not any(t.up is up and (name is None or t.name == name) for t in self.seen):
                self._changed.clear()
                await self._changed.wait()
        self.seen.clear()


@contextlib.asynccontextmanager
async def following(driver: Driver) -> AsyncIterator[Turns]:
    turns = Turns(driver)
    task = asyncio.get_running_loop().create_task(turns.run())
    try:
        yield turns
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def operate(s: SimulatedStation, index: int, operation: Operation, timeout_s: float = 20):
    return await s.driver.perform(
        s.bike(index),
        operation,
        s.credentials(index),
        timeout_s=timeout_s,
        progress=ProgressLog(),
    )


def ok(result: Result) -> None:
    assert result.outcome is Outcome.OK, result.reason


async def motions(s: SimulatedStation, index: int) -> tuple[int, int]:
    view = await s.sim.control.lock(s.lock(index).name)
    return view.motor_opened, view.motor_closed


async def test_bluez_restart_drops_every_link_and_the_station_recovers(
    station: StationFactory,
) -> None:
    s = await station(world_config=world(locks=4, slots=3), watch=True, **FAST)
    async with following(s.driver) as turns:
        ok(await operate(s, 0, Operation.UNLOCK))  # lock 0 open: its watch keeps a link
        await s.wait_for(lambda: s.bike(0) in s.driver.watched())
        await s.sim.control.bluez_restart(down_s=5.0)
        await turns.until(up=False)
        await turns.until(up=True)
        # Its link went with bluetoothd: the watch connects again and sees a close by hand.
        await s.wait_for(lambda: s.bike(0) in s.driver.watched(), timeout_s=15)
        await s.sim.control.close_by_hand(s.lock(0).name)
        await s.wait_for(
            lambda: any(
                getattr(o, "lock_state", None) is LockState.LOCKED and o.bike == s.bike(0)
                for o in s.observations
            ),
            timeout_s=15,
        )
        for index in (1, 2):
            ok(await operate(s, index, Operation.UNLOCK))
            ok(await operate(s, index, Operation.LOCK))
    assert s.driver.links_in_use <= 3
    assert await motions(s, 0) == (1, 0)  # one unlock, closed by hand: no second motion
    # Links lost with bluetoothd are not the locks' fault: no lock was said unhealthy.
    assert not [
        o
        for o in s.observations
        if isinstance(o, HealthObserved) and o.health is not Health.HEALTHY
    ]
    assert await motions(s, 1) == (1, 1)


async def test_a_command_waits_for_bluez_to_come_back(station: StationFactory) -> None:
    s = await station(world_config=world(locks=2, slots=3), watch=False, **FAST)
    async with following(s.driver) as turns:
        await s.sim.control.bluez_restart(down_s=30.0)  # 3 s here, at time scale 0.1
        await turns.until(up=False)
        assert not s.driver.radio_up
        ok(await operate(s, 0, Operation.UNLOCK, timeout_s=30))
        assert s.driver.radio_up
    assert await motions(s, 0) == (1, 0)


async def test_a_hung_bluez_is_waited_out(station: StationFactory) -> None:
    s = await station(world_config=world(locks=2, slots=3), watch=False, **FAST)
    async with following(s.driver) as turns:
        await s.sim.control.bluez_hang(80.0)  # 8 s here
        await turns.until(up=False)
        down = s.driver.radio_status()[0]
        assert down.reason is not None
        assert "answer" in down.reason
        ok(await operate(s, 0, Operation.UNLOCK, timeout_s=30))
        await turns.until(up=True, timeout_s=1)  # reported before the command went on
    assert await motions(s, 0) == (1, 0)


async def test_adapter_powered_off_and_on(station: StationFactory) -> None:
    s = await station(world_config=world(locks=2, slots=3), watch=True, **FAST)
    async with following(s.driver) as turns:
        ok(await operate(s, 0, Operation.UNLOCK))
        await s.wait_for(lambda: s.bike(0) in s.driver.watched())
        await s.sim.control.adapter_power("hci0", on=False)
        await turns.until(up=False)
        assert "powered off" in (s.driver.radio_status()[0].reason or "")
        await s.wait_for(lambda: s.driver.links_in_use == 0)
        pending = asyncio.ensure_future(operate(s, 1, Operation.UNLOCK, timeout_s=30))
        await s.sim.control.adapter_power("hci0", on=True)
        await turns.until(up=True)
        ok(await pending)
        ok(await operate(s, 0, Operation.LOCK))
    assert await motions(s, 0) == (1, 1)
    assert await motions(s, 1) == (1, 0)


async def test_adapter_pulled_and_plugged_back_as_another_hci(station: StationFactory) -> None:
    s = await station(world_config=world(locks=2, slots=3), watch=False, **FAST)
    async with following(s.driver) as turns:
        await s.sim.control.adapter_remove("hci0")
        await turns.until(up=False)
        assert "not there" in (s.driver.radio_status()[0].reason or "")
        await s.sim.control.adapter_add("hci0", as_name="hci1")
        await turns.until(up=True, name="hci1")
        ok(await operate(s, 0, Operation.UNLOCK))
        ok(await operate(s, 0, Operation.LOCK))
    status = s.driver.radio_status()[0]
    assert (status.adapter, status.name, status.up) == ("hci0", "hci1", True)
    assert await motions(s, 0) == (1, 1)


def two_adapters(locks: int = 4) -> WorldConfig:
    """Two adapters; hci0 hears every lock better than hci1 does."""
    base = world(locks=locks, slots=3)
    return WorldConfig.model_validate(
        {
            "adapter": AdapterConfig(name="hci0", connection_slots=3),
            "adapters": [
                AdapterConfig(name="hci1", address="00:1A:7D:DA:71:14", connection_slots=3)
            ],
            "lock": [
                LockConfig.model_validate(
                    {**_lock(i).model_dump(), "rssi": -55, "rssi_by_adapter": {"hci1": -80}}
                )
                for i in range(len(base.locks))
            ],
        }
    )


async def test_a_second_adapter_takes_over_a_dead_ones_locks(station: StationFactory) -> None:
    s = await station(world_config=two_adapters(), watch=True, adapters=("hci0", "hci1"), **FAST)
    async with following(s.driver) as turns:
        ok(await operate(s, 0, Operation.UNLOCK))
        await s.wait_for(lambda: s.bike(0) in s.driver.watched())
        views = {a.name: a for a in (await s.sim.control.show()).adapters}
        assert views["hci0"].links == 1  # the better signal
        assert views["hci1"].links == 0
        await s.sim.control.adapter_remove("hci0")
        await turns.until(up=False, name=None)
        assert s.driver.radio_up  # hci1 still is
        # The open lock is watched again through hci1, and commands go through it.
        await s.wait_for(lambda: s.bike(0) in s.driver.watched(), timeout_s=15)
        for index in (1, 2):
            ok(await operate(s, index, Operation.UNLOCK))
            ok(await operate(s, index, Operation.LOCK))
        ok(await operate(s, 0, Operation.LOCK))
        hci1 = await s.sim.control.adapter("hci1")
        assert hci1.links <= 3
    for index in (0, 1, 2):
        assert await motions(s, index) == (1, 1)
    status = {a.adapter: a for a in s.driver.radio_status()}
    assert (status["hci0"].up, status["hci1"].up) == (False, True)
