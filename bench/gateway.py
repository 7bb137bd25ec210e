"""The gateway end to end: latency, throughput, the event path, the outbox, footprint and growth.

Everything is real: a mosquitto on a loopback port, the simulator (``lockgate-sim`` child process
on a private dbus-daemon, time scale 1), ``lockgate run`` as a child process started as systemd
starts it (notify socket), and a backend speaking the contract with aiomqtt and paho (the tests'
backend, tests/e2e/backend.py: plain JSON, no lockgate models). Measured:

- latency: one sharee lock (``connect_ms`` 250, ``motor_ms`` 600, ``watch`` off so that every
  command connects), commands one at a time: end to end (published → SUCCESS received) and the
  gateway's share (end to end less the lock's connect and motor time), CPU per command of the
  daemon and of the simulator apart (``/proc/PID/stat``);
- throughput: a burst (one unlock per lock at once, then the locks again) and a sustained load
  (``2 x slots`` commands kept in flight) per number of locks and slots, against the ideal
  ``min(slots / (connect + motor), 1 / connect)`` (one connection attempt per adapter at a time);
- event path: a watched lock closed by hand → the ``locked`` event received, less the bolt's own
  travel (0.3 s);
- outbox: events queued in the store while no broker was there, then delivered when the daemon
  starts: messages per second at the backend, the store's size on disk;
- footprint: start to READY, resident memory and CPU while idle, per number of locks; the periodic
  syncs' share is added from the CPU the first reads took;
- growth: those figures against the number of locks, plotted (``bench/results/growth.png``).

    .venv/bin/python bench/gateway.py                  # the defaults: a few minutes
    .venv/bin/python bench/gateway.py --full           # 200 commands, every locks x slots, 100 000

Results go to ``bench/results/gateway-<date>.json``; a Markdown table is printed. ``--profile
FILE.html`` runs the daemon under pyinstrument during the latency run; ``--asyncio-debug`` turns
on asyncio's debug mode in the daemon (its slow-callback warnings go to the daemon's log, kept in
the results folder).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' broker, station and backend helpers

import matplotlib  # noqa: E402 - after the path above

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from lockgate.config import load  # noqa: E402
from lockgate.contract.documents import LockStateEvent  # noqa: E402
from lockgate.model import LockState  # noqa: E402
from lockgate.service.settings import station  # noqa: E402
from lockgate.store import Change, Store, load_station_key  # noqa: E402
from lockgate_sim.testing import RunningSimulator, run_simulator  # noqa: E402
from lockgate_sim.world import LockConfig  # noqa: E402
from tests.brokers import Mosquitto, running_mosquitto  # noqa: E402
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

CONNECT_MS = 250
MOTOR_MS = 600
LATENCY_LOCKS = 5  # commands one at a time on each station: an unlock and a lock on each
HAND_TRAVEL_MS = 300  # the simulator's bolt pushed by hand (lockgate_sim.firmware.HAND_TRAVEL_S)
RESULTS = ROOT / "bench" / "results"
TICKS = os.sysconf("SC_CLK_TCK")


# --- processes --------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/PID/stat`` fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class ProfiledDaemon(Daemon):
    """``lockgate run``, optionally under pyinstrument."""

    def __init__(self, *args: Any, profile: Path | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profile = profile

    async def start(self) -> None:
        environ = {k: v for k, v in os.environ.items() if k != "DBUS_SYSTEM_BUS_ADDRESS"}
        prefix: list[str] = []
        if self.profile is not None and self.profile.name.endswith(".cpu.prof"):
            prefix = [str(Path(__file__).with_name("cpu_profile.py")), str(self.profile)]
        elif self.profile is not None and self.profile.suffix == ".prof":
            prefix = ["-m", "cProfile", "-o", str(self.profile)]
        elif self.profile is not None:
            renderer = "html" if self.profile.suffix == ".html" else "text"
            prefix = ["-m", "pyinstrument", "-r", renderer, "-o", str(self.profile)]
        with self.log.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                *prefix,
                "-m",
                "lockgate",
                "run",
                "--config",
                str(self.config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=environ | self.environ,
            )
        self.starts += 1


@dataclass
class Site:
    broker: Mosquitto
    sim: RunningSimulator
    daemon: ProfiledDaemon
    backend: Backend
    notify: NotifySocket
    folder: Path
    started: float = 0.0
    ready_s: float = 0.0

    @property
    def sim_pid(self) -> int:
        assert self.sim.pid is not None
        return self.sim.pid

    async def start(self) -> None:
        self.started = time.monotonic()
        await self.daemon.start()
        await self.notify.wait_for("READY=1", timeout_s=600)
        self.ready_s = time.monotonic() - self.started

    async def first_reads_done(self, timeout_s: float = 600) -> float:
        """Seconds from the start until the daemon had read every lock once (its log says so);
        READY comes before that, once the station takes commands."""
        async with asyncio.timeout(timeout_s):
            # The daemon's log is a file another process writes: polled, as a tail would.
            while b'"first reads done"' not in self.daemon.log.read_bytes():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        return time.monotonic() - self.started

    async def spent_s(self, lock: LockConfig) -> float:
        """What the simulated lock has spent so far on connects and motor runs, by its own clock."""
        times = await self.sim.control.times(lock.name)
        return times.connect_s_total + times.motion_s_total


@contextlib.asynccontextmanager
async def site(
    folder: Path,
    locks: Sequence[LockConfig],
    *,
    slots: int = 3,
    watch: bool = True,
    profile: Path | None = None,
    asyncio_debug: bool = False,
    backend_topics: tuple[str, ...] = ("#",),
    broker_inflight: int = 0,
    ble: str = "",
    daemon_src: Path | None = None,
) -> AsyncIterator[Site]:
    """One station; ``daemon_src``: run the daemon from another tree's ``src`` (the same
    virtual environment, that tree first on ``PYTHONPATH``), to measure it beside this one."""
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    async with (
        running_mosquitto(folder / "broker", max_inflight=broker_inflight) as broker,
        run_simulator(world(*locks, slots=slots), time_scale=1.0, subprocess=True) as sim,
        notify_socket(folder) as notify,
        backend(broker.port, station=STATION, topics=backend_topics) as peer,
    ):
        config = write_config(
            folder,
            broker_port=broker.port,
            bus_address=sim.bus_address,
            sim=sim.world,
            slots=slots,
            watch=watch,
            sync_interval_s=600.0,
            ble=ble,
        )
        environ = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "10000000"}
        if asyncio_debug:
            environ["PYTHONASYNCIODEBUG"] = "1"
        if daemon_src is not None:
            environ["PYTHONPATH"] = str(daemon_src)
        daemon = ProfiledDaemon(config, folder / "daemon.log", environ=environ, profile=profile)
        try:
            yield Site(broker, sim, daemon, peer, notify, folder)
        finally:
            if daemon.running:
                with contextlib.suppress(TimeoutError):
                    await daemon.terminate(timeout_s=30)


def bench_lock(index: int) -> LockConfig:
    return sharee(index, connect_ms=CONNECT_MS, motor_ms=MOTOR_MS)


def locks(count: int) -> list[LockConfig]:
    return [bench_lock(i) for i in range(1, count + 1)]


# --- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": statistics.median(values) if values else float("nan"),
        "p99": percentile(values, 0.99),
        "max": max(values) if values else float("nan"),
    }


# --- latency ----------------------------------------------------------------------------------


async def timed_command(peer: Backend, lock: LockConfig, name: str) -> tuple[float, dict[str, Any]]:
    """One command to its end; milliseconds from publishing to the final document received."""
    body = command(bike_of(lock), name, credentials=keys_of(lock))
    topic = f"commands/{body['id']}"
    started = time.monotonic()
    final = await peer.run(body, timeout_s=120)
    at = next(
        m.at
        for m in peer.messages(topic)
        if json.loads(m.payload)["state"]["value"] in ("SUCCESS", "ERROR")
    )
    return (at - started) * 1000, final


async def latency(
    folder: Path, commands: int, *, profile: Path | None, debug: bool
) -> dict[str, Any]:
    lock = bench_lock(1)
    async with site(
        folder, [lock], slots=3, watch=False, profile=profile, asyncio_debug=debug
    ) as s:
        await s.start()
        await timed_command(s.backend, lock, "unlock")  # warm-up, not counted
        await timed_command(s.backend, lock, "lock")
        totals: list[float] = []
        measured: list[float] = []
        # CPU over the whole run, gaps included: a link is let go after the answer, and its
        # disconnect is the command's work all the same.
        daemon_cpu, sim_cpu = cpu_s(s.daemon.pid), cpu_s(s.sim_pid)
        for index in range(commands):
            name = "unlock" if index % 2 == 0 else "lock"
            spent = await s.spent_s(lock)
            total_ms, final = await timed_command(s.backend, lock, name)
            if final["state"]["value"] != "SUCCESS":
                raise RuntimeError(f"a benchmark command failed: {final}")
            totals.append(total_ms)
            measured.append(total_ms - (await s.spent_s(lock) - spent) * 1000)
        daemon_cpu = cpu_s(s.daemon.pid) - daemon_cpu
        sim_cpu = cpu_s(s.sim_pid) - sim_cpu
        view = await s.sim.control.lock(lock.name)
    shares = [t - CONNECT_MS - MOTOR_MS for t in totals]
    return {
        "commands": commands,
        "end_to_end_ms": summary(totals),
        "gateway_share_ms": summary(measured),
        "gateway_share_nominal_ms": summary(shares),
        "cpu_per_command_ms": {
            "daemon": daemon_cpu * 1000 / commands,
            "simulator": sim_cpu * 1000 / commands,
        },
        "lock_motions": view.motor_opened + view.motor_closed,
        "load": load_average(),
    }


# --- throughput, event path, footprint --------------------------------------------------------


def ideal_rate(slots: int) -> float:
    return min(slots / ((CONNECT_MS + MOTOR_MS) / 1000), 1000 / CONNECT_MS)


async def burst(s: Site, world_locks: Sequence[LockConfig], size: int) -> dict[str, Any]:
    """``size`` unlocks published at once, then ``size`` locks at once."""
    chosen = list(world_locks[:size])
    rates = []
    reasons: list[str] = []
    for name in ("unlock", "lock"):
        started = time.monotonic()
        results = await asyncio.gather(*(timed_command(s.backend, k, name) for k in chosen))
        elapsed = time.monotonic() - started
        failed = [f for _, f in results if f["state"]["value"] != "SUCCESS"]
        reasons += [f"{f['error_code']}: {f['state'].get('reason')}" for f in failed]
        rates.append((len(chosen) - len(failed)) / elapsed)
    # A failed command is counted and said, not hidden: the rate counts successes only.
    return {"commands": 2 * len(chosen), "rate": statistics.mean(rates), "failed": reasons}


async def sustained(
    s: Site, world_locks: Sequence[LockConfig], slots: int, seconds: float
) -> dict[str, Any]:
    """``2 x slots`` commands in flight for ``seconds``, each lock alternately opened and closed."""
    free = list(world_locks)
    is_open: dict[str, bool] = {lock.name: False for lock in world_locks}
    done: list[float] = []
    failed: list[str] = []
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        while time.monotonic() < stop_at:
            lock = free.pop(0)
            name = "lock" if is_open[lock.name] else "unlock"
            _, final = await timed_command(s.backend, lock, name)
            if final["state"]["value"] != "SUCCESS":
                failed.append(f"{final['error_code']}: {final['state'].get('reason')}")
            else:
                is_open[lock.name] = not is_open[lock.name]
                done.append(time.monotonic())
            free.append(lock)

    started = time.monotonic()
    daemon_cpu = cpu_s(s.daemon.pid)
    await asyncio.gather(*(worker() for _ in range(min(2 * slots, len(world_locks)))))
    elapsed = time.monotonic() - started
    cpu = cpu_s(s.daemon.pid) - daemon_cpu
    # Close what is still open, so the next phase starts from a station at rest.
    opened = [k for k in world_locks if is_open[k.name]]
    await asyncio.gather(*(timed_command(s.backend, k, "lock") for k in opened))
    return {
        "commands": len(done),
        "failed": failed,
        "rate": len(done) / elapsed,
        "cpu_per_command_ms": cpu * 1000 / max(1, len(done)),
    }


async def latency_at_scale(s: Site, chosen: Sequence[LockConfig]) -> dict[str, Any]:
    """Commands one at a time on a station of many locks (watched as on a station: an unlock
    connects, the lock after it finds the watch's link): the gateway's share, each command less
    what its lock measured of its own connect and motor run."""
    shares: list[float] = []
    for lock in chosen:
        for name in ("unlock", "lock"):
            spent = await s.spent_s(lock)
            total_ms, final = await timed_command(s.backend, lock, name)
            if final["state"]["value"] != "SUCCESS":
                raise RuntimeError(f"a benchmark command failed: {final}")
            shares.append(total_ms - (await s.spent_s(lock) - spent) * 1000)
    return {"gateway_share_ms": summary(shares)}


async def event_path(s: Site, lock: LockConfig, trials: int) -> dict[str, Any]:
    bike = bike_of(lock)
    beyond: list[float] = []
    for _ in range(trials):
        _, final = await timed_command(s.backend, lock, "unlock")
        assert final["state"]["value"] == "SUCCESS", final
        await asyncio.sleep(0.5)  # the watch is listening again
        before = len(s.backend.events(type="lock_state", bike=bike, lock_state="locked"))
        started = time.monotonic()
        await s.sim.control.close_by_hand(lock.name)

        def closed(seen: int = before) -> bool:
            return len(s.backend.events(type="lock_state", bike=bike, lock_state="locked")) > seen

        await s.backend.wait_for(closed, timeout_s=30)
        arrived = [
            m.at
            for m in s.backend.messages("events")
            if (doc := m.json()).get("bike") == bike and doc.get("lock_state") == "locked"
        ][-1]
        beyond.append((arrived - started) * 1000 - HAND_TRAVEL_MS)
    return {"trials": trials, "beyond_bolt_ms": summary(beyond)}


async def station_run(
    folder: Path,
    count: int,
    slots_list: Sequence[int],
    *,
    idle_s: float,
    sustain_s: float,
    burst_size: int,
    event_trials: int,
) -> dict[str, Any]:
    """One station of ``count`` locks per slot count: start, idle, event path, burst, sustained."""
    world_locks = locks(count)
    runs: list[dict[str, Any]] = []
    for slots in slots_list:
        async with site(folder / f"{count}-{slots}", world_locks, slots=slots) as s:
            await s.start()
            first_reads_s = await s.first_reads_done()
            start_cpu = cpu_s(s.daemon.pid)  # imports, and the first read of every lock
            await asyncio.sleep(2.0)  # the first reads' documents go out
            idle_from = cpu_s(s.daemon.pid)
            await asyncio.sleep(idle_s)
            idle_cpu = (cpu_s(s.daemon.pid) - idle_from) / idle_s
            sync_cpu = start_cpu / count / 600.0 * count  # a read per lock per sync interval
            result: dict[str, Any] = {
                "locks": count,
                "slots": slots,
                "ready_s": s.ready_s,
                "first_reads_s": first_reads_s,
                "idle_core_percent": idle_cpu * 100,
                "idle_with_syncs_core_percent": (idle_cpu + sync_cpu) * 100,
                "rss_mb": rss_mb(s.daemon.pid),
                "ideal_rate": ideal_rate(slots),
                "load": load_average(),
            }
            result["latency"] = await latency_at_scale(s, world_locks[:LATENCY_LOCKS])
            if event_trials:
                result["event_path"] = await event_path(s, world_locks[0], event_trials)
            # Up to four commands per slot each way: a burst of a minute at one slot says no more.
            b = await burst(s, world_locks, min(burst_size, count, 4 * slots))
            result["burst"] = b | {"ratio": b["rate"] / ideal_rate(slots)}
            u = await sustained(s, world_locks, slots, sustain_s)
            result["sustained"] = u | {"ratio": u["rate"] / ideal_rate(slots)}
            result["rss_after_load_mb"] = rss_mb(s.daemon.pid)
            result["daemon_alive"] = s.daemon.running
            if b["failed"] or u["failed"]:
                # Kept for whoever looks into it: the scratch folder goes with the run.
                kept = RESULTS / f"daemon-{count}-{slots}-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
                kept.write_bytes(s.daemon.log.read_bytes())
                result["daemon_log"] = kept.name
            runs.append(result)
            print(json.dumps(result), flush=True)
    return {"locks": count, "runs": runs}


# --- outbox -----------------------------------------------------------------------------------


async def fill_outbox(config_path: Path, depth: int) -> None:
    """``depth`` lock_state events queued in the daemon's own store, as an outage leaves them."""
    config = load(config_path)
    here = station(config, "outage")
    states = [LockState.UNLOCKING, LockState.UNLOCKED, LockState.LOCKING, LockState.LOCKED]
    key = load_station_key(config.store.key_file)
    async with Store(config.store.path, station=here, key=key, max_outbox=depth + 1000) as store:
        written = 0
        while written < depth:
            batch = min(1000, depth - written)
            events = tuple(
                LockStateEvent(
                    event_id=f"outage-{written + i}",
                    station=here.id,
                    boot_id=here.boot_id,
                    seq=0,
                    bike=here.locks[0].bike,
                    at=datetime.now(UTC),
                    latitude=here.latitude,
                    longitude=here.longitude,
                    lock_state=states[(written + i) % 4],
                    previous=states[(written + i - 1) % 4],
                )
                for i in range(batch)
            )
            await store.apply(Change(events=events), at=datetime.now(UTC))
            written += batch


def _events_counter(port: int, topic: str) -> tuple[paho.Client, list[float]]:
    """A paho subscriber that notes the arrival time of every event (a thread of its own)."""
    arrivals: list[float] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-outbox-{os.getpid()}")
    client.on_message = lambda *_: arrivals.append(time.monotonic())
    client.connect("127.0.0.1", port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    return client, arrivals


async def outbox(folder: Path, depth: int) -> dict[str, Any]:
    lock = bench_lock(1)
    # The events are counted by a paho subscriber of their own; the tests' backend (which keeps
    # every message) takes only the status, so as not to compete with the daemon for the CPU.
    async with site(folder, [lock], backend_topics=("status",)) as s:
        config_path = s.daemon.config
        max_outbox = depth + 1000
        text = config_path.read_text().replace("[store]", f"[store]\nmax_outbox = {max_outbox}")
        config_path.write_text(text)
        filled = time.monotonic()
        await fill_outbox(config_path, depth)
        fill_s = time.monotonic() - filled
        db = Path(str(config_path.parent / "lockgate.db"))
        size = sum(p.stat().st_size for p in db.parent.glob("lockgate.db*"))
        client, arrivals = _events_counter(s.broker.port, f"lockgate/v1/{STATION}/events")
        try:
            await asyncio.sleep(0.5)
            started = time.monotonic()
            await s.daemon.start()
            async with asyncio.timeout(600):
                while len(arrivals) < depth:  # noqa: ASYNC110 - paho's thread fills the list
                    await asyncio.sleep(0.2)
            first, last = arrivals[0], arrivals[depth - 1]
        finally:
            client.loop_stop()
            client.disconnect()
    return {
        "events": depth,
        "rate": (depth - 1) / (last - first),
        "start_to_last_s": last - started,
        "store_mb": size / 1e6,
        "fill_s": fill_s,
        "load": load_average(),
    }


# --- output -----------------------------------------------------------------------------------


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores {cpu}, {memory:.0f} GiB, Python {platform.python_version()}"


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def plot(stations: list[dict[str, Any]], path: Path) -> None:
    rows = [r for st in stations for r in st["runs"] if r["slots"] == 3] or [
        st["runs"][0] for st in stations
    ]
    counts = [r["locks"] for r in rows]
    figure, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    axes[0].plot(counts, [r["ready_s"] for r in rows], "o-", label="start to READY (s)")
    axes[0].plot(
        counts, [r["sustained"]["ratio"] * 10 for r in rows], "s-", label="throughput / ideal x 10"
    )
    axes[0].set_title("start and throughput")
    axes[1].plot(counts, [r["idle_core_percent"] for r in rows], "o-", label="idle")
    axes[1].plot(
        counts, [r["idle_with_syncs_core_percent"] for r in rows], "s-", label="idle + syncs"
    )
    axes[1].plot(
        counts, [r["sustained"]["cpu_per_command_ms"] for r in rows], "^-", label="ms per command"
    )
    axes[1].set_title("CPU (% of a core; ms per command)")
    axes[2].plot(counts, [r["rss_mb"] for r in rows], "o-", label="idle")
    axes[2].plot(counts, [r["rss_after_load_mb"] for r in rows], "s-", label="after load")
    axes[2].set_title("resident memory (MB)")
    for key, marker in (("p50", "o-"), ("p99", "s-")):
        shares = [r["latency"]["gateway_share_ms"][key] for r in rows]
        axes[3].plot(counts, shares, marker, label=key)
    axes[3].set_title("gateway share of a command (ms)")
    for axis in axes:
        axis.set_xlabel("locks")
        axis.legend(fontsize=7)
        axis.grid(visible=True, alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def _row(figure: str, value: str, target: str, load: str) -> str:
    return f"| {figure} | {value} | {target} | {load} |"


def _three(d: dict[str, float], unit: str) -> str:
    return f"{d['p50']:.1f} / {d['p99']:.1f} / {d['max']:.1f} {unit}"


def table(results: dict[str, Any]) -> str:
    lines = [
        f"Machine: {results['machine']}; date {results['date']}; commit {results['commit']}",
        "",
        "| figure | value | target | load (1/5/15 min) |",
        "|---|---|---|---|",
    ]
    lat = results.get("latency")
    if lat:
        e, g, c, load = (
            lat["end_to_end_ms"],
            lat["gateway_share_ms"],
            lat["cpu_per_command_ms"],
            lat["load"],
        )
        cpu = f"{c['daemon']:.1f} / {c['simulator']:.1f} ms"
        nominal = lat["gateway_share_nominal_ms"]
        lines += [
            _row(f"command end to end p50 / p99 / max (n={e['n']})", _three(e, "ms"), "", load),
            _row(
                "gateway share p50 / p99 / max (less the lock's measured connect and motor run)",
                _three(g, "ms"),
                "< 5 / < 20 ms",
                load,
            ),
            _row("gateway share, less the nominal 250 + 600 ms", _three(nominal, "ms"), "", load),
            _row("CPU per command: daemon / simulator", cpu, "< 5 ms", load),
        ]
    for st in results.get("stations", []):
        for r in st["runs"]:
            tag, load = f"{r['locks']} locks, {r['slots']} slots", r["load"]
            b, u = r["burst"], r["sustained"]
            rates = f"{b['rate']:.2f}/s ({b['ratio']:.2f}) / {u['rate']:.2f}/s ({u['ratio']:.2f})"
            failures = len(b.get("failed", ())) + len(u.get("failed", ()))
            if failures:
                rates += f"; {failures} failed"
            idle = (
                f"{r['idle_core_percent']:.2f} % / {r['idle_with_syncs_core_percent']:.2f} % / "
                f"{r['rss_mb']:.1f} MB"
            )
            lines += [
                _row(
                    f"{tag}: burst / sustained, of ideal {r['ideal_rate']:.2f}/s",
                    rates,
                    "≥ 0.95 (50/3)",
                    load,
                ),
                _row(
                    f"{tag}: CPU per command under load",
                    f"{u['cpu_per_command_ms']:.1f} ms",
                    "",
                    load,
                ),
                _row(
                    f"{tag}: start to READY / every lock read once",
                    f"{r['ready_s']:.2f} s / {r['first_reads_s']:.1f} s",
                    "< 1.5 s",
                    load,
                ),
                _row(
                    f"{tag}: gateway share, commands one at a time, p50 / p99 / max",
                    _three(r["latency"]["gateway_share_ms"], "ms"),
                    "< 5 / < 20 ms",
                    load,
                ),
                _row(f"{tag}: idle CPU / with syncs / RSS", idle, "< 0.5 % / < 60 MB (50)", load),
            ]
            if "event_path" in r:
                ev = r["event_path"]["beyond_bolt_ms"]
                lines.append(
                    _row(
                        f"manual close → backend beyond the bolt, p50 / p99 (n={ev['n']})",
                        f"{ev['p50']:.1f} / {ev['p99']:.1f} ms",
                        "p99 < 150 ms",
                        load,
                    )
                )
    out = results.get("outbox")
    if out:
        lines += [
            _row(
                f"outbox: {out['events']} events delivered",
                f"{out['rate']:.0f} msg/s",
                "≥ 5000",
                out["load"],
            ),
            _row(
                f"outbox: store on disk at {out['events']}",
                f"{out['store_mb']:.1f} MB",
                "",
                out["load"],
            ),
        ]
    return "\n".join(lines)


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "load_at_start": load_average(),
    }
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-") as scratch:
        folder = Path(scratch)
        if "latency" in arguments.only:
            results["latency"] = await latency(
                folder / "latency",
                arguments.commands,
                profile=arguments.profile,
                debug=arguments.asyncio_debug,
            )
            print(json.dumps(results["latency"]), flush=True)
            if arguments.asyncio_debug:
                (RESULTS / "daemon-debug.log").write_bytes(
                    (folder / "latency" / "daemon.log").read_bytes()
                )
        if "stations" in arguments.only:
            results["stations"] = []
            for count in arguments.locks:
                slots = arguments.slots if (arguments.full or count == 50) else [3]
                results["stations"].append(
                    await station_run(
                        folder / f"station-{count}",
                        count,
                        slots,
                        idle_s=arguments.idle,
                        sustain_s=arguments.sustain,
                        burst_size=arguments.burst,
                        event_trials=arguments.events if count == min(arguments.locks) else 0,
                    )
                )
        if "outbox" in arguments.only:
            results["outbox"] = await outbox(folder / "outbox", arguments.outbox)
            print(json.dumps(results["outbox"]), flush=True)
    results["load_at_end"] = load_average()
    return results


def main() -> None:
    # The backend's client warns when a burst leaves many publishes pending: expected here.
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="the issue's full counts")
    parser.add_argument("--commands", type=int, default=None, help="latency commands (60; 200)")
    parser.add_argument("--locks", type=int, nargs="+", default=[12, 50, 200])
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 3, 5])
    parser.add_argument("--burst", type=int, default=24, help="commands in a burst, per direction")
    parser.add_argument("--sustain", type=float, default=None, help="sustained load, s (15; 40)")
    parser.add_argument("--idle", type=float, default=None, help="idle window, s (10; 60)")
    parser.add_argument("--events", type=int, default=15, help="manual closes timed")
    parser.add_argument("--outbox", type=int, default=None, help="events (20 000; 100 000)")
    parser.add_argument(
        "--only",
        nargs="+",
        default=["latency", "stations", "outbox"],
        choices=["latency", "stations", "outbox"],
    )
    parser.add_argument("--profile", type=Path, default=None, help="pyinstrument HTML (latency)")
    parser.add_argument("--asyncio-debug", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help="the JSON file")
    arguments = parser.parse_args()
    full = arguments.full
    arguments.commands = arguments.commands or (200 if full else 60)
    arguments.sustain = arguments.sustain or (40.0 if full else 15.0)
    arguments.idle = arguments.idle or (60.0 if full else 10.0)
    arguments.outbox = arguments.outbox or (100_000 if full else 20_000)
    RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(main_async(arguments))
    stations = results.get("stations")
    if stations:
        plot(stations, RESULTS / "growth.png")
    output = arguments.output or RESULTS / f"gateway-{datetime.now(UTC):%Y%m%dT%H%M}.json"
    output.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nresults: {output}")


if __name__ == "__main__":
    threading.excepthook = threading.__excepthook__
    main()
