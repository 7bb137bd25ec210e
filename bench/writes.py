"""What the daemon writes to the disk: bytes at the block layer, per command, per idle hour, per
1,000 events held through an outage.

SD cards are what dies first on a fleet of Raspberry Pis, and they die of writes. Everything is
real (mosquitto, the simulator, ``lockgate run`` as a child process, the tests' backend); the
figure is ``write_bytes`` of the daemon's ``/proc/PID/io``: what the process caused to be sent to
the block device (its WAL and database pages, their checkpoints), read when the run's writes have
reached the disk (``sync`` first). The daemon's log goes through a pipe to this process, as it goes
to journald on a station, so it is not counted.

- per command: two locks, ``--commands`` unlocks and locks one at a time (watch off, so that each
  connects), the outbox drained after each; then the store is closed cleanly (its last
  checkpoint counted), and the total divided by the commands;
- per idle hour at 50 locks: after every first read, ``--idle-s`` (660: one whole sync round) of
  nothing but the station's own periodic work (syncs every ``sync_interval_s``, 600 s by default:
  ``--sync-interval-s``; the status refresh) while each lock's RSSI moves by a few dBm every half
  minute as a real radio's does, scaled to an hour;
- per 1,000 events through an outage: the broker stopped, a rider closes and opens
  ``--outage-events`` / 2 locks' bolts by hand (each a ``lock_state`` event pair), the broker back,
  every event delivered; bytes from the broker's stop to the last acknowledgement, per 1,000.

    .venv/bin/python bench/writes.py           # a few minutes
Results go to ``bench/results/writes-<date>.json``; a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' broker, station and backend helpers

from lockgate.contract.documents import LockStateEvent  # noqa: E402
from lockgate.contract.stamps import stamp  # noqa: E402
from lockgate.contract.station import RegisteredLock, Station  # noqa: E402
from lockgate.model import LockState, Profile  # noqa: E402
from lockgate.store import Change, LockRecord, Outbox, StationKey, Store  # noqa: E402
from lockgate_sim.testing import RunningSimulator, run_simulator  # noqa: E402
from lockgate_sim.world import LockConfig  # noqa: E402
from tests.brokers import Cable, Mosquitto, running_mosquitto  # noqa: E402
from tests.e2e.backend import Backend, backend, command  # noqa: E402
from tests.e2e.station import (  # noqa: E402
    STATION,
    Daemon,
    NotifySocket,
    bike_of,
    keys_of,
    notify_socket,
    sharee,
    world,
    write_config,
)

RESULTS = ROOT / "bench" / "results"
KIB = 1024


def written(pid: int) -> int:
    """Bytes the process caused to be written at the block layer (``/proc/PID/io``)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise RuntimeError("no write_bytes in /proc/PID/io")


async def flushed(pid: int) -> int:
    """``written`` once the kernel has sent every dirty page to the disk."""
    process = await asyncio.create_subprocess_exec("sync")
    await process.wait()
    return written(pid)


