"""``lockgate ctl`` as a field engineer runs it: a subprocess, against ``lockgate run``, mosquitto.

:func:`station` starts mosquitto, the simulator and the daemon (the end-to-end harness of
tests/e2e) and waits for READY; :func:`ctl` runs ``python -m lockgate ctl --broker ... --station
...`` with the given arguments and returns its exit code and output; :func:`watching` keeps a
``ctl watch`` running and reads its lines as they come.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from lockgate_sim.testing import RunningSimulator, run_simulator
from lockgate_sim.world import WorldConfig
from tests.brokers import Mosquitto, running_mosquitto
from tests.e2e.backend import Backend, backend
from tests.e2e.station import STATION, Daemon, notify_socket, write_config

CTL_TIMEOUT_S = 120.0


@dataclass
class Station:
    broker: Mosquitto
    sim: RunningSimulator
    daemon: Daemon
    backend: Backend
    folder: Path


@contextlib.asynccontextmanager
async def station(
    folder: Path, sim_world: WorldConfig, *, commands: str = ""
) -> AsyncIterator[Station]:
    """A running station, READY; a backend (the tests' own aiomqtt client) sees every message.
    ``commands``: lines for the config's ``[commands]`` section (``require_signed``, keys)."""
    async with (
        running_mosquitto(folder / "broker") as broker,
        run_simulator(sim_world, time_scale=0.1, subprocess=True) as sim,
        notify_socket(folder) as notify,
        backend(broker.port, station=STATION) as peer,
    ):
        config = write_config(
            folder,
            broker_port=broker.port,
            bus_address=sim.bus_address,
            sim=sim.world,
            commands=commands,
        )
        daemon = Daemon(config, folder / "daemon.log", environ={"NOTIFY_SOCKET": str(notify.path)})
        try:
            await daemon.start()
            await notify.wait_for("READY=1")
            yield Station(broker, sim, daemon, peer, folder)
        finally:
            await daemon.close()


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def ctl_command(broker: Mosquitto, *arguments: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "lockgate",
        "ctl",
        "--broker",
        broker.url,
        "--station",
        STATION,
        *arguments,
    ]


async def ctl(broker: Mosquitto, *arguments: str, timeout_s: float = CTL_TIMEOUT_S) -> Run:
    """``lockgate ctl`` to its end; stdout and stderr are pipes, not a terminal."""
    process = await asyncio.create_subprocess_exec(
        *ctl_command(broker, *arguments),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Run(process.returncode, stdout.decode(), stderr.decode())


class Watch:
    """A running ``ctl watch``: its output read line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []

    async def line(self, timeout_s: float = 60.0) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout_s):
            raw = await self.process.stdout.readline()
        assert raw, "ctl watch ended"
        line = raw.decode()
        self.lines.append(line)
        return line

    async def interrupt(self, timeout_s: float = 30.0) -> tuple[int, str]:
        """Ctrl-C: the exit code and what was left on standard error."""
        self.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(timeout_s):
            _, stderr = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode, stderr.decode()


@contextlib.asynccontextmanager
async def watching(broker: Mosquitto, *arguments: str) -> AsyncIterator[Watch]:
    process = await asyncio.create_subprocess_exec(
        *ctl_command(broker, "watch", *arguments),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Watch(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
