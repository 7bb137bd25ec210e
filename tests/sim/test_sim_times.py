"""What a simulated lock really spent: its connects and motor runs, measured and shown.

The gateway benchmark takes these off a command's end-to-end time; they must be at least what
the world asks of the lock (the timers never end early) and only a little more (the loop's
lateness, not a whole session).
"""

from __future__ import annotations

from typing import Any

import pytest

from lockgate.protocol.session import StatusReported
from lockgate.protocol.status import Status
from lockgate_sim.control import UNKNOWN_LOCK
from lockgate_sim.remote import SimulatorError
from lockgate_sim.testing import run_simulator
from tests.sim.simkit import SHAREE_NAME, Link, sharee_credentials, world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CONNECT_MS = 200
MOTOR_MS = 300
SLACK_S = 0.5
"""More than the loop's lateness on a loaded machine, far less than a session's time: a figure
past it was not measured between the right two moments."""
EARLY_S = 1e-6
"""The event loop runs a timer due within its clock's resolution (a nanosecond here)."""


def _statuses(events: list[Any]) -> list[Status]:
    return [e.status for e in events if isinstance(e, StatusReported)]


def _near(measured: float | None, configured_ms: int) -> bool:
    assert measured is not None
    return configured_ms / 1000 - EARLY_S <= measured < configured_ms / 1000 + SLACK_S


@pytest.mark.parametrize("time_scale", [1.0, 0.5])
async def test_a_connect_and_two_motions_report_what_they_took(
    monkeypatch: pytest.MonkeyPatch, time_scale: float
) -> None:
    lock_config = {SHAREE_NAME: {"connect_ms": CONNECT_MS, "motor_ms": MOTOR_MS}}
    async with run_simulator(world(**lock_config), time_scale=time_scale) as sim:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)
        before = await sim.control.times(SHAREE_NAME)
        assert (before.connects, before.motions) == (0, 0)
        assert before.last_connect_s is None
        assert before.last_motion_s is None

        link = await Link.open(SHAREE_NAME)
        try:
            connected = await sim.control.times(SHAREE_NAME)
            assert connected.connects == 1
            assert _near(connected.last_connect_s, CONNECT_MS)
            assert connected.connect_s_total == connected.last_connect_s

            session, _ = await link.authorise(sharee_credentials())
            await link.send(session.unlock())
            assert _statuses(await link.events(session, 2)) == [Status.UNLOCKING, Status.OPEN]
            opened = await sim.control.times(SHAREE_NAME)
            assert opened.motions == 1
            assert _near(opened.last_motion_s, MOTOR_MS)

            await link.send(session.lock())
            assert _statuses(await link.events(session, 2)) == [Status.LOCKING, Status.CLOSED]
            closed = await sim.control.times(SHAREE_NAME)
            assert closed.motions == 2
            assert _near(closed.last_motion_s, MOTOR_MS)
            assert closed.last_motion_s is not None
            assert opened.last_motion_s is not None
            assert closed.motion_s_total == pytest.approx(
                opened.last_motion_s + closed.last_motion_s
            )
        finally:
            await link.close()
        shown = await sim.control.lock(SHAREE_NAME)
        assert (shown.connects, shown.motions) == (1, 2)
        assert shown.last_motion_s == closed.last_motion_s
        assert shown.connect_s_total == connected.connect_s_total


async def test_a_jammed_run_counts_and_a_bolt_moved_by_hand_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with run_simulator(world(), time_scale=0.05) as sim:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)
        await sim.control.jam(SHAREE_NAME)
        link = await Link.open(SHAREE_NAME)
        try:
            session, _ = await link.authorise(sharee_credentials())
            await link.send(session.unlock())
            statuses = _statuses(await link.events(session, 2))
            assert statuses == [Status.UNLOCKING, Status.UNLOCKING_BLOCKED]
            assert (await sim.control.times(SHAREE_NAME)).motions == 1

            await sim.control.open_by_hand(SHAREE_NAME)
            assert _statuses(await link.events(session, 2)) == [Status.UNLOCKING, Status.OPEN]
        finally:
            await link.close()
        assert (await sim.control.times(SHAREE_NAME)).motions == 1


async def test_times_of_an_unknown_lock_are_refused() -> None:
    async with run_simulator(world()) as sim:
        with pytest.raises(SimulatorError) as refused:
            await sim.control.times("ISHAREIT-9999999")
        assert refused.value.name == UNKNOWN_LOCK