class PipedDaemon(Daemon):
    """``lockgate run`` with its output through a pipe (as to journald), copied to the log here."""

    async def start(self) -> None:
        environ = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lockgate",
            "run",
            "--config",
            str(self.config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=environ | self.environ,
        )
        self.starts += 1
        self._copy = asyncio.create_task(self._copy_output())

    async def _copy_output(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        with self.log.open("ab") as out:
            while chunk := await self.process.stdout.read(65536):
                out.write(chunk)
                out.flush()


@dataclass
class Site:
    broker: Mosquitto
    sim: RunningSimulator
    daemon: PipedDaemon
    backend: Backend
    notify: NotifySocket
    folder: Path
    cable: Cable

    async def first_reads_done(self, timeout_s: float = 900) -> None:
        async with asyncio.timeout(timeout_s):
            # The log is a file this process writes from the daemon's pipe: polled, as a tail.
            while b'"first reads done"' not in self.daemon.log.read_bytes():  # noqa: ASYNC110
                await asyncio.sleep(0.2)

    async def drained(self, timeout_s: float = 120) -> None:
        """Until the status document says the outbox is empty (refreshed every 5 s: one refresh
        is let pass first, so that the document is not the one from before the run)."""
        await asyncio.sleep(6)
        await self.backend.wait_for(
            lambda: (doc := self.backend.latest("status")) and doc["outbox_depth"] == 0,
            timeout_s=timeout_s,
        )


@contextlib.asynccontextmanager
async def site(
    folder: Path,
    locks: Sequence[LockConfig],
    *,
    watch: bool,
    time_scale: float,
    sync_interval_s: float = 600.0,
) -> AsyncIterator[Site]:
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    async with (
        running_mosquitto(folder / "broker") as broker,
        run_simulator(world(*locks, slots=3), time_scale=time_scale, subprocess=True) as sim,
        notify_socket(folder) as notify,
        backend(broker.port, station=STATION) as peer,
        Cable(broker.port) as cable,  # the station's way to the broker, which an outage cuts
    ):
        config = write_config(
            folder,
            broker_port=cable.port,
            bus_address=sim.bus_address,
            sim=sim.world,
            slots=3,
            watch=watch,
            sync_interval_s=sync_interval_s,
        )
        environ = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "10000000"}
        daemon = PipedDaemon(config, folder / "daemon.log", environ=environ)
        try:
            yield Site(broker, sim, daemon, peer, notify, folder, cable)
        finally:
            if daemon.running:
                with contextlib.suppress(TimeoutError):
                    await daemon.terminate(timeout_s=30)


def lock_of(index: int) -> LockConfig:
    return sharee(index, connect_ms=250, motor_ms=600)


def keep_store(folder: Path, keep: Path | None, name: str) -> None:
    """A copy of the daemon's database and WAL as they are now (``--keep``: the WAL's frame
    headers give each page written and the commit marks, SQLite's ``dbstat`` whose page it is)."""
    if keep is None:
        return
    keep.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        source = folder / f"lockgate.db{suffix}"
        if source.exists():
            shutil.copyfile(source, keep / f"{name}.db{suffix}")


async def per_command(
    folder: Path, commands: int, keep: Path | None = None, time_scale: float = 0.2
) -> dict[str, Any]:
    locks = [lock_of(1), lock_of(2)]
    async with site(folder, locks, watch=False, time_scale=time_scale) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1", timeout_s=120)
        await s.first_reads_done()
        await s.drained()
        before = await flushed(s.daemon.pid)
        keep_store(folder, keep, "before")
        failed = 0
        for index in range(commands):
            lock = locks[index % 2]
            name = "unlock" if (index // 2) % 2 == 0 else "lock"
            final = await s.backend.run(command(bike_of(lock), name, credentials=keys_of(lock)))
            failed += final["state"]["value"] != "SUCCESS"
        await s.drained()
        during = await flushed(s.daemon.pid) - before
        keep_store(folder, keep, "after")
        # A clean stop checkpoints the WAL into the database: its share of the commands' writes.
        pid = s.daemon.pid
        assert s.daemon.process is not None
        last = written(pid)
        s.daemon.process.send_signal(15)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, RuntimeError):
            while s.daemon.running:  # the last reading before the process is gone
                last = written(pid)
                await asyncio.sleep(0.005)
        await s.daemon.wait()
        total = last - before
    return {
        "commands": commands,
        "time_scale": time_scale,
        "failed": failed,
        "bytes_per_command_running": during / commands,
        "bytes_per_command_with_close": total / commands,
    }


async def rssi_jitter(s: Site, world_locks: Sequence[LockConfig]) -> None:
    """A real radio's signal strength is never the same twice: every lock's RSSI moves by a few
    dBm every half minute, so each periodic read finds it changed, as on a station."""
    rng = random.Random(19)
    while True:
        for lock in world_locks:
            await s.sim.control.set_rssi(lock.name, -60 - rng.randint(0, 6))
        await asyncio.sleep(30)


