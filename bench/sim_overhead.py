"""The simulator's own share of a command: its CPU and its lateness, at time scale 1.

The gateway's performance benchmark takes the simulated lock's connect and motor time off each
command's duration to find the gateway's share, so the simulator must add no time and little CPU
of its own. Here one sharee lock is served by a ``lockgate-sim`` child process on a private
dbus-daemon, and the real driver (real bleak) runs unlock and lock commands against it, one after
the other, connecting for each (``watch`` off). Measured:

- the simulator's CPU per command (its process's user + system time over the run), beside the
  dbus-daemon's and this process's (the driver and bleak);
- the connect phase: from the command to the driver's ``connected`` step, less ``connect_ms``;
- the motor phase: from the lock's acknowledgement (``received``) to the final state the driver
  saw, less ``motor_ms``: the simulator's timer lateness plus one D-Bus hop and bleak;
- the whole command less ``connect_ms`` and ``motor_ms``, as the gateway's benchmark will see it.

    .venv/bin/python bench/sim_overhead.py [--commands 40] [--profile sim-profile.html]

With ``--profile`` the simulator runs under pyinstrument (``.html``, ``.txt``: where the time goes,
waits included) or cProfile (``.prof``: where the CPU goes, for ``pstats``) and writes its profile
there on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lockgate.ble.discovery import LockIdentity
from lockgate.ble.driver import Driver
from lockgate.ble.settings import RadioSettings
from lockgate.model import LockState, Profile
from lockgate.protocol.credentials import signed_byte_string
from lockgate.radio import Operation, Progress, Step, StepReached
from lockgate_sim.bus import PrivateBus, stop_process
from lockgate_sim.world import AdapterConfig, LockConfig, WorldConfig

CONNECT_MS = 250
MOTOR_MS = 1200
LOCK = LockConfig(
    name="ISHAREIT-2200540",
    address="FC:3C:00:2A:2A:DD",
    profile=Profile.SHAREE,
    k_seed=signed_byte_string(bytes(range(16))),
    k_u=signed_byte_string(bytes(range(1, 21)) + bytes(4)),
    motor_ms=MOTOR_MS,
    connect_ms=CONNECT_MS,
)
FINAL = {Operation.UNLOCK: LockState.UNLOCKED, Operation.LOCK: LockState.LOCKED}
START_TIMEOUT_S = 20.0
TIMER_LATE = re.compile(rb"timer ran ([0-9.]+) ms late")


class Command:
    """One command's progress, timed on this process's monotonic clock."""

    def __init__(self, operation: Operation) -> None:
        self.operation = operation
        self.started = time.perf_counter()
        self.steps: dict[Step, float] = {}
        self.final: float | None = None

    async def progress(self, progress: Progress) -> None:
        if isinstance(progress, StepReached):
            self.steps.setdefault(progress.step, time.perf_counter())


async def _discard(driver: Driver) -> None:
    """Take the driver's observations (it hands them out in order before its next operation)."""
    async for _observation in driver.observations():
        pass


