"""The radio's faults under load: commands stalled behind watches, and BlueZ restarted a hundred
times under a steady command load.

Two parts, each run alone with ``--only``:

- ``stall``: ten runs each of ``bench/gateway.py``'s sustained load (``2 x slots`` commands in
  flight, each lock opened and closed in turn, ``watch`` on) at 12 locks / 3 slots and at 50 / 3,
  each on a fresh station (mosquitto, ``lockgate-sim`` child process at time scale 1, ``lockgate
  run`` child process): per run the commands, the failures by error code, the ``TIMED_OUT``
  commands (goal 0: the minute-long stall) and the rate against the ideal.
- ``restarts``: one station of 20 locks and two adapters (every lock heard by both, 20 dB louder
  on one: half of them on hci0, half on hci1), the daemon configured with ``adapters = ["hci0",
  "hci1"]`` and ``watch`` on; a steady load (``--workers`` backends' loops, each opening and then
  closing its own locks in turn, each command re-sent until its receipt, ``timeout_at`` 60 s)
  while BlueZ is restarted ``--restarts`` times (``bluez_restart(down_s)`` with ``down_s`` drawn
  from 0..``--max-down``, seeded). Measured: from BlueZ back (the simulator's ``show().bluez``
  polled from the moment the restart call returned until it says ``running``) to the next
  command's SUCCESS received by the backend; commands lost (no final document) or ended twice;
  lock motions beyond the commands' (the simulator's motor counters against the commands sent
  per lock); daemon restarts (the bench restarts a daemon that exited, as systemd would, and
  counts it); the commands' outcomes by error code; the daemon's RSS before and after. The next
  restart comes a random ``--gap`` after the previous one's recovery (or after 60 s without one).
  Should the simulator's own bluetoothd not come back from a restart (a simulator fault, see
  bench/README.md), the station's round ends there and a fresh station goes on with the restarts
  left; the commands then in flight are counted as cut short, not lost.

    .venv/bin/python bench/radio.py                    # both parts, the issue's counts
    .venv/bin/python bench/radio.py --only restarts --restarts 20

Results go to ``bench/results/radio-<date>.json``; a Markdown table is printed. A run whose
commands failed keeps the daemon's log in ``bench/results`` (``daemon-radio-...log``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import io
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dbus_fast import Message, MessageType
from gateway import (
    RESULTS,
    ProfiledDaemon,
    commit,
    ideal_rate,
    load_average,
    locks,
    machine,
    rss_mb,
    site,
    summary,
    sustained,
)

from lockgate_sim.testing import RunningSimulator, run_simulator
from lockgate_sim.world import AdapterConfig, LockConfig, WorldConfig
from tests.brokers import running_mosquitto
from tests.e2e.backend import Backend, backend, command
from tests.e2e.station import (
    STATION,
    NotifySocket,
    bike_of,
    keys_of,
    notify_socket,
    write_config,
)

FINAL = ("SUCCESS", "ERROR")
HCI1_ADDRESS = "00:1A:7D:DA:71:14"
LOUD, QUIET = -55, -75  # dBm: the adapter a lock is near, the one across the station
BACK_POLL_S = 0.02  # how often show().bluez is read while BlueZ is away
COMMAND_TIMEOUT_S = 60.0  # each command's timeout_at
RECOVERY_LIMIT_S = 60.0  # a restart not followed by a success within this is "not recovered"
BACK_LIMIT_S = 15.0  # BlueZ not back this long after its down_s: the simulator is stuck
STUCK_GRACE_S = 5.0  # what is in flight when the simulator got stuck may still end meanwhile
MAX_ROUNDS = 20
BULKY = ("per_restart", "per_lock", "rounds", "daemon_log_summary")


def keep_log(log: Path, tag: str) -> str:
    kept = RESULTS / f"daemon-radio-{tag}-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    kept.write_bytes(log.read_bytes())
    return kept.name


def code_of(failure: str) -> str:
    """``sustained``'s failures read ``CODE: reason``."""
    return failure.split(":", 1)[0]


# --- part 1: the stall ---------------------------------------------------------------------


