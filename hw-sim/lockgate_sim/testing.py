"""A whole simulated world for a test, on a private bus, in one ``async with``.

The BLE driver's and the daemon's integration tests start the simulator through this module::

    from lockgate_sim.testing import run_simulator

    async with run_simulator("config/sim-demo.toml", time_scale=0.05) as sim:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)  # bleak finds it there
        ...  # scan, connect, run a session with bleak
        await sim.control.close_by_hand("ISHAREIT-2200540")
        assert (await sim.control.lock("ISHAREIT-2200540")).bolt == "locked"

``run_simulator`` starts a private dbus-daemon (socket in a fresh temporary directory), serves the
world on it (in this event loop, or as a ``lockgate-sim`` subprocess with ``subprocess=True``), and
on leaving stops everything it started and removes the socket's directory.
"""

import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from lockgate_sim.bluez import Station
from lockgate_sim.bus import PrivateBus, stop_process
from lockgate_sim.firmware import RandomBytes
from lockgate_sim.remote import SimulatorControl
from lockgate_sim.scenario import Scenario
from lockgate_sim.simulator import serve
from lockgate_sim.world import WorldConfig

__all__ = ["RunningSimulator", "SimulatorStartError", "run_simulator"]

ADDRESS_VARIABLE = "DBUS_SYSTEM_BUS_ADDRESS"
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class SimulatorStartError(RuntimeError):
    """The simulator subprocess exited or stayed silent instead of printing its bus address."""


@dataclass(frozen=True, slots=True)
class RunningSimulator:
    """A simulator that is serving.

    - ``bus_address``: the private bus; point bleak at it with ``DBUS_SYSTEM_BUS_ADDRESS``.
    - ``control``: the control client (close by hand, jam, out of range, show…).
    - ``world``: the world as served (``time_scale`` already applied).
    - ``station``: the in-process station, for white-box checks; ``None`` with ``subprocess=True``.
    - ``pid``: the ``lockgate-sim`` subprocess's pid, or ``None`` in-process.
    """

    bus_address: str
    control: SimulatorControl
    world: WorldConfig
    station: Station | None = None
    pid: int | None = None

    @property
    def environ(self) -> dict[str, str]:
        """The environment entry that points bleak (and the daemon) at this simulator."""
        return {ADDRESS_VARIABLE: self.bus_address}

    @contextlib.contextmanager
    def bleak_pointed_here(self) -> Iterator[None]:
        """Set ``DBUS_SYSTEM_BUS_ADDRESS`` in this process for the block, then restore it."""
        before = os.environ.get(ADDRESS_VARIABLE)
        os.environ[ADDRESS_VARIABLE] = self.bus_address
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(ADDRESS_VARIABLE, None)
            else:
                os.environ[ADDRESS_VARIABLE] = before


@contextlib.asynccontextmanager
async def run_simulator(
    world: WorldConfig | Path | str,
    *,
    time_scale: float | None = None,
    scenario: Scenario | None = None,
    subprocess: bool = False,
    random_bytes: RandomBytes = os.urandom,
) -> AsyncIterator[RunningSimulator]:
    """Serve ``world`` (a :class:`WorldConfig` or the path of its TOML file) on a private bus.

    ``time_scale`` overrides the world's (0.05 runs every delay 20 times faster). With
    ``subprocess=True`` the world runs in a ``lockgate-sim`` child process, exactly as field
    engineers run it; ``random_bytes`` (IVs and nonces) only applies in-process.
    """
    config = world if isinstance(world, WorldConfig) else WorldConfig.load(world)
    if time_scale is not None:
        config = config.with_time_scale(time_scale)
    if subprocess:
        async with _subprocess(config, scenario) as running:
            yield running
        return
    async with contextlib.AsyncExitStack() as stack:
        bus = await stack.enter_async_context(PrivateBus())
        station = await stack.enter_async_context(
            serve(bus.address, config, scenario=scenario, random_bytes=random_bytes)
        )
        control = await stack.enter_async_context(SimulatorControl.connect(bus.address))
        yield RunningSimulator(bus.address, control, config, station=station)


@contextlib.asynccontextmanager
async def _subprocess(
    config: WorldConfig, scenario: Scenario | None
) -> AsyncIterator[RunningSimulator]:
    with tempfile.TemporaryDirectory(prefix="lockgate-sim-world-") as directory:
        world_file = Path(directory) / "world.json"
        world_file.write_text(config.to_json())
        arguments = [sys.executable, "-m", "lockgate_sim", "--config", str(world_file)]
        if scenario is not None:
            scenario_file = Path(directory) / "scenario.json"
            scenario_file.write_text(scenario.model_dump_json(by_alias=True))
            arguments += ["--scenario", str(scenario_file)]
        process = await asyncio.create_subprocess_exec(
            *arguments,
            stdout=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            address = await _read_address(process)
            async with SimulatorControl.connect(address) as control:
                yield RunningSimulator(address, control, config, pid=process.pid)
        finally:
            await stop_process(process, STOP_TIMEOUT_S)


async def _read_address(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    prefix = f"{ADDRESS_VARIABLE}="
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while line := (await process.stdout.readline()).decode():
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()
    except TimeoutError as err:
        raise SimulatorStartError("lockgate-sim printed no bus address in time") from err
    raise SimulatorStartError(f"lockgate-sim exited ({await process.wait()}) before serving")
