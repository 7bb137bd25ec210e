"""The simulator fixture: a world on a private bus, with bleak pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from lockgate_sim.testing import RunningSimulator, run_simulator
from tests.sim.simkit import world


@pytest.fixture
async def sim(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningSimulator]:
    async with run_simulator(world()) as running:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", running.bus_address)
        yield running
