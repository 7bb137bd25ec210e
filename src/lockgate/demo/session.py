"""One run of the demo: broker, simulated locks, the daemon and the backend, started and stopped
together, and the actions that the tour and the keys take on them.

:func:`running_demo` makes a temporary directory, starts the amqtt broker on a free loopback port,
the simulator on a private D-Bus bus, the backend client and the daemon (in that order), and on
leaving stops them in the reverse order and removes the directory, whatever ended the block: a
finished tour, Ctrl-C, an error. :class:`Demo` is what runs meanwhile; its methods are the demo's
verbs (send a command as the backend, move a bolt by hand, jam a motor, take the broker away, cut
the station's power).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lockgate.demo.backend import BACKEND_CLIENT_ID, Backend
from lockgate.demo.broker import HOST, DemoBroker
from lockgate.demo.station import StationProcess, write_station_config
from lockgate.demo.world import BIKES, STATION, DemoBike, bike, demo_world
from lockgate_sim.testing import RunningSimulator, run_simulator

COMMAND_TIMEOUT_S = 60.0
DEMO_USER = "u-demo"


@dataclass(frozen=True, slots=True)
class DemoOptions:
    """``time_scale``: the simulated locks' delays multiplied by it (0.1 runs them 10x faster)."""

    time_scale: float = 1.0


class Demo:
    """The running demo. Built by :func:`running_demo`; the tour and the view share one."""

    def __init__(
        self,
        *,
        directory: Path,
        broker: DemoBroker,
        sim: RunningSimulator,
        backend: Backend,
        station: StationProcess,
        options: DemoOptions,
    ) -> None:
        self.directory = directory
        self.broker = broker
        self.sim = sim
        self.backend = backend
        self.station = station
        self.options = options
        self.bikes: tuple[DemoBike, ...] = BIKES

    @property
    def station_id(self) -> str:
        return STATION

    # --- the backend's commands -----------------------------------------------------------------

    async def command(self, command: str, bike_id: str, **fields: Any) -> str:
        """Send ``command`` for ``bike_id`` as the backend; its id. Commands that reach the lock
        carry the lock's keys, as COPRI sends them."""
        if command in ("unlock", "lock", "force-unlock", "force-lock", "sync-device", "provision"):
            fields.setdefault("credentials", bike(bike_id).credentials())
        return await self.backend.send(command, bike_id, timeout_s=COMMAND_TIMEOUT_S, **fields)

    async def unlock(self, bike_id: str, user_id: str | None = DEMO_USER) -> str:
        if user_id is None:
            return await self.command("unlock", bike_id)
        return await self.command("unlock", bike_id, user_id=user_id)

    async def lock(self, bike_id: str, *, end_rental: bool = False) -> str:
        if end_rental:
            return await self.command("lock", bike_id, user_id=DEMO_USER, end_rental=True)
        return await self.command("lock", bike_id)

    # --- the world ------------------------------------------------------------------------------

    async def close_by_hand(self, bike_id: str) -> None:
        await self.sim.control.close_by_hand(bike(bike_id).name)

    async def open_by_hand(self, bike_id: str) -> None:
        await self.sim.control.open_by_hand(bike(bike_id).name)

    async def jam(self, bike_id: str, runs: int = 1) -> None:
        await self.sim.control.jam(bike(bike_id).name, runs)

    async def links(self, bike_id: str) -> int:
        """How many links the simulated lock holds now (the station watches an open lock)."""
        return (await self.sim.control.lock(bike(bike_id).name)).links

    async def moving(self, bike_id: str) -> bool:
        """Whether the simulated lock's motor is running now."""
        return (await self.sim.control.lock(bike(bike_id).name)).moving is not None

    async def bolt(self, bike_id: str) -> str:
        """Where the simulated lock's bolt really is: ``locked`` or ``unlocked``."""
        return str((await self.sim.control.lock(bike(bike_id).name)).bolt)

    async def bluez_restart(self, down_s: float = 2.0) -> None:
        """bluetoothd dies and starts again ``down_s`` (lock) seconds later, as a
        ``systemctl restart bluetooth`` or a bluez upgrade does to a station."""
        await self.sim.control.bluez_restart(down_s=down_s)

    # --- the broker and the station -------------------------------------------------------------

    async def broker_away(self) -> None:
        await self.broker.stop()

    async def broker_back(self) -> None:
        await self.broker.start()
        self.backend.reconnect_now()

    async def toggle_broker(self) -> None:
        if self.broker.running:
            await self.broker_away()
        else:
            await self.broker_back()

    async def power_cut(self) -> None:
        """The station dies at once (SIGKILL), as in a power cut."""
        await self.station.kill()

    async def power_back(self) -> None:
        """The station starts again after a power cut."""
        await self.station.start()


@contextlib.asynccontextmanager
async def running_demo(options: DemoOptions = DemoOptions()) -> AsyncIterator[Demo]:
    """Everything of the demo, running; all of it stopped and removed on leaving."""
    with tempfile.TemporaryDirectory(prefix="lockgate-demo-") as name:
        directory = Path(name)
        async with contextlib.AsyncExitStack() as stack:
            broker = await stack.enter_async_context(DemoBroker(first=BACKEND_CLIENT_ID))
            sim = await stack.enter_async_context(run_simulator(demo_world(options.time_scale)))
            backend = await stack.enter_async_context(
                Backend(HOST, broker.port, STATION, on_subscribed=broker.open_to_all)
            )
            config = write_station_config(directory, broker.url, sim.bus_address)
            station = StationProcess(config, directory / "station.log")
            stack.push_async_callback(station.stop)
            await station.start()
            yield Demo(
                directory=directory,
                broker=broker,
                sim=sim,
                backend=backend,
                station=station,
                options=options,
            )
