"""``lockgate run`` under libfaketime: a station without an RTC whose wall clock steps.

The daemon runs as a subprocess with Debian's libfaketime preloaded, reading its offset from a file
at every call (``FAKETIME_TIMESTAMP_FILE`` with ``FAKETIME_NO_CACHE=1``), so the test steps the
daemon's wall clock as NTP would, forward and back, while it runs. The monotonic clock is left
real (``FAKETIME_DONT_FAKE_MONOTONIC=1``), as no step moves it on a station. Whether the clock is
synchronised is timesyncd's marker file, moved into the test's directory, which the test makes and
removes: never the test machine's own kernel, which may say either. mosquitto, the simulator and
the backend keep the real time, as the backend does.

(libfaketime 0.9.10 with ``FAKETIME_DONT_FAKE_MONOTONIC`` makes Python's ``time.sleep`` fail with
EINVAL: it fakes the absolute ``clock_nanosleep`` on the monotonic clock it does not fake. The
daemon never calls it; asyncio waits in ``epoll``.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lockgate_sim.testing import RunningSimulator, run_simulator
from tests.brokers import running_mosquitto
from tests.e2e.backend import Backend, backend, command, deadline
from tests.e2e.station import (
    STATION,
    Daemon,
    NotifySocket,
    bike_of,
    keys_of,
    notify_socket,
    sharee,
    synchronized_file,
    world,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DAY_S = 86_400


def libfaketime() -> Path:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    assert found, "libfaketime is missing: scripts/bootstrap installs Debian's faketime"
    return found[0]


class FakeTime:
    """The daemon's wall clock: the real time shifted by what the file says (seconds)."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "faketime"
        self.shift_s = 0

    def set(self, shift_s: int) -> None:
        self.shift_s = shift_s
        # Written whole and renamed: the daemon reads the file at every clock call.
        partial = self.file.with_suffix(".partial")
        partial.write_text(f"{shift_s:+d}\n")
        partial.replace(self.file)

    def environ(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": str(libfaketime()),
            "FAKETIME_TIMESTAMP_FILE": str(self.file),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        }

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.shift_s)


@contextlib.asynccontextmanager
async def faked_station(
    folder: Path, shift_s: int, locks: int
) -> AsyncIterator[tuple[Daemon, Backend, RunningSimulator, NotifySocket, FakeTime]]:
    fake = FakeTime(folder)
    fake.set(shift_s)
    async with (
        running_mosquitto(folder / "broker") as broker,
        run_simulator(
            world(*(sharee(70 + i) for i in range(locks))), time_scale=0.5, subprocess=True
        ) as sim,
        notify_socket(folder) as notify,
        backend(broker.port, station=STATION) as peer,
    ):
        config = write_config(
            folder,
            broker_port=broker.port,
            bus_address=sim.bus_address,
            sim=sim.world,
            synchronized=False,
        )
        daemon = Daemon(
            config,
            folder / "daemon.log",
            environ={"NOTIFY_SOCKET": str(notify.path)} | fake.environ(),
        )
        try:
            yield daemon, peer, sim, notify, fake
        finally:
            await daemon.close()


def when(text: str | None) -> datetime:
    assert text is not None
    return datetime.fromisoformat(text)


def close_to(moment: datetime, expected: datetime, within_s: float = 60.0) -> bool:
    return abs((moment - expected).total_seconds()) <= within_s


async def step_seen(peer: Backend, step_s: float) -> dict[str, Any]:
    """Until the station's ``clock`` event of a step of about ``step_s``."""

    def seen() -> dict[str, Any] | None:
        for event in peer.events(type="clock"):
            if abs(event["step_s"] - step_s) < 10:
                return event
        return None

    return await peer.wait_for(seen, timeout_s=20)