async def stall_run(folder: Path, count: int, slots: int, sustain_s: float) -> dict[str, Any]:
    """One fresh station of ``count`` locks: READY, every lock read once, the sustained load."""
    world_locks = locks(count)
    async with site(folder, world_locks, slots=slots) as s:
        await s.start()
        await s.first_reads_done()
        load = load_average()
        u = await sustained(s, world_locks, slots, sustain_s)
        codes = collections.Counter(code_of(f) for f in u["failed"])
        result: dict[str, Any] = {
            "locks": count,
            "slots": slots,
            "commands": u["commands"],
            "failed": u["failed"],
            "failed_by_code": dict(codes),
            "timed_out": codes.get("TIMED_OUT", 0),
            "rate": u["rate"],
            "ratio": u["rate"] / ideal_rate(slots),
            "cpu_per_command_ms": u["cpu_per_command_ms"],
            "daemon_alive": s.daemon.running,
            "load": load,
        }
        if u["failed"] or not s.daemon.running:
            result["daemon_log"] = keep_log(s.daemon.log, f"stall-{count}-{slots}")
    return result


async def stall(folder: Path, runs: int, stations: Sequence[int], sustain_s: float) -> list[Any]:
    results: list[dict[str, Any]] = []
    for count in stations:
        for index in range(runs):
            result = await stall_run(folder / f"stall-{count}-{index}", count, 3, sustain_s)
            result["run"] = index + 1
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


# --- part 2: BlueZ restarted under load ----------------------------------------------------


def two_adapter_world(count: int, slots: int) -> WorldConfig:
    """``count`` locks heard by hci0 and hci1, the odd ones louder on hci0, the even on hci1."""
    chosen: list[LockConfig] = []
    for index, lock in enumerate(locks(count), start=1):
        near_hci0 = index % 2 == 1
        chosen.append(
            lock.model_copy(
                update={
                    "rssi": LOUD if near_hci0 else QUIET,
                    "rssi_by_adapter": {"hci1": QUIET if near_hci0 else LOUD},
                }
            )
        )
    return WorldConfig.model_validate(
        {
            "adapter": AdapterConfig(name="hci0", connection_slots=slots),
            "adapters": [AdapterConfig(name="hci1", address=HCI1_ADDRESS, connection_slots=slots)],
            "lock": chosen,
        }
    )


@dataclass
class Sent:
    """One command the load sent, as the backend saw it."""

    id: str
    lock: str
    name: str
    sent_at: float
    final: dict[str, Any] | None = None
    final_at: float | None = None


@dataclass
class Restart:
    index: int
    down_s: float
    called: float
    returned: float = 0.0
    back: float = 0.0
    polls: int = 0
    mark: int = 0
    """How many messages the backend had received when the restart was called."""
    recovery: Recovery | None = None


@dataclass
class Load:
    """The backend's loops: each opens, then closes, its own locks in turn."""

    peer: Backend
    owned: list[list[LockConfig]]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    sent: list[Sent] = field(default_factory=list)
    receipt_timeouts: int = 0

    async def worker(self, mine: list[LockConfig]) -> None:
        is_open = {lock.name: False for lock in mine}
        while not self.stop.is_set():
            for lock in mine:
                if self.stop.is_set():
                    return
                name = "lock" if is_open[lock.name] else "unlock"
                body = command(bike_of(lock), name, credentials=keys_of(lock))
                entry = Sent(body["id"], lock.name, name, time.monotonic())
                self.sent.append(entry)
                try:
                    await self.peer.send(body, timeout_s=COMMAND_TIMEOUT_S)
                except TimeoutError:
                    self.receipt_timeouts += 1
                    continue
                try:
                    final = await self.peer.final(body["id"], timeout_s=COMMAND_TIMEOUT_S + 15)
                except TimeoutError:
                    continue  # counted as lost at the end, unless it arrives by then
                if final["state"]["value"] == "SUCCESS":
                    is_open[lock.name] = name == "unlock"
                # After an ERROR the same command goes again: the lock may or may not have moved,
                # and an unlock of an open lock (a lock of a closed one) moves nothing.

    async def run(self) -> None:
        await asyncio.gather(*(self.worker(mine) for mine in self.owned))


async def bluez_back(sim: RunningSimulator, restart: Restart) -> None:
    """Until the simulator says bluetoothd is running again (polled every 20 ms)."""
    while True:
        view = await sim.control.show()
        restart.polls += 1
        if view.bluez == "running":
            restart.back = time.monotonic()
            return
        await asyncio.sleep(BACK_POLL_S)


