"""Time without an RTC, in process: the wall clock is a controlled one that steps, the monotonic
clock is the real one (as on a station, where NTP steps the first and nothing moves the second).

What must hold (docs/station.md, "Time on a station without an RTC"): a default deadline and a
booking's default expiry are durations; the backend's ``timeout_at`` is told on the wall clock and
is looked at again at once when the clock steps; while the clock is not synchronised a request's
``timeout_at`` is not judged against it; a step is an event; every event says whether the clock
was synchronised.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lockgate.clock import ClockChange, StationClock
from lockgate.model import BookingState, CommandState, ErrorCode
from lockgate.store import CommandRecord
from tests.engine.harness import SHAREE_JSON, Harness
from tests.engine.radio_model import ModelRadio

BIKE = "FR1540"
DAY = timedelta(days=1)


class SteppingClock:
    """Wall time: the real time shifted by ``shift``, which a test steps like NTP would."""

    def __init__(self, shift: timedelta = timedelta(0)) -> None:
        self.shift = shift
        self.synced = True

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.shift

    def step(self, by: timedelta) -> None:
        self.shift += by


@pytest.fixture
def wall() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
async def station(tmp_path: Path, radio: ModelRadio, wall: SteppingClock) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path / "lockgate.db", radio, clock=wall, clock_synced=lambda: wall.synced)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


async def until(check: Callable[[], Any], timeout_s: float = 5.0) -> Any:
    """Until ``check()`` is truthy (a bound on the wait, not a timing assertion)."""
    async with asyncio.timeout(timeout_s):
        while not (result := check()):  # noqa: ASYNC110 - polls the engine's memory
            await asyncio.sleep(0.01)
    return result


async def final(station: Harness, command_id: str | None) -> CommandRecord:
    """The command's record once every queued command has ended."""
    await station.engine.wait_idle(10)
    assert command_id is not None
    record = await station.store.command(command_id)
    assert record is not None
    assert record.state.final
    return record


def real(seconds: float) -> datetime:
    """A time as a synchronised backend writes it: the real time plus ``seconds``."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_a_default_booking_expiry_is_a_duration_across_a_forward_step(
    station: Harness, wall: SteppingClock
) -> None:
    """Booked while the clock was three days behind, then NTP steps it: the booking still has
    its hour, and its lock document says so in the new time (main: an expiry three days past)."""
    wall.shift = -3 * DAY
    record = await station.run(command="book", bike=BIKE, user_id="U")
    assert record.state is CommandState.SUCCESS
    wall.step(3 * DAY)
    await station.engine.clock_stepped(3 * DAY.total_seconds())
    document = await station.lock_document(BIKE)
    assert document["booking"]["state"] == "booked"
    left = datetime.fromisoformat(document["booking"]["timeout_at"]) - wall()
    assert timedelta(minutes=59) < left <= timedelta(hours=1)
    lock = station.engine.lock_record(BIKE)
    assert lock is not None
    assert lock.booking is BookingState.BOOKED


async def test_a_step_past_a_backend_expiry_expires_the_booking_at_once(
    station: Harness, wall: SteppingClock
) -> None:
    """The backend's expiry is a wall-clock time: a step past it ends the booking then, not at the
    time the deadline task had planned before the step (main: half an hour later)."""
    await station.run(command="book", bike=BIKE, user_id="U", timeout_at=real(1800))
    wall.step(timedelta(hours=1))
    await station.engine.clock_stepped(3600.0)

    def expired() -> bool:
        lock = station.engine.lock_record(BIKE)
        return lock is not None and lock.booking is BookingState.AVAILABLE

    await until(expired)
    canceled = (await station.events("booking"))[-1]
    assert canceled["booking_state"] == "canceled"
    assert canceled["reason"] == "the booking expired"


async def test_a_default_command_timeout_is_a_duration(
    station: Harness, radio: ModelRadio, wall: SteppingClock
) -> None:
    """A command without timeout_at waits behind another while the clock steps two hours forward:
    it still runs (main: TIMED_OUT, its deadline told on the wall clock)."""
    held = radio.locks[BIKE].hold = asyncio.Event()
    first = await station.send(command="unlock", bike=BIKE, timeout_at=real(3 * 3600), **creds())
    await station.radio_moved(BIKE)
    second = await station.send(command="lock", bike=BIKE, **creds())
    wall.step(timedelta(hours=2))  # not yet told: the deadline is a duration all the same
    held.set()
    assert (await final(station, first.command_id)).state is CommandState.SUCCESS
    ended = await final(station, second.command_id)
    assert ended.state is CommandState.SUCCESS, ended.reason


async def test_a_step_past_a_running_commands_timeout_at_ends_it_then(
    station: Harness, radio: ModelRadio, wall: SteppingClock
) -> None:
    """The backend's timeout_at of a running command is looked at again when the clock steps."""
    radio.locks[BIKE].hold = asyncio.Event()  # the motion never ends by itself
    sent = await station.send(command="unlock", bike=BIKE, timeout_at=real(600), **creds())
    await station.radio_moved(BIKE)
    wall.step(timedelta(minutes=15))
    await station.engine.clock_stepped(900.0)
    ended = await final(station, sent.command_id)
    assert ended.error_code is ErrorCode.TIMED_OUT


