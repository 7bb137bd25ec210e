"""A simulated station for the driver's integration tests: real dbus-daemon, real bleak.

Each test gets a fresh world of twelve locks (six of each profile) served by the simulator on its
own private bus, and a driver pointed at that bus, as the daemon would be.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from lockgate.ble.discovery import LockIdentity
from lockgate.ble.driver import Driver
from lockgate.ble.settings import RadioSettings, StepTimeouts
from lockgate.model import Profile
from lockgate.protocol.credentials import Credentials, signed_byte_string
from lockgate.radio import Observation, Progress
from lockgate_sim.testing import RunningSimulator, run_simulator
from lockgate_sim.world import AdapterConfig, LockConfig, WorldConfig

pytestmark = pytest.mark.integration


def _lock(index: int) -> LockConfig:
    address = f"FC:3C:00:2A:2B:{index:02X}"
    if index % 2 == 0:
        return LockConfig(
            name=f"ISHAREIT-22005{index:02d}",
            address=address,
            profile=Profile.SHAREE,
            k_seed=signed_byte_string(bytes((index + i) % 256 for i in range(16))),
            k_u=signed_byte_string(bytes((7 * index + i) % 256 for i in range(20)) + bytes(4)),
            motor_ms=1200,
            connect_ms=250,
        )
    return LockConfig(
        name=f"ILOCKIT-45003{index:02d}",
        address=address,
        profile=Profile.NOBOND,
        auth_id=index,
        phone_id=bytes(range(index, index + 8)).hex(),
        ltk=bytes((3 * index + i) % 256 for i in range(32)).hex(),
        motor_ms=1200,
        connect_ms=250,
    )


def world(locks: int = 12, slots: int = 5, extra: list[LockConfig] | None = None) -> WorldConfig:
    return WorldConfig.model_validate(
        {
            "adapter": AdapterConfig(connection_slots=slots),
            "lock": [_lock(i) for i in range(locks)] + (extra or []),
        }
    )


def bike_of(lock: LockConfig) -> str:
    return "B" + lock.name.split("-")[1]


def identities(world: WorldConfig) -> list[LockIdentity]:
    return [
        LockIdentity(bike_of(lock), lock.name, lock.address, lock.profile) for lock in world.locks
    ]


@dataclass
class SimulatedStation:
    """A simulator and a driver over it, and everything the driver reported."""

    sim: RunningSimulator
    driver: Driver
    world: WorldConfig
    observations: list[Observation] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def lock(self, index: int) -> LockConfig:
        return self.world.locks[index]

    def bike(self, index: int) -> str:
        return bike_of(self.world.locks[index])

    def credentials(self, index: int) -> Credentials:
        return self.world.locks[index].credentials()

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
        """Wait until ``predicate`` holds; a wait limit, not a timing assertion."""
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self.changed.wait()


class ProgressLog:
    def __init__(self) -> None:
        self.items: list[Progress] = []

    async def __call__(self, progress: Progress) -> None:
        self.items.append(progress)


StationFactory = Callable[..., Awaitable[SimulatedStation]]


@pytest.fixture
async def station(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[StationFactory]:
    """Start a world and a driver: ``await station(time_scale=…, world_config=…, **settings)``.

    The driver knows the world's first ``configured`` locks (all by default).
    """
    async with contextlib.AsyncExitStack() as stack:

        async def start(
            *,
            time_scale: float = 0.1,
            world_config: WorldConfig | None = None,
            configured: int | None = None,
            **settings: Any,
        ) -> SimulatedStation:
            config = world_config or world()
            sim = await stack.enter_async_context(run_simulator(config, time_scale=time_scale))
            monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)
            options: dict[str, Any] = {
                "connect_timeout_s": 10.0,
                "find_timeout_s": 5.0,
                "sync_interval_s": 3600.0,
                "steps": StepTimeouts(gatt_s=5.0, answer_s=5.0, motion_s=10.0),
            }
            options.update(settings)
            observations: list[Observation] = []
            changed = asyncio.Event()
            # Entered before the driver, so left after it: the driver's end ends the iteration.
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            driver = await stack.enter_async_context(
                Driver(identities(sim.world)[:configured], RadioSettings(**options))
            )

            async def record() -> None:
                async for observation in driver.observations():
                    observations.append(observation)
                    changed.set()

            tasks.create_task(record(), name="observations")
            return SimulatedStation(sim, driver, sim.world, observations, changed)

        yield start