class Recovery:
    """Reads the backend's messages from a restart on, once each: the first SUCCESS received after
    BlueZ is back of a command whose SENT document (the lock was written to) was received after the
    restart call, i.e. a command that went through the new bluetoothd, not one that had reached
    its lock before the restart; and the first SUCCESS of any command after BlueZ is back."""

    def __init__(self, peer: Backend, restart: Restart) -> None:
        self.peer = peer
        self.restart = restart
        self.cursor = restart.mark
        self.sent_after: set[str] = set()
        self.fresh: float | None = None
        self.any: float | None = None

    def read(self, until: float = float("inf")) -> float | None:
        """Read what arrived (up to ``until``); the fresh success's arrival, once seen."""
        restart = self.restart
        for message in self.peer.messages()[self.cursor :]:
            if message.at > until or self.fresh is not None:
                break
            self.cursor += 1
            if message.at <= restart.called or not message.topic.startswith("commands/"):
                continue
            state = message.json()["state"]["value"]
            command_id = message.topic.removeprefix("commands/")
            if state == "SENT":
                self.sent_after.add(command_id)
            elif state == "SUCCESS" and message.at > restart.back:
                if self.any is None:
                    self.any = message.at
                if command_id in self.sent_after:
                    self.fresh = message.at
        return self.fresh


async def bus_connections(sim: RunningSimulator, daemon_pid: int) -> dict[str, int]:
    """Connections on the simulator's bus, by the process that holds them: a client that never
    closes its D-Bus connections runs into the dbus-daemon's limit per user."""
    bus = sim.control.bus

    async def ask(member: str, signature: str = "", body: list[Any] | None = None) -> Any:
        reply = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        return reply.body[0] if reply.message_type is MessageType.METHOD_RETURN else None

    counts: collections.Counter[str] = collections.Counter()
    for name in await ask("ListNames"):
        if not str(name).startswith(":"):
            continue
        pid = await ask("GetConnectionUnixProcessID", "s", [name])
        sim_pid = sim.pid if sim.pid is not None else os.getpid()
        owner = "daemon" if pid == daemon_pid else "simulator" if pid == sim_pid else "other"
        counts[owner] += 1
    return dict(counts)


def stacks() -> str:
    """Every task of this process and where it waits (an in-process simulator's among them)."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- {task.get_name()}\n")
        task.print_stack(file=out)
    return out.getvalue()


def daemon_log_counts(log: Path) -> dict[str, Any]:
    """What the daemon said of the radio and of its operations (its JSON log lines)."""
    events: collections.Counter[str] = collections.Counter()
    outcomes: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    for line in log.read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        event = str(entry.get("event", ""))
        if event in (
            "adapter down",
            "adapter up",
            "radio back",
            "radio down: commands wait for it",
        ):
            events[event] += 1
        elif event == "operation ended":
            key = f"{entry.get('operation')} {entry.get('outcome')}"
            outcomes[key] += 1
            if entry.get("outcome") != "ok":
                reasons[f"{key}: {entry.get('reason')}"] += 1
        elif entry.get("level") in ("error", "critical"):
            events[f"{entry.get('level')}: {event}"] += 1
    return {
        "events": dict(events),
        "operations": dict(outcomes),
        "failure_reasons": dict(reasons.most_common(15)),
    }


class Supervisor:
    """Restarts the daemon when it exits, as systemd's ``Restart=always`` would; counts it."""

    def __init__(self, daemon: ProfiledDaemon) -> None:
        self.daemon = daemon
        self.exits: list[dict[str, Any]] = []
        self.pids: list[int] = []

    async def run(self) -> None:
        while True:
            process = self.daemon.process
            assert process is not None
            self.pids.append(process.pid)
            code = await process.wait()
            self.exits.append({"pid": process.pid, "code": code, "at": time.monotonic()})
            await asyncio.sleep(1.0)  # RestartSec
            await self.daemon.start()


