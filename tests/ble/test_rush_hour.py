"""Rush hour on few connection slots: a command never waits behind a watch.

Three unlocks end and their locks' watches take every slot just as commands arrive for other locks.
Each of those commands must take a watch's slot and succeed well within its timeout.
"""

from __future__ import annotations

import asyncio

import pytest

from lockgate.radio import Operation, Outcome, Result
from tests.ble.conftest import ProgressLog, SimulatedStation, StationFactory, world

pytestmark = pytest.mark.integration

ROUNDS = 4
TIMEOUT_S = 15.0


async def _unlock(s: SimulatedStation, index: int) -> Result:
    return await _operate(s, index, Operation.UNLOCK)


async def _lock(s: SimulatedStation, index: int) -> Result:
    return await _operate(s, index, Operation.LOCK)


async def _operate(s: SimulatedStation, index: int, operation: Operation) -> Result:
    return await s.driver.perform(
        s.bike(index), operation, s.credentials(index), timeout_s=TIMEOUT_S, progress=ProgressLog()
    )


async def test_commands_take_the_slots_of_watches_that_just_started(
    station: StationFactory,
) -> None:
    s = await station(world_config=world(locks=9, slots=3), watch=True)
    first, second = [0, 1, 2], [3, 4, 5]
    outcomes: list[tuple[int, Outcome, str]] = []
    for _ in range(ROUNDS):
        # Three unlocks: once each ends, its lock is open and its watch keeps the link.
        ended = await asyncio.gather(*(_unlock(s, i) for i in first))
        outcomes += [(i, r.outcome, r.reason) for i, r in zip(first, ended, strict=True)]
        # At once, three commands for other locks: every slot is a watch's (or about to be).
        ended = await asyncio.gather(*(_unlock(s, i) for i in second))
        outcomes += [(i, r.outcome, r.reason) for i, r in zip(second, ended, strict=True)]
        # Close everything again for the next round.
        ended = await asyncio.gather(*(_lock(s, i) for i in first + second))
        outcomes += [(i, r.outcome, r.reason) for i, r in zip(first + second, ended, strict=True)]
        first, second = second, first
    failed = [o for o in outcomes if o[1] is not Outcome.OK]
    assert not failed, failed
