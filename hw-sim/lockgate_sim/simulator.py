"""One running simulator on a bus: the fake BlueZ, its control interface and a scenario.

:func:`serve` is what both the command line (:mod:`lockgate_sim.cli`) and the test harness
(:mod:`lockgate_sim.testing`) run: it connects to a bus, serves the world as ``org.bluez`` with
``org.lockgate.Simulator1`` beside it, runs a scenario if given, and on leaving cancels its tasks
and disconnects, so a stopped simulator leaves no task or connection behind.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from dbus_fast.aio import MessageBus
from dbus_fast.constants import NameFlag, RequestNameReply

from lockgate_sim.bluez import BLUEZ, Station
from lockgate_sim.control import CONTROL_PATH, SimulatorInterface
from lockgate_sim.firmware import RandomBytes
from lockgate_sim.scenario import Scenario, run_scenario
from lockgate_sim.world import WorldConfig

log = logging.getLogger("lockgate_sim")

BUS_TIMEOUT_S = 10.0


class NameTakenError(RuntimeError):
    """Another process already owns org.bluez on the bus: the simulator cannot take its place."""


@contextlib.asynccontextmanager
async def serve(
    bus_address: str,
    world: WorldConfig,
    *,
    scenario: Scenario | None = None,
    random_bytes: RandomBytes = os.urandom,
) -> AsyncIterator[Station]:
    """Serve ``world`` on the bus at ``bus_address`` for as long as the block runs."""
    if scenario is not None:
        scenario.check_against(world)
    async with asyncio.timeout(BUS_TIMEOUT_S):
        bus = await MessageBus(bus_address=bus_address).connect()
    try:
        station = Station(bus, world, random_bytes)
        try:
            await station.start()
            bus.export(CONTROL_PATH, SimulatorInterface(station))
            async with asyncio.timeout(BUS_TIMEOUT_S):
                reply = await bus.request_name(BLUEZ, NameFlag.DO_NOT_QUEUE)
            if reply is not RequestNameReply.PRIMARY_OWNER:
                raise NameTakenError(f"{BLUEZ} is already owned on {bus_address}")
            log.info("serving %d locks as %s on %s", len(station.devices), BLUEZ, bus_address)
            if scenario is not None:
                station.spawn(run_scenario(station, scenario), "scenario")
            yield station
        finally:
            await station.stop()
            if bus.connected:
                await station.power_off()
    finally:
        bus.disconnect()
        with contextlib.suppress(Exception):
            await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