@contextlib.asynccontextmanager
async def radio_station(
    folder: Path, world: WorldConfig, slots: int, *, in_process: bool = False
) -> AsyncIterator[tuple[RunningSimulator, ProfiledDaemon, Backend, NotifySocket]]:
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    async with (
        running_mosquitto(folder / "broker") as broker,
        run_simulator(world, time_scale=1.0, subprocess=not in_process) as sim,
        notify_socket(folder) as notify,
        backend(broker.port, station=STATION) as peer,
    ):
        config = write_config(
            folder,
            broker_port=broker.port,
            bus_address=sim.bus_address,
            sim=sim.world,
            slots=slots,
            watch=True,
            sync_interval_s=600.0,
            ble='adapters = ["hci0", "hci1"]',
        )
        environ = {"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "10000000"}
        daemon = ProfiledDaemon(config, folder / "daemon.log", environ=environ)
        try:
            yield sim, daemon, peer, notify
        finally:
            if daemon.running:
                with contextlib.suppress(TimeoutError):
                    await daemon.terminate(timeout_s=30)


async def first_reads(daemon: ProfiledDaemon, timeout_s: float = 120) -> None:
    async with asyncio.timeout(timeout_s):
        while b'"first reads done"' not in daemon.log.read_bytes():  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def restarts(
    folder: Path,
    *,
    count: int,
    lock_count: int,
    slots: int,
    workers: int,
    max_down_s: float,
    gap_s: tuple[float, float],
    seed: int,
    in_process: bool = False,
) -> dict[str, Any]:
    """``count`` restarts, in rounds: a round ends early when the simulator's own bluetoothd gets
    stuck (it then never comes back, whatever the daemon does), and a fresh station goes on with
    the restarts left."""
    rng = random.Random(seed)
    rounds: list[dict[str, Any]] = []
    left = count
    while left > 0 and len(rounds) < MAX_ROUNDS:
        result = await restart_round(
            folder / f"round-{len(rounds) + 1}",
            count=left,
            lock_count=lock_count,
            slots=slots,
            workers=workers,
            max_down_s=max_down_s,
            gap_s=gap_s,
            rng=rng,
            in_process=in_process,
        )
        result["round"] = len(rounds) + 1
        rounds.append(result)
        left -= result["restarts"]
        print(json.dumps({k: v for k, v in result.items() if k not in BULKY}), flush=True)
        if result["simulator_stuck"] is None:
            break
    return combine(rounds) | {
        "seed": seed,
        "locks": lock_count,
        "slots_per_adapter": slots,
        "workers": workers,
        "max_down_s": max_down_s,
        "gap_s": list(gap_s),
    }


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds' figures as one run's."""
    rows = [row for r in rounds for row in r["per_restart"]]
    outcomes: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    for r in rounds:
        outcomes.update(r["outcomes"])
        reasons.update(r["failure_reasons"])
    total = sum(r["commands_sent"] for r in rounds)
    return {
        "rounds": rounds,
        "restarts": len(rows),
        "simulator_stuck": [r["simulator_stuck"] for r in rounds if r["simulator_stuck"]],
        "commands_sent": total,
        "commands_per_s": total / sum(r["load_s"] for r in rounds),
        "outcomes": dict(outcomes),
        "failure_reasons": dict(reasons.most_common(20)),
        "lost": sum(r["lost"] for r in rounds),
        "cut_short": sum(r["cut_short"] for r in rounds),
        "ended_twice": sum(r["ended_twice"] for r in rounds),
        "excess_motions": sum(r["excess_motions"] for r in rounds),
        "excess_commanded": sum(r["excess_commanded"] for r in rounds),
        "daemon_restarts": sum(r["daemon_restarts"] for r in rounds),
        "daemon_same_pid": all(r["daemon_same_pid"] for r in rounds),
        "recovery_s": summary([x["recovery_s"] for x in rows if x["recovery_s"] is not None]),
        "recovery_any_success_s": summary(
            [x["recovery_any_s"] for x in rows if x["recovery_any_s"] is not None]
        ),
        "unrecovered": sum(len(r["unrecovered"]) for r in rounds),
        "back_beyond_down_s": summary([x["back_after_return_s"] - x["down_s"] for x in rows]),
        "rss_before_mb": [r["rss_before_mb"] for r in rounds],
        "rss_after_mb": [r["rss_after_mb"] for r in rounds],
        "load_at_start": rounds[0]["load_at_start"],
        "load_at_end": rounds[-1]["load_at_end"],
        "daemon_logs": [r["daemon_log"] for r in rounds if "daemon_log" in r],
    }


async def restart_round(
    folder: Path,
    *,
    count: int,
    lock_count: int,
    slots: int,
    workers: int,
    max_down_s: float,
    gap_s: tuple[float, float],
    rng: random.Random,
    in_process: bool,
) -> dict[str, Any]:
    """One station: up to ``count`` restarts under load, until done or the simulator is stuck."""
    world = two_adapter_world(lock_count, slots)
    async with radio_station(folder, world, slots, in_process=in_process) as (
        sim,
        daemon,
        peer,
        notify,
    ):
        started = time.monotonic()
        await daemon.start()
        await notify.wait_for("READY=1", timeout_s=120)
        ready_s = time.monotonic() - started
        await first_reads(daemon)
        await asyncio.sleep(2.0)
        first_pid = daemon.pid
        rss_before = rss_mb(first_pid)
        supervisor = Supervisor(daemon)
        supervising = asyncio.create_task(supervisor.run(), name="supervisor")
        owned = [list(world.locks[i::workers]) for i in range(workers)]
        load = Load(peer, owned)
        loading = asyncio.create_task(load.run(), name="load")
        load_started = time.monotonic()
        load_at_start = load_average()
        done: list[Restart] = []
        stuck: str | None = None
        connections = [{"restarts": 0} | await bus_connections(sim, first_pid)]
        try:
            stuck = await restart_under_load(
                sim,
                peer,
                load,
                done,
                connections,
                daemon_pid=first_pid,
                rng=rng,
                count=count,
                max_down_s=max_down_s,
                gap_s=gap_s,
            )
        finally:
            load.stop.set()
            load_s = time.monotonic() - load_started
            # Every command still in flight runs to its end (or its timeout_at); after the
            # simulator got stuck, nothing can end them but their timeout_at: they are cut short.
            wait_s = STUCK_GRACE_S if stuck else COMMAND_TIMEOUT_S + 30
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait_s):
                    await loading
            loading.cancel()
            await asyncio.gather(loading, return_exceptions=True)
            await asyncio.sleep(3.0)  # the last documents arrive
            supervising.cancel()
            await asyncio.gather(supervising, return_exceptions=True)
        rss_after = rss_mb(daemon.pid) if daemon.running else float("nan")
        same_pid = daemon.running and daemon.pid == first_pid
        view = await sim.control.show()  # the control interface answers all the same
        views = {
            v.name: (v.motor_opened, v.motor_closed, v.commanded_open, v.commanded_close)
            for v in view.locks
        }
        return measure(
            peer=peer,
            load=load,
            restarts=done,
            views=views,
            cut=stuck is not None,
            extra={
                "ready_s": ready_s,
                "load_s": load_s,
                "receipt_timeouts": load.receipt_timeouts,
                "bluez_restarts_seen_by_simulator": view.bluez_restarts,
                "simulator_stuck": stuck,
                "bus_connections": connections,
                "daemon_exits": supervisor.exits,
                "daemon_restarts": len(supervisor.exits),
                "daemon_same_pid": same_pid,
                "rss_before_mb": rss_before,
                "rss_after_mb": rss_after,
                "load_at_start": load_at_start,
                "load_at_end": load_average(),
                "daemon_log_summary": daemon_log_counts(daemon.log),
                "log": daemon.log,
            },
        )


async def restart_under_load(
    sim: RunningSimulator,
    peer: Backend,
    load: Load,
    done: list[Restart],
    connections: list[dict[str, Any]],
    *,
    daemon_pid: int,
    rng: random.Random,
    count: int,
    max_down_s: float,
    gap_s: tuple[float, float],
) -> str | None:
    """``count`` BlueZ restarts, each appended to ``done`` once BlueZ is back; what went wrong
    with the simulator, if it got stuck."""
    await asyncio.sleep(rng.uniform(*gap_s))
    for index in range(count):
        down_s = round(rng.uniform(0.0, max_down_s), 3)
        restart = Restart(index, down_s, time.monotonic(), mark=len(peer.messages()))
        try:
            await sim.control.bluez_restart(down_s=down_s)
            restart.returned = time.monotonic()
            async with asyncio.timeout(down_s + BACK_LIMIT_S):
                await bluez_back(sim, restart)
        except TimeoutError:
            # The simulator's bluetoothd did not come back (its log says why): the daemon has
            # nothing to come back to, so this round ends here.
            stuck = f"restart {index + 1}: the simulator's bluetoothd did not come back"
            print(stuck, flush=True)
            if sim.station is not None:
                stuck += "\n" + stacks()
            return stuck
        done.append(restart)
        # The next restart: a random gap after this one's recovery (the first success since
        # BlueZ is back), so that every restart's recovery is measured on its own.
        recovery = restart.recovery = Recovery(peer, restart)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECOVERY_LIMIT_S):
                while recovery.read() is None:  # noqa: ASYNC110 - the backend's list
                    await asyncio.sleep(0.02)
        if index % 10 == 9:
            held = await bus_connections(sim, daemon_pid)
            connections.append({"restarts": index + 1} | held)
            print(
                f"restart {index + 1}/{count}, {len(load.sent)} commands sent, "
                f"bus connections {held}, load {load_average()}",
                flush=True,
            )
        await asyncio.sleep(rng.uniform(*gap_s))
    return None


def motions(
    sent: Sequence[Sent], views: dict[str, tuple[int, int, int, int]]
) -> tuple[int, int, dict[str, Any]]:
    """Per lock, the motor's runs (and the commands it accepted) beyond the commands sent that
    could have caused them: unlocks for opening, locks for closing. Summed over the locks."""
    unlocks = collections.Counter(s.lock for s in sent if s.name == "unlock")
    lock_cmds = collections.Counter(s.lock for s in sent if s.name == "lock")
    excess_motions = 0
    excess_commanded = 0
    per_lock: dict[str, Any] = {}
    for name, (opened, closed, commanded_open, commanded_close) in views.items():
        excess = max(0, opened - unlocks[name]) + max(0, closed - lock_cmds[name])
        excess_motions += excess
        excess_commanded += max(0, commanded_open - unlocks[name]) + max(
            0, commanded_close - lock_cmds[name]
        )
        per_lock[name] = {
            "unlocks_sent": unlocks[name],
            "locks_sent": lock_cmds[name],
            "motor_opened": opened,
            "motor_closed": closed,
            "commanded_open": commanded_open,
            "commanded_close": commanded_close,
        }
    return excess_motions, excess_commanded, per_lock


def measure(
    *,
    peer: Backend,
    load: Load,
    restarts: list[Restart],
    views: dict[str, tuple[int, int, int, int]],
    cut: bool,
    extra: dict[str, Any],
) -> dict[str, Any]:
    # Final documents per command id, as received.
    finals: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for message in peer.messages():
        if message.topic.startswith("commands/"):
            document = message.json()
            if document["state"]["value"] in FINAL:
                finals[message.topic.removeprefix("commands/")].append(document)
    outcomes: collections.Counter[str] = collections.Counter()
    reasons: collections.Counter[str] = collections.Counter()
    lost: list[str] = []
    twice: list[str] = []
    repeated = 0
    for sent in load.sent:
        ends = finals.get(sent.id, [])
        if not ends:
            lost.append(sent.id)
            continue
        kinds = {(d["state"]["value"], d.get("error_code")) for d in ends}
        if len(kinds) > 1:
            twice.append(sent.id)
        repeated += len(ends) - 1
        last = ends[0]
        key = last["state"]["value"] if last["state"]["value"] == "SUCCESS" else last["error_code"]
        outcomes[key] += 1
        if key != "SUCCESS":
            reasons[f"{sent.name} {key}: {last['state'].get('reason')}"] += 1
    excess_motions, excess_commanded, per_lock = motions(load.sent, views)
    # Recovery per restart: BlueZ back → the next SUCCESS received (before the next restart).
    recoveries: list[float] = []
    recoveries_any: list[float] = []
    unrecovered: list[int] = []
    per_restart: list[dict[str, Any]] = []
    for index, restart in enumerate(restarts):
        until = restarts[index + 1].called if index + 1 < len(restarts) else float("inf")
        recovery = restart.recovery or Recovery(peer, restart)
        fresh = recovery.read(until)
        row = {
            "down_s": restart.down_s,
            "call_s": restart.returned - restart.called,
            "back_after_return_s": restart.back - restart.returned,
            "polls": restart.polls,
            "recovery_s": None if fresh is None else fresh - restart.back,
            "recovery_any_s": None if recovery.any is None else recovery.any - restart.back,
        }
        per_restart.append(row)
        if fresh is None:
            unrecovered.append(index)
        else:
            recoveries.append(fresh - restart.back)
        if recovery.any is not None:
            recoveries_any.append(recovery.any - restart.back)
    lateness = [r["back_after_return_s"] - r["down_s"] for r in per_restart]
    log = extra.pop("log")
    failed = bool(lost or twice or excess_motions or extra["daemon_restarts"] or unrecovered)
    result = extra | {
        "restarts": len(restarts),
        "commands_sent": len(load.sent),
        "commands_per_s": len(load.sent) / extra["load_s"],
        "outcomes": dict(outcomes),
        "failure_reasons": dict(reasons.most_common(20)),
        # After a stuck simulator, what had no end yet is cut short, not lost by the daemon.
        "lost": 0 if cut else len(lost),
        "cut_short": len(lost) if cut else 0,
        "lost_ids": lost[:20],
        "ended_twice": len(twice),
        "ended_twice_ids": twice[:20],
        "final_documents_repeated": repeated,
        "excess_motions": excess_motions,
        "excess_commanded": excess_commanded,
        "recovery_s": summary(recoveries),
        "recovery_any_success_s": summary(recoveries_any),
        "unrecovered": unrecovered,
        "back_beyond_down_s": summary(lateness),
        "per_restart": per_restart,
        "per_lock": per_lock,
    }
    if failed or outcomes.keys() - {"SUCCESS"}:
        result["daemon_log"] = keep_log(log, "restarts")
    return result


# --- output --------------------------------------------------------------------------------


def _row(figure: str, value: str, goal: str, load: str) -> str:
    return f"| {figure} | {value} | {goal} | {load} |"


def _three(d: dict[str, float], unit: str) -> str:
    return f"{d['p50']:.2f} / {d['p99']:.2f} / {d['max']:.2f} {unit} (n={d['n']})"


STALL_HEADER = (
    "| locks / slots | run | commands | failed by code | TIMED_OUT | rate (of ideal) "
    "| load (1/5/15 min) |"
)


def table(results: dict[str, Any]) -> str:
    lines = [
        f"Machine: {results['machine']}; date {results['date']}; commit {results['commit']}",
        "",
    ]
    runs = results.get("stall")
    if runs:
        lines += [
            STALL_HEADER,
            "|---|---|---|---|---|---|---|",
        ]
        for r in runs:
            codes = ", ".join(f"{k} {v}" for k, v in sorted(r["failed_by_code"].items())) or "-"
            lines.append(
                f"| {r['locks']} / {r['slots']} | {r['run']} | {r['commands']} | {codes} | "
                f"**{r['timed_out']}** | {r['rate']:.2f}/s ({r['ratio']:.2f}) | {r['load']} |"
            )
        for count in sorted({r["locks"] for r in runs}):
            mine = [r for r in runs if r["locks"] == count]
            ratios = [r["ratio"] for r in mine]
            lines.append(
                f"| {count} / 3 | all {len(mine)} | {sum(r['commands'] for r in mine)} | "
                f"{sum(len(r['failed']) for r in mine)} failed | "
                f"**{sum(r['timed_out'] for r in mine)}** | "
                f"{min(ratios):.2f} to {max(ratios):.2f} of ideal | |"
            )
        lines.append("")
    r = results.get("restarts")
    if r:
        load = f"{r['load_at_start']} → {r['load_at_end']}"
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))
        lines += [
            "| figure | value | goal | load (1/5/15 min) |",
            "|---|---|---|---|",
            _row(
                f"BlueZ restarts (down 0 to {r['max_down_s']:g} s) / commands sent / rate",
                f"{r['restarts']} / {r['commands_sent']} / {r['commands_per_s']:.2f}/s",
                "100",
                load,
            ),
            _row(
                "**BlueZ back → next command's SUCCESS** p50 / p99 / max",
                _three(r["recovery_s"], "s"),
                "p99 ≤ 5 s",
                load,
            ),
            _row(
                "... not recovered before the next restart",
                str(r["unrecovered"]),
                "",
                load,
            ),
            _row(
                "BlueZ back → any SUCCESS received, p50 / p99 / max",
                _three(r["recovery_any_success_s"], "s"),
                "",
                load,
            ),
            _row(
                "BlueZ back, after the call's return, beyond down_s (p50 / p99 / max)",
                _three(r["back_beyond_down_s"], "s"),
                "",
                load,
            ),
            _row(
                "**commands lost / ended twice**",
                f"{r['lost']} / {r['ended_twice']}",
                "0 / 0",
                load,
            ),
            _row(
                "stations (rounds) / ended by the simulator's bluetoothd stuck / commands cut "
                "short then",
                f"{len(r['rounds'])} / {len(r['simulator_stuck'])} / {r['cut_short']}",
                "",
                load,
            ),
            _row(
                "**lock motions beyond the commands'** (motor runs; accepted commands)",
                f"{r['excess_motions']} ({r['excess_commanded']})",
                "0",
                load,
            ),
            _row(
                "**daemon restarts** (same pid throughout)",
                f"{r['daemon_restarts']} ({'yes' if r['daemon_same_pid'] else 'no'})",
                "0",
                load,
            ),
            _row("commands' outcomes", outcomes, "", load),
            _row(
                "daemon RSS before / after",
                " ; ".join(
                    f"{b:.1f} / {a:.1f} MB"
                    for b, a in zip(r["rss_before_mb"], r["rss_after_mb"], strict=True)
                ),
                "",
                load,
            ),
        ]
    return "\n".join(lines)


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "load_at_start": load_average(),
        "arguments": {k: str(v) for k, v in vars(arguments).items()},
    }
    with tempfile.TemporaryDirectory(prefix="lockgate-bench-radio-") as scratch:
        folder = Path(scratch)
        if "stall" in arguments.only:
            started = time.monotonic()
            results["stall"] = await stall(
                folder, arguments.runs, arguments.stations, arguments.sustain
            )
            results["stall_s"] = time.monotonic() - started
        if "restarts" in arguments.only:
            started = time.monotonic()
            results["restarts"] = await restarts(
                folder / "restarts",
                count=arguments.restarts,
                lock_count=arguments.locks,
                slots=arguments.slots,
                workers=arguments.workers,
                max_down_s=arguments.max_down,
                gap_s=(arguments.gap[0], arguments.gap[1]),
                seed=arguments.seed,
                in_process=arguments.in_process_sim,
            )
            results["restarts_s"] = time.monotonic() - started
            summary_only = {
                k: v for k, v in results["restarts"].items() if k not in ("per_restart", "per_lock")
            }
            print(json.dumps(summary_only), flush=True)
    results["load_at_end"] = load_average()
    return results


def main() -> None:
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--only", nargs="+", default=["stall", "restarts"], choices=["stall", "restarts"]
    )
    parser.add_argument("--runs", type=int, default=10, help="stall: runs per station (10)")
    parser.add_argument(
        "--stations",
        type=int,
        nargs="+",
        default=[12, 50],
        help="stall: locks per station, 3 slots each (12 50)",
    )
    parser.add_argument("--sustain", type=float, default=15.0, help="stall: s per run (15)")
    parser.add_argument("--restarts", type=int, default=100, help="BlueZ restarts (100)")
    parser.add_argument("--locks", type=int, default=20, help="restarts: locks (20)")
    parser.add_argument("--slots", type=int, default=3, help="restarts: slots per adapter (3)")
    parser.add_argument("--workers", type=int, default=3, help="restarts: command loops (3)")
    parser.add_argument("--max-down", type=float, default=3.0, help="down_s drawn from 0..this")
    parser.add_argument(
        "--gap",
        type=float,
        nargs=2,
        default=[0.2, 1.5],
        help="s from a restart's recovery to the next restart, drawn uniformly",
    )
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument(
        "--in-process-sim",
        action="store_true",
        help="restarts: the simulator in this process (its tasks' stacks shown if it is stuck)",
    )
    parser.add_argument("--output", type=Path, default=None, help="the JSON file")
    arguments = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(main_async(arguments))
    output = arguments.output or RESULTS / f"radio-{datetime.now(UTC):%Y%m%dT%H%M}.json"
    output.write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"\nresults: {output}")


if __name__ == "__main__":
    threading.excepthook = threading.__excepthook__
    main()