async def _start_simulator(
    world_file: Path, bus_address: str, profile: Path | None
) -> asyncio.subprocess.Process:
    arguments = [sys.executable]
    if profile is not None and profile.suffix == ".prof":
        arguments += ["-m", "cProfile", "-o", str(profile)]
    elif profile is not None:
        renderer = "html" if profile.suffix == ".html" else "text"
        arguments += ["-m", "pyinstrument", "-r", renderer, "-o", str(profile)]
    arguments += ["-m", "lockgate_sim", "--config", str(world_file), "--bus", bus_address]
    arguments += ["--log-level", "DEBUG"]
    process = await asyncio.create_subprocess_exec(
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    async with asyncio.timeout(START_TIMEOUT_S):
        while line := await process.stdout.readline():
            if line.startswith(b"DBUS_SYSTEM_BUS_ADDRESS="):
                return process
    raise RuntimeError("lockgate-sim exited before serving")


async def _timer_lateness(process: asyncio.subprocess.Process, late_ms: list[float]) -> None:
    """Read the simulator's log to its end (it must never block on a full pipe), keeping how late
    each of its timers ran."""
    assert process.stderr is not None
    while line := await process.stderr.readline():
        if match := TIMER_LATE.search(line):
            late_ms.append(float(match.group(1)))


def _cpu_s(pid: int) -> float:
    """A process's user + system CPU time so far (Linux: ``/proc/PID/stat``, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    """Phases beyond the lock's own times, in seconds; CPU per command, in seconds."""

    connect: list[float]
    motor: list[float]
    total: list[float]
    timer: list[float]
    sim_cpu: float
    bus_cpu: float
    driver_cpu: float


async def run(commands: int, profile: Path | None) -> Measured:
    world = WorldConfig.model_validate({"adapter": AdapterConfig(), "lock": [LOCK]})
    done: list[Command] = []
    late_ms: list[float] = []
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as directory:
        world_file = Path(directory) / "world.json"
        world_file.write_text(world.to_json())
        async with PrivateBus() as bus:
            simulator = await _start_simulator(world_file, bus.address, profile)
            reader = asyncio.create_task(_timer_lateness(simulator, late_ms))
            try:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus.address
                assert bus.pid is not None
                pids = (simulator.pid, bus.pid, os.getpid())
                identity = LockIdentity("FR1540", LOCK.name, LOCK.address, LOCK.profile)
                settings = RadioSettings(sync_interval_s=3600.0, watch=False)
                async with Driver([identity], settings) as driver, asyncio.TaskGroup() as tasks:
                    discarding = tasks.create_task(_discard(driver))
                    # The first command finds the lock and warms every cache: not measured.
                    await _command(driver, Operation.UNLOCK)
                    before = [_cpu_s(pid) for pid in pids]
                    for i in range(commands):
                        operation = Operation.LOCK if i % 2 == 0 else Operation.UNLOCK
                        done.append(await _command(driver, operation))
                    after = [_cpu_s(pid) for pid in pids]
                    discarding.cancel()
            finally:
                await stop_process(simulator, 10.0)
                async with asyncio.timeout(10):
                    await reader
    sim_cpu, bus_cpu, own_cpu = (b - a for a, b in zip(before, after, strict=True))
    return Measured(
        connect=[c.steps[Step.CONNECTED] - c.started - CONNECT_MS / 1000 for c in done],
        motor=[(c.final or 0.0) - c.steps[Step.RECEIVED] - MOTOR_MS / 1000 for c in done],
        total=[(c.final or 0.0) - c.started - (CONNECT_MS + MOTOR_MS) / 1000 for c in done],
        timer=[ms / 1000 for ms in late_ms],
        sim_cpu=sim_cpu / commands,
        bus_cpu=bus_cpu / commands,
        driver_cpu=own_cpu / commands,
    )


async def _command(driver: Driver, operation: Operation) -> Command:
    command = Command(operation)
    result = await driver.perform(
        "FR1540", operation, LOCK.credentials(), timeout_s=30, progress=command.progress
    )
    # The state the motion ends in is the result's reading: the driver returns as it sees it.
    command.final = time.perf_counter()
    assert result.ok, result.reason
    assert result.reading.lock_state is FINAL[operation], "the driver saw no final state"
    return command


def _summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (
        f"{name:>8}: n={len(ms)} median {statistics.median(ms):7.1f} ms, "
        f"p95 {ms[int(0.95 * (len(ms) - 1))]:7.1f} ms, max {ms[-1]:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=40)
    parser.add_argument("--profile", type=Path, help="profile the simulator into this file")
    args = parser.parse_args()
    measured = asyncio.run(run(args.commands, args.profile))
    print(f"beyond connect_ms ({CONNECT_MS}) and motor_ms ({MOTOR_MS}), per command:")
    print(_summary("connect", measured.connect))
    print(_summary("motor", measured.motor))
    print(_summary("total", measured.total))
    if measured.timer:  # simulators that log how late their timers run
        print("the simulator's own timers (motor end), how late they ran:")
        print(_summary("timer", measured.timer))
    print(
        f"CPU per command: simulator {measured.sim_cpu * 1000:.1f} ms, "
        f"dbus-daemon {measured.bus_cpu * 1000:.1f} ms, "
        f"driver and bleak {measured.driver_cpu * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