async def test_an_unsynchronised_clock_does_not_judge_timeout_at(
    station: Harness, wall: SteppingClock
) -> None:
    """A clock a day ahead and not synchronised: a real timeout_at is not refused; the command
    gets the default deadline and its document says why (main: ERRORS.INVALID_TIMEOUT_AT)."""
    wall.shift, wall.synced = DAY, False
    record = await station.run(command="unlock", bike=BIKE, timeout_at=real(60), **creds())
    assert record.state is CommandState.SUCCESS, record.error_code
    assert record.reason is not None
    assert "not synchronised" in record.reason
    receipt = (await station.documents(record.id))[0]
    assert receipt["state"]["value"] == "NOT_SENT"
    assert "not synchronised" in receipt["state"]["reason"]
    events = await station.events("lock_state")
    assert events
    assert all(event["clock_synced"] is False for event in events[-2:])


async def test_a_synchronised_clock_judges_timeout_at(
    station: Harness, wall: SteppingClock
) -> None:
    """The contract's rule stands where the clock can be trusted."""
    wall.shift = DAY
    record = await station.run(command="unlock", bike=BIKE, timeout_at=real(60), **creds())
    assert record.error_code is ErrorCode.INVALID_TIMEOUT_AT
    assert all(event["clock_synced"] is True for event in await station.events())


async def test_a_step_is_an_event_with_its_size(station: Harness, wall: SteppingClock) -> None:
    wall.step(timedelta(seconds=-90))
    await station.engine.clock_stepped(-90.0)
    event = (await station.events("clock"))[-1]
    assert event["step_s"] == -90.0
    assert event["bike"] is None
    assert event["clock_synced"] is True


def test_the_station_clock_tells_steps_from_drift_and_sees_synchronisation() -> None:
    """Wall against monotonic: more than 2 s apart is a step; the source is read at each look."""
    base = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    times = {"wall": 0.0, "mono": 100.0}
    synced = {"now": False}

    class Source:
        name = "test"

        def synchronised(self) -> bool | None:
            return synced["now"]

    clock = StationClock(
        Source(),
        wall=lambda: base + timedelta(seconds=times["wall"]),
        mono=lambda: times["mono"],
    )
    assert not clock.synced
    assert clock.since is None
    times["wall"] += 10.0
    times["mono"] += 10.0
    assert clock.check() == ClockChange()
    times["wall"] += 11.5  # 1.5 s more than the monotonic clock: drift, not a step
    times["mono"] += 10.0
    assert clock.check() == ClockChange()
    times["wall"] += 3600.0 + 1.0
    times["mono"] += 1.0
    synced["now"] = True
    change = clock.check()
    assert change.step_s == pytest.approx(3600.0)
    assert change.synced_changed
    assert clock.synced
    assert clock.since == base + timedelta(seconds=times["wall"])
    times["wall"] -= 5.0
    assert clock.check().step_s == pytest.approx(-5.0)


def creds() -> dict[str, Any]:
    return {"credentials": SHAREE_JSON}