async def test_a_station_whose_clock_steps_forward_and_back(tmp_path: Path) -> None:
    """Three days behind and not synchronised at start, then NTP steps it to the real time, then a
    day ahead and not synchronised, then back. Main: the default booking keeps an expiry three
    days past after the step, a real timeout_at is refused a day ahead, a default timeout is lost
    to a forward step, a step past a backend's expiry is not seen for half an hour, and no event
    says any of it."""
    async with faked_station(tmp_path, -3 * DAY_S, locks=3) as (daemon, peer, sim, notify, fake):
        first, second, third = sim.world.locks
        await daemon.start()
        await notify.wait_for("READY=1")
        status = await peer.wait_for(lambda: peer.latest("status"))
        assert status["clock"] == {"synced": False, "since": None, "source": "timesyncd"}

        # Three days behind: a booking without timeout_at has an hour of the station's time.
        booked = await peer.run(
            {k: v for k, v in command(bike_of(first), "book").items() if k != "timeout_at"}
            | {"user_id": "U1"}
        )
        assert booked["state"]["value"] == "SUCCESS", booked
        topic = f"locks/{bike_of(first)}"
        doc = await peer.wait_for(
            lambda: (d := peer.latest(topic)) and d["booking"]["state"] == "booked" and d
        )
        assert close_to(when(doc["booking"]["timeout_at"]), fake.now() + timedelta(hours=1))
        assert all(event["clock_synced"] is False for event in peer.events(bike=bike_of(first)))

        # NTP steps the clock to the real time and the clock is synchronised.
        fake.set(0)
        synchronized_file(tmp_path).touch()
        stepped = await step_seen(peer, 3 * DAY_S)
        assert stepped["bike"] is None
        # The booking still has its hour, in the new time.
        doc = await peer.wait_for(
            lambda: (
                (d := peer.latest(topic))
                and close_to(when(d["booking"]["timeout_at"]), fake.now() + timedelta(hours=1))
                and d
            )
        )
        assert doc["booking"]["state"] == "booked"
        status = await peer.wait_for(
            lambda: (s := peer.latest("status")) and s["clock"]["synced"] and s
        )
        assert close_to(when(status["clock"]["since"]), fake.now())
        assert '"clock stepped"' in daemon.output()

        # Synchronised: a booking with the backend's expiry, twenty minutes from now.
        book = command(bike_of(second), "book", user_id="U2", timeout_at=deadline(1200))
        assert (await peer.run(book))["state"]["value"] == "SUCCESS"
        assert peer.events(type="booking", bike=bike_of(second))[-1]["clock_synced"] is True

        # A day ahead, not synchronised: the step passed the second booking's expiry, which
        # ends at once; the first booking's default hour moved with the step.
        synchronized_file(tmp_path).unlink()
        fake.set(DAY_S)
        await step_seen(peer, DAY_S)

        def expired() -> dict[str, Any] | None:
            for event in peer.events(type="booking", bike=bike_of(second)):
                if event["booking_state"] == "canceled":
                    return event
            return None

        canceled = await peer.wait_for(expired, timeout_s=10)
        assert canceled["reason"] == "the booking expired"
        assert peer.latest(topic)["booking"]["state"] == "booked"  # type: ignore[index]

        # A real timeout_at is not judged against an unsynchronised clock: not refused, the
        # default deadline instead, and the document says why.
        unlock = command(bike_of(third), "unlock", credentials=keys_of(third))
        final = await peer.run(unlock)
        assert final["state"]["value"] == "SUCCESS", final
        assert "not synchronised" in final["state"]["reason"]

        # A default timeout is a duration: a command queued behind a slow one keeps its minute
        # across a step of two hours forward.
        await sim.control.set_motor_ms(third.name, 15_000)  # 7.5 s at the simulator's 0.5
        slow = command(bike_of(third), "lock", credentials=keys_of(third))
        await peer.send(slow)
        await peer.wait_for(
            lambda: any(
                d["state"]["value"] == "RECEIVED" for d in peer.documents(f"commands/{slow['id']}")
            )
        )
        queued = {
            k: v
            for k, v in command(bike_of(third), "unlock", credentials=keys_of(third)).items()
            if k != "timeout_at"
        }
        await peer.send(queued)
        fake.set(DAY_S + 7200)
        assert (await peer.final(slow["id"]))["state"]["value"] == "SUCCESS"
        after = await peer.final(queued["id"])
        assert after["state"]["value"] == "SUCCESS", after
        await step_seen(peer, 7200)

        # And back, by a day and two hours.
        fake.set(0)
        back = await step_seen(peer, -(DAY_S + 7200))
        assert back["clock_synced"] is False
        assert peer.latest(topic)["booking"]["state"] == "booked"  # type: ignore[index]
        assert await daemon.terminate() == 0