async def idle_hour(
    folder: Path, locks: int, idle_s: float, sync_interval_s: float
) -> dict[str, Any]:
    world_locks = [lock_of(i) for i in range(1, locks + 1)]
    async with site(
        folder, world_locks, watch=True, time_scale=0.2, sync_interval_s=sync_interval_s
    ) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1", timeout_s=300)
        await s.first_reads_done()
        await s.drained()
        jitter = asyncio.create_task(rssi_jitter(s, world_locks))
        before = await flushed(s.daemon.pid)
        started = time.monotonic()
        await asyncio.sleep(idle_s)
        spent = time.monotonic() - started
        idle = await flushed(s.daemon.pid) - before
        jitter.cancel()
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--heartbeat-round",
        str(folder),
        str(locks),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    return {
        "locks": locks,
        "heartbeat_round_bytes": int(out.decode().split()[-1]),
        "idle_s": spent,
        "sync_interval_s": sync_interval_s,
        "bytes": idle,
        "bytes_per_hour": idle * 3600 / spent,
    }


def held_events(folder: str, count: int) -> None:
    """In a process of its own (its ``/proc/self/io`` alone): ``count`` observed lock state changes
    written as the engine writes them (the lock's record, its ``lock_state`` event and lock
    document, one durable transaction each) while no broker takes them, then drained through the
    outbox as the link drains it (a batch handed out, every message acknowledged), the store
    closed. Prints the bytes written."""

    here = Station(
        "FR101",
        "47.976634",
        "7.825490",
        (
            RegisteredLock(
                "FR1540", "ISHAREIT-2200540", "00000000-0000-0000-0000-fc3c002a2add", Profile.SHAREE
            ),
        ),
        "0b6f4a5e",
    )

    async def run() -> int:
        path = Path(folder) / "held.db"
        async with Store(path, station=here, key=StationKey.from_bytes(bytes(32))) as store:
            outbox = Outbox(store)
            states = (LockState.LOCKING, LockState.LOCKED, LockState.UNLOCKING, LockState.UNLOCKED)
            record = LockRecord("FR1540", lock_state=LockState.UNLOCKED)
            await store.apply(Change(locks=(record,)), at=datetime.now(UTC))
            for message in await outbox.next_batch(10):
                await outbox.acknowledge(message)
            await remove_acknowledged(outbox)
            before = written(os.getpid())
            for index in range(count):
                at = datetime.now(UTC)
                state = states[index % 4]
                event = LockStateEvent(
                    **stamp(here, at, bike="FR1540"), lock_state=state, previous=record.lock_state
                )
                record = LockRecord("FR1540", lock_state=state, state_changed_at=at)
                await store.apply(Change(locks=(record,), events=(event,)), at=at)
            await outbox.connected()
            while batch := await outbox.next_batch(100):
                await outbox.acknowledge(*batch)  # the link acknowledges as PUBACKs come
                await remove_acknowledged(outbox)  # as often as the link looks, or more
        os.sync()
        return written(os.getpid()) - before

    print(asyncio.run(run()))


def heartbeat_round(folder: str, locks: int) -> None:
    """In a process of its own: what one round of heartbeat writes costs, every lock's record
    written with a new ``last_seen`` and RSSI as the engine writes a heartbeat that fell due (no
    sync of its own), its lock document published and acknowledged. Prints the bytes written."""
    registered = tuple(
        RegisteredLock(
            f"B{i:04d}",
            f"ISHAREIT-22{i:05d}",
            f"00000000-0000-0000-0000-fc3c002a{i:04x}",
            Profile.SHAREE,
        )
        for i in range(locks)
    )
    here = Station("FR101", "47.976634", "7.825490", registered, "0b6f4a5e")

    async def run() -> int:
        path = Path(folder) / "heartbeat.db"
        async with Store(path, station=here, key=StationKey.from_bytes(bytes(32))) as store:
            outbox = Outbox(store)
            at = datetime.now(UTC)
            records = [LockRecord(lock.bike, lock_state=LockState.LOCKED) for lock in registered]
            await store.apply(Change(locks=tuple(records)), at=at)
            await outbox.acknowledge(*await outbox.next_batch(10_000))
            await remove_acknowledged(outbox)
            os.sync()
            before = written(os.getpid())
            for record in records:
                seen = datetime.now(UTC)
                beat = LockRecord(
                    record.bike, lock_state=record.lock_state, last_seen=seen, rssi=-63
                )
                await store.apply(Change(locks=(beat,)), at=seen, durable=False)
            await outbox.acknowledge(*await outbox.next_batch(10_000))
            await remove_acknowledged(outbox)
            os.sync()
            return written(os.getpid()) - before

    print(asyncio.run(run()))


