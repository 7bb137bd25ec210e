"""Duty-cycled discovery (``scan_window_s`` of every ``scan_interval_s``): the scan pauses, a
lock already heard is reached while it does, and an operation looking for a lock not heard yet
scans at once until it is found."""

from __future__ import annotations

import asyncio

import pytest

from lockgate.radio import Operation, Outcome
from lockgate_sim.world import AdapterConfig, WorldConfig
from tests.ble.conftest import ProgressLog, SimulatedStation, StationFactory, _lock

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def _discovering(s: SimulatedStation) -> bool:
    return (await s.sim.control.show()).discovering


async def _until_paused(s: SimulatedStation) -> None:
    for _ in range(200):
        if not await _discovering(s):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the scan never paused")


async def test_the_scan_pauses_and_an_operation_scans_for_a_lock_not_heard_yet(
    station: StationFactory,
) -> None:
    away = _lock(2).model_copy(update={"in_range": False})
    config = WorldConfig.model_validate(
        {"adapter": AdapterConfig(connection_slots=3), "lock": [_lock(0), _lock(1), away]}
    )
    s = await station(world_config=config, scan_window_s=0.5, scan_interval_s=3600.0)
    await s.wait_for(lambda: s.driver.radio_up)
    await _until_paused(s)
    # Heard in the first window: reached while the scan pauses, with no scan.
    result = await s.driver.perform(
        s.bike(0), Operation.UNLOCK, s.credentials(0), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    assert not await _discovering(s)
    # Not heard yet (it came in range during the pause): the operation scans for it at once,
    # long before the next window (an hour away).
    await s.sim.control.back_in_range(away.name)
    result = await s.driver.perform(
        s.bike(2), Operation.UNLOCK, s.credentials(2), timeout_s=30, progress=ProgressLog()
    )
    assert result.outcome is Outcome.OK, result.reason
    await _until_paused(s)
