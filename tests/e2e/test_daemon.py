"""``lockgate run`` end to end: mosquitto, the simulator, the daemon as a subprocess, a backend.

Everything is real and acts only through its real interface: the backend (aiomqtt, not lockgate
code) speaks the contract over mosquitto, the world is steered through the simulator's control
interface, and systemd is a datagram socket that the test binds as ``NOTIFY_SOCKET``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lockgate_sim.testing import RunningSimulator, run_simulator
from lockgate_sim.world import WorldConfig
from tests.brokers import Mosquitto, running_mosquitto
from tests.e2e.backend import Backend, backend, command
from tests.e2e.station import (
    STATION,
    Daemon,
    NotifySocket,
    bike_of,
    keys_of,
    nobond,
    notify_socket,
    sharee,
    world,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@dataclass
class Site:
    broker: Mosquitto
    sim: RunningSimulator
    daemon: Daemon
    backend: Backend
    notify: NotifySocket
    folder: Path

    @property
    def world(self) -> WorldConfig:
        return self.sim.world


@contextlib.asynccontextmanager
async def site(
    folder: Path, sim_world: WorldConfig, *, time_scale: float = 0.1, ble: str = ""
) -> AsyncIterator[Site]:
    """mosquitto, the simulator (a child process), a notify socket, a backend and a daemon not
    yet started; ``ble`` adds lines to the config's ``[ble]`` section."""
    async with (
        running_mosquitto(folder / "broker") as broker,
        run_simulator(sim_world, time_scale=time_scale, subprocess=True) as sim,
        notify_socket(folder) as notify,
        backend(broker.port, station=STATION) as peer,
    ):
        config = write_config(
            folder, broker_port=broker.port, bus_address=sim.bus_address, sim=sim.world, ble=ble
        )
        daemon = Daemon(
            config,
            folder / "daemon.log",
            environ={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"},
        )
        try:
            yield Site(broker, sim, daemon, peer, notify, folder)
        finally:
            await daemon.close()


async def test_a_station_day(tmp_path: Path) -> None:
    """Start to READY, an unlock, a rider closing by hand, refusals, and a clean stop."""
    locks = [sharee(1), nobond(2)]
    async with site(tmp_path, world(*locks)) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        status = await s.backend.wait_for(lambda: s.backend.latest("status"))
        assert status["state"] == "online"
        assert status["station"] == STATION
        # An open station (require_signed = false) still publishes its sealing key, and says at
        # start that it takes unsigned commands.
        assert set(status["sealing_key"]) == {"kty", "crv", "x", "kid"}
        assert '"open: unsigned commands accepted"' in s.daemon.output()
        assert sorted(status["locks"]) == sorted(bike_of(lock) for lock in locks)
        for lock in locks:
            topic = f"locks/{bike_of(lock)}"
            # Read once at start: without credentials a lock shows battery and firmware (its
            # state needs a session, so it stays unknown until a command or provisioning).
            document = await s.backend.wait_for(
                lambda topic=topic: (doc := s.backend.latest(topic)) and doc["battery"] and doc
            )
            assert document["boot_id"] == status["boot_id"]
            assert document["battery"] == 100
            assert document["heartbeat_v2"]["health"] == "HEALTHY"

        # An unlock: SUCCESS, and the lock's states as events caused by the command.
        open_lock = locks[0]
        bike = bike_of(open_lock)
        unlock = command(bike, "unlock", credentials=keys_of(open_lock))
        final = await s.backend.run(unlock)
        assert final["state"]["value"] == "SUCCESS", final
        states = [
            (e["lock_state"], e["cause"], e.get("command_id"))
            for e in s.backend.events(type="lock_state", bike=bike)
        ]
        assert states == [
            ("unlocking", "command", unlock["id"]),
            ("unlocked", "command", unlock["id"]),
        ]
        assert (await s.sim.control.lock(open_lock.name)).bolt == "unlocked"

        # A rider closes it by hand: the watch mirrors it.
        await s.sim.control.close_by_hand(open_lock.name)
        await s.backend.wait_for(
            lambda: len(s.backend.events(type="lock_state", bike=bike)) >= 4, timeout_s=30
        )
        manual = [
            (e["lock_state"], e["cause"]) for e in s.backend.events(type="lock_state", bike=bike)
        ][2:]
        assert manual == [("locking", "manual"), ("locked", "manual")]

        # Wrong keys, and a bike that is not here.
        other = locks[1]
        wrong = dict(keys_of(other), ltk="00" * 32)
        refused = await s.backend.run(command(bike_of(other), "unlock", credentials=wrong))
        assert refused["state"]["value"] == "ERROR"
        assert refused["error_code"] == "ERRORS.AUTH_FAILED"
        stranger = await s.backend.run(command("NOBIKE", "unlock", credentials=keys_of(other)))
        assert stranger["error_code"] == "ERRORS.NOT_FOUND"
        assert (await s.sim.control.lock(other.name)).bolt == "locked"

        # Seq rises by one per event, from where the station's counter stood.
        seqs = [e["seq"] for e in s.backend.documents("events")]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

        # systemd saw STATUS and WATCHDOG while running.
        await s.notify.wait_for("WATCHDOG=1")
        assert s.notify.sent("STATUS=")

        # SIGTERM: offline, exit 0, within 10 s.
        code = await s.daemon.terminate(timeout_s=10)
        assert code == 0, s.daemon.output()[-3000:]
        assert s.notify.sent("STOPPING=1")
        offline = await s.backend.wait_for(
            lambda: (doc := s.backend.latest("status")) and doc["state"] == "offline" and doc
        )
        assert offline["boot_id"] == status["boot_id"]


async def test_bad_requests_get_answers_and_move_nothing(tmp_path: Path) -> None:
    lock = sharee(3)
    async with site(tmp_path, world(lock)) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        await s.backend.publish(b"{not json")
        error = await s.backend.wait_for(lambda: s.backend.latest("errors"))
        assert error["error_code"] == "ERRORS.BAD_REQUEST"
        bad = {"id": "bad-1", "command": "unlock", "bike": bike_of(lock), "timeout_at": "never"}
        await s.backend.publish(json.dumps(bad))
        answer = await s.backend.final("bad-1")
        assert answer["error_code"] in ("ERRORS.BAD_REQUEST", "ERRORS.INVALID_TIMEOUT_AT")
        assert s.daemon.running
        counters = await s.sim.control.lock(lock.name)
        assert counters.bolt == "locked"
        assert await s.daemon.terminate() == 0


async def test_sigterm_lets_a_running_command_finish(tmp_path: Path) -> None:
    """Stop: no new command starts, a running one finishes, its end is published, then offline."""
    lock = sharee(4)
    async with site(tmp_path, world(lock)) as s:
        await s.sim.control.set_motor_ms(lock.name, 15_000)  # 1.5 s at the time scale of 0.1
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        unlock = command(bike_of(lock), "unlock", credentials=keys_of(lock))
        await s.backend.send(unlock)
        topic = f"commands/{unlock['id']}"
        await s.backend.wait_for(
            lambda: any(d["state"]["value"] == "RECEIVED" for d in s.backend.documents(topic))
        )
        assert await s.daemon.terminate(timeout_s=12) == 0
        final = await s.backend.final(unlock["id"], timeout_s=5)
        assert final["state"]["value"] == "SUCCESS", final
        order = [m.topic for m in s.backend.messages() if m.topic in (topic, "status")]
        assert order[-1] == "status"  # offline after the command's end
        assert s.backend.latest("status")["state"] == "offline"  # type: ignore[index]
        assert (await s.sim.control.lock(lock.name)).bolt == "unlocked"


async def test_an_outage_is_delivered_after_it_and_status_shows_the_backlog(tmp_path: Path) -> None:
    """A rider closes a lock while the broker is away: the events come afterwards, replayed, and
    the retained status shows the backlog at the reconnect, then the drained outbox."""
    lock = sharee(5)
    bike = bike_of(lock)
    async with site(tmp_path, world(lock)) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        unlocked = await s.backend.run(command(bike, "unlock", credentials=keys_of(lock)))
        assert unlocked["state"]["value"] == "SUCCESS", unlocked
        before = len(s.backend.events(type="lock_state", bike=bike))
        await s.broker.stop()
        await s.sim.control.close_by_hand(lock.name)
        await s.sim.control.set_battery(lock.name, 41)

        # The watch sees the close while the broker is away; the daemon's depth gauge (read every
        # 5 s, just before each STATUS) sees the backlog before the broker returns: the STATUS
        # after the first that shows a backlog comes after such a read.
        def backlogged(line: str) -> bool:
            return "broker disconnected" in line and re.search(r"backlog [1-9]", line) is not None

        async with asyncio.timeout(60):
            while not any(backlogged(line) for line in s.notify.sent("STATUS=")):
                s.notify.changed.clear()
                await s.notify.changed.wait()
            lines = s.notify.sent("STATUS=")
            shown = next(i for i, line in enumerate(lines) if backlogged(line))
            while len(s.notify.sent("STATUS=")) <= shown + 1:
                s.notify.changed.clear()
                await s.notify.changed.wait()
        await s.broker.start()
        async with backend(s.broker.port, station=STATION) as later:

            def manual() -> list[dict[str, object]]:
                return [
                    e for e in later.events(type="lock_state", bike=bike) if e["cause"] == "manual"
                ]

            await later.wait_for(lambda: len(manual()) >= 2, timeout_s=60)
            closed = manual()
            assert [e["lock_state"] for e in closed] == ["locking", "locked"]
            assert all(e["replayed"] for e in closed)
            seqs = [e["seq"] for e in later.documents("events")]
            assert seqs == sorted(seqs)

            def depths() -> list[int]:
                return [d["outbox_depth"] for d in later.documents("status")]

            await later.wait_for(lambda: depths() and depths()[-1] == 0, timeout_s=30)
            assert max(depths()) > 0  # the status at the reconnect showed the backlog
        assert before == 2
        assert await s.daemon.terminate() == 0


async def test_ready_comes_before_the_first_reads_and_commands_do_not_wait_for_them(
    tmp_path: Path,
) -> None:
    """READY once the station takes commands: the first reads of slow locks go on behind it,
    STATUS counts them, and a command sent at READY runs without waiting for them all."""
    # 2 s per connect at the time scale of 0.1; the daemon reads two locks at a time with 3
    # slots and one connection attempt at a time, so the 8 reads take at least 16 s, and a
    # command at most its own connect and the two queued before it.
    locks = [sharee(index, connect_ms=20_000) for index in range(10, 18)]
    async with site(tmp_path, world(*locks)) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        (at_ready, *_) = s.notify.sent("STATUS=")  # READY's own datagram carries the first one
        assert ", 0/8 locks read, " in at_ready, at_ready
        last = locks[-1]  # the last lock to be read: its command comes before its first read
        unlock = command(bike_of(last), "unlock", credentials=keys_of(last))
        final = await s.backend.run(unlock, timeout_s=30)
        assert final["state"]["value"] == "SUCCESS", final
        assert '"first reads done"' not in s.daemon.output()
        assert (await s.sim.control.lock(last.name)).bolt == "unlocked"

        # STATUS counts the reads up to 7/8, then says no more about them.
        await s.notify.wait_for("STATUS=broker connected, backlog", timeout_s=60)
        counts = [
            int(line.split(" locks read")[0].rsplit(" ", 1)[1].split("/")[0])
            for line in s.notify.sent("STATUS=")
            if " locks read" in line
        ]
        assert counts == sorted(counts)
        assert counts[0] == 0
        assert set(range(8)) <= set(counts)
        await s.backend.wait_for(lambda: '"first reads done"' in s.daemon.output())
        for lock in locks:  # each was read: its document shows the battery
            topic = f"locks/{bike_of(lock)}"
            await s.backend.wait_for(
                lambda topic=topic: (d := s.backend.latest(topic)) and d["battery"]
            )
        assert await s.daemon.terminate() == 0


async def test_a_broker_that_is_away_does_not_hold_ready_back(tmp_path: Path) -> None:
    """READY with the broker down (STATUS says so), and online with commands once it is back."""
    lock = sharee(20)
    async with site(tmp_path, world(lock)) as s:
        await s.broker.stop()
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        (at_ready, *_) = s.notify.sent("STATUS=")
        assert at_ready.startswith("STATUS=broker disconnected"), at_ready
        assert "last error: " in at_ready, at_ready
        await s.broker.start()
        async with backend(s.broker.port, station=STATION) as later:
            await later.wait_for(
                lambda: (doc := later.latest("status")) and doc["state"] == "online", timeout_s=60
            )
            unlock = command(bike_of(lock), "unlock", credentials=keys_of(lock))
            final = await later.run(unlock)
            assert final["state"]["value"] == "SUCCESS", final
        assert await s.daemon.terminate() == 0