async def remove_acknowledged(outbox: Outbox) -> None:
    """What was acknowledged, removed from the store (at once before its removals were batched)."""
    remove = getattr(outbox, "remove_acknowledged", None)
    if remove is not None:
        await remove()


async def outage(folder: Path, events: int) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--held-events",
        str(folder),
        str(events),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    spent = int(out.decode().split()[-1])
    return {"events": events, "bytes": spent, "bytes_per_1000_events": spent * 1000 / events}


async def main(arguments: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lockgate-writes-") as directory:
        folder = Path(directory)
        results: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, "
            f"{platform.platform()}",
            "label": arguments.label,
        }
        if arguments.only in (None, "commands"):
            results["per_command"] = await per_command(
                folder / "commands", arguments.commands, arguments.keep, arguments.time_scale
            )
        if arguments.only in (None, "idle"):
            results["idle"] = await idle_hour(
                folder / "idle", arguments.locks, arguments.idle_s, arguments.sync_interval_s
            )
        if arguments.only in (None, "outage"):
            results["outage"] = await outage(folder / "outage", arguments.outage_events)
    return results


def table(results: dict[str, Any]) -> str:
    rows = [
        f"writes ({results['label']}), {results['date']}, {results['machine']}",
        "",
        "| what | KiB written |",
        "|---|---|",
    ]
    if (command := results.get("per_command")) is not None:
        rows += [
            (
                f"| per command, running ({command['commands']} commands, 2 locks, time scale "
                f"{command.get('time_scale', 0.2)}) | "
                f"{command['bytes_per_command_running'] / KIB:.1f} |"
            ),
            (
                f"| per command, the store's closing checkpoint included | "
                f"{command['bytes_per_command_with_close'] / KIB:.1f} |"
            ),
        ]
    if (idle := results.get("idle")) is not None:
        rows.append(
            f"| per idle hour at {idle['locks']} locks (sync every {idle['sync_interval_s']:.0f} s;"
            f" {idle['idle_s']:.0f} s measured) | {idle['bytes_per_hour'] / KIB:.0f} |"
        )
        rows.append(
            f"| one round of heartbeat writes at {idle['locks']} locks (every lock's last_seen "
            f"written once, as when it falls due) | {idle['heartbeat_round_bytes'] / KIB:.0f} |"
        )
    if (out := results.get("outage")) is not None:
        rows.append(
            f"| per 1,000 events held through an outage ({out['events']} events) | "
            f"{out['bytes_per_1000_events'] / KIB:.0f} |"
        )
    return "\n".join(rows)


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=40)
    parser.add_argument("--locks", type=int, default=50)
    parser.add_argument("--idle-s", type=float, default=660.0)
    parser.add_argument("--sync-interval-s", type=float, default=600.0)
    parser.add_argument("--outage-events", type=int, default=1000)
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--only", choices=("commands", "idle", "outage"))
    parser.add_argument(
        "--time-scale",
        type=float,
        default=0.2,
        help="the simulated locks' time scale for the commands (0.2: a motor of 600 ms takes"
        " 120 ms, shorter than the 0.2 s a command's steps are held; 1: as a lock takes it)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="copy the store before and after the commands into this folder (before.db, after.db"
        " and their WALs), to read what the commands' transactions wrote",
    )
    return parser.parse_args()


if __name__ == "__main__":
    if sys.argv[1:2] == ["--heartbeat-round"]:
        heartbeat_round(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    if sys.argv[1:2] == ["--held-events"]:
        held_events(sys.argv[2], int(sys.argv[3]))
        sys.exit(0)
    args = parse()
    found = asyncio.run(main(args))
    RESULTS.mkdir(exist_ok=True)
    moment = datetime.now(UTC).strftime("%Y%m%dT%H%M")
    (RESULTS / f"writes-{moment}.json").write_text(json.dumps(found, indent=2) + "\n")
    print(table(found))
