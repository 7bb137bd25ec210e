"""A whole station for the link's tests: simulator, store, real BLE driver, engine, outbox, link.

The one place that wires them for these tests (as the service does): the driver's observations go
to the engine through one task, the outbox is built here from the store and handed to the link,
and requests reach ``engine.submit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from lockgate.ble.driver import Driver
from lockgate.ble.settings import RadioSettings, StepTimeouts
from lockgate.clock import utc_now
from lockgate.contract import AdapterDocument, BleStatus, StationStatus
from lockgate.contract.station import RegisteredLock, Station
from lockgate.engine import Engine
from lockgate.model import RadioState, StationState
from lockgate.mqtt import Link, LinkSettings
from lockgate.protocol.identity import address_to_guid
from lockgate.store import Correlation, Outbox, StationKey, Store
from lockgate_sim.testing import RunningSimulator, run_simulator
from lockgate_sim.world import WorldConfig
from tests.ble.conftest import bike_of, identities, world

STATION = "FR101"


@dataclass
class Gateway:
    sim: RunningSimulator
    station: Station
    store: Store
    driver: Driver
    engine: Engine
    outbox: Outbox
    link: Link

    def bike(self, index: int) -> str:
        return bike_of(self.sim.world.locks[index])


def registered(config: WorldConfig) -> Station:
    return Station(
        STATION,
        "47.976634",
        "7.825490",
        tuple(
            RegisteredLock(bike_of(lock), lock.name, address_to_guid(lock.address), lock.profile)
            for lock in config.locks
        ),
        uuid.uuid4().hex,
    )


def status_document(station: Station) -> Any:
    since = utc_now()

    def status(state: Literal["online", "offline"]) -> bytes:
        return StationStatus(
            station=station.id,
            state=StationState(state),
            boot_id=station.boot_id,
            version="test",
            since=since,
            locks=tuple(lock.bike for lock in station.locks),
            outbox_depth=0,
            ble=BleStatus(
                adapter="hci0",
                slots=5,
                in_use=0,
                state=RadioState.UP,
                since=since,
                adapters=(
                    AdapterDocument(
                        adapter="hci0",
                        name="hci0",
                        address="00:1A:7D:DA:71:13",
                        state=RadioState.UP,
                        since=since,
                        slots=5,
                        in_use=0,
                    ),
                ),
            ),
        ).to_bytes()

    return status


@contextlib.asynccontextmanager
async def running_station(
    folder: Path, url: str, *, locks: int = 2, **link: Any
) -> AsyncIterator[Gateway]:
    """The station with its link started (not yet necessarily connected); stopped cleanly."""
    config = world(locks=locks)
    station = registered(config)
    async with run_simulator(config, time_scale=0.1) as sim:
        with sim.bleak_pointed_here():
            radio = RadioSettings(
                connection_slots=5,
                sync_interval_s=3600.0,
                steps=StepTimeouts(gatt_s=5, answer_s=5, motion_s=10),
            )
            key = StationKey.from_bytes(bytes(range(32)))
            async with (
                Store(folder / "lockgate.db", station=station, key=key) as store,
                Driver(identities(config), radio) as driver,
                Engine(store=store, radio=driver, station=station) as engine,
                asyncio.TaskGroup() as tasks,
            ):
                outbox = Outbox(store)

                async def mirror() -> None:
                    async for observation in driver.observations():
                        await engine.observe(observation)

                mirroring = tasks.create_task(mirror(), name="test-mirror")
                try:
                    await engine.recover()
                    running = engine

                    async def intake(payload: bytes, correlation: Correlation) -> object:
                        return await running.submit(payload, correlation=correlation)

                    settings = LinkSettings(
                        url=url, station=STATION, client_id="lockgate-FR101", **link
                    )
                    async with Link(
                        settings, outbox=outbox, intake=intake, status=status_document(station)
                    ) as mqtt:
                        yield Gateway(sim, station, store, driver, engine, outbox, mqtt)
                        await mqtt.stop(flush_timeout_s=5.0)
                finally:
                    mirroring.cancel()
