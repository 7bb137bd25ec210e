"""One running simulator on a bus: the fake BlueZ, its control interface and a scenario.

:func:`serve` is what both the command line (:mod:`lockgate_sim.cli`) and the test harness
(:mod:`lockgate_sim.testing`) run: it connects to a bus, serves the world as ``org.bluez`` (one
connection, bluetoothd's, which a ``bluez-restart`` closes and opens anew) with
``org.lockgate.Simulator1`` beside it under ``org.lockgate.Simulator`` (a connection of its own,
which stays), runs a scenario if given, and on leaving cancels its tasks and disconnects, so a
stopped simulator leaves no task or connection behind.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from dbus_fast.aio import MessageBus
from dbus_fast.constants import NameFlag, RequestNameReply

from lockgate_sim.bluez import BLUEZ, NameTakenError, Station
from lockgate_sim.control import CONTROL_NAME, CONTROL_PATH, SimulatorInterface
from lockgate_sim.firmware import RandomBytes
from lockgate_sim.scenario import Scenario, run_scenario
from lockgate_sim.world import WorldConfig

log = logging.getLogger("lockgate_sim")

BUS_TIMEOUT_S = 10.0

__all__ = ["NameTakenError", "serve"]


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
        control_bus = await MessageBus(bus_address=bus_address).connect()
    try:
        station = Station(bus_address, world, random_bytes)
        control = SimulatorInterface(station)
        # On bluetoothd's connection too, as the simulator always served it (org.bluez).
        station.also_serve(CONTROL_PATH, control)
        try:
            await station.start()
            control_bus.export(CONTROL_PATH, control)
            async with asyncio.timeout(BUS_TIMEOUT_S):
                reply = await control_bus.request_name(CONTROL_NAME, NameFlag.DO_NOT_QUEUE)
            if reply is not RequestNameReply.PRIMARY_OWNER:
                raise NameTakenError(f"{CONTROL_NAME} is already owned on {bus_address}")
            log.info(
                "serving %d locks on %d adapters as %s on %s",
                len(station.units),
                len(station.radios),
                BLUEZ,
                bus_address,
            )
            if scenario is not None:
                station.spawn(run_scenario(station, scenario), "scenario")
            yield station
        finally:
            await station.stop()
            if station.objects is not None and station.bus.connected:
                await station.power_off()
            await station.disconnect()
    finally:
        control_bus.disconnect()
        with contextlib.suppress(Exception):
            await control_bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
