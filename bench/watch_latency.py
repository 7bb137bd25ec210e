"""How soon a lock closed by hand is mirrored: simulator at time scale 1, real bleak, the driver.

For each trial: unlock a lock through the driver, wait until it is watched, push its bolt shut
through the simulator's control interface, and time the two observations the driver makes
(``locking`` and ``locked``, cause ``manual``) from the moment the control call was made.
The simulator's bolt, pushed by hand, takes 0.3 s between its two indications.

    .venv/bin/python bench/watch_latency.py [--trials 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from lockgate.ble.discovery import LockIdentity
from lockgate.ble.driver import Driver
from lockgate.ble.settings import RadioSettings
from lockgate.model import Cause, LockState, Profile
from lockgate.protocol.credentials import signed_byte_string
from lockgate.radio import Operation, Progress, StateObserved
from lockgate_sim.testing import run_simulator
from lockgate_sim.world import AdapterConfig, LockConfig, WorldConfig

LOCK = LockConfig(
    name="ISHAREIT-2200540",
    address="FC:3C:00:2A:2A:DD",
    profile=Profile.SHAREE,
    k_seed=signed_byte_string(bytes(range(16))),
    k_u=signed_byte_string(bytes(range(1, 21)) + bytes(4)),
    motor_ms=1200,
    connect_ms=250,
)


async def _no_progress(_progress: Progress) -> None:
    return None


async def trial_run(trials: int) -> tuple[list[float], list[float]]:
    world = WorldConfig.model_validate({"adapter": AdapterConfig(), "lock": [LOCK]})
    seen: list[tuple[float, StateObserved]] = []
    arrived = asyncio.Event()

    locking: list[float] = []
    locked: list[float] = []
    async with run_simulator(world, time_scale=1.0) as sim:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = sim.bus_address
        identity = LockIdentity("FR1540", LOCK.name, LOCK.address, LOCK.profile)
        settings = RadioSettings(sync_interval_s=3600.0)
        async with asyncio.TaskGroup() as tasks, Driver([identity], settings) as driver:

            async def observe() -> None:
                async for observation in driver.observations():
                    if isinstance(observation, StateObserved) and observation.cause is Cause.MANUAL:
                        seen.append((time.perf_counter(), observation))
                        arrived.set()

            tasks.create_task(observe(), name="observations")
            for _ in range(trials):
                result = await driver.perform(
                    "FR1540",
                    Operation.UNLOCK,
                    LOCK.credentials(),
                    timeout_s=30,
                    progress=_no_progress,
                )
                assert result.ok, result.reason
                while "FR1540" not in driver.watched():  # noqa: ASYNC110 - polls the driver
                    await asyncio.sleep(0.01)
                seen.clear()
                pushed = time.perf_counter()
                await sim.control.close_by_hand(LOCK.name)
                while len(seen) < 2:
                    arrived.clear()
                    await asyncio.wait_for(arrived.wait(), timeout=10)
                states = [o.lock_state for _, o in seen]
                assert states == [LockState.LOCKING, LockState.LOCKED], states
                locking.append(seen[0][0] - pushed)
                locked.append(seen[1][0] - pushed)
                while driver.watched():  # noqa: ASYNC110 - polls the driver
                    await asyncio.sleep(0.01)
    return locking, locked


def _summary(name: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return (
        f"{name:>8}: n={len(ms)} median {statistics.median(ms):7.1f} ms, "
        f"p95 {ms[int(0.95 * (len(ms) - 1))]:7.1f} ms, max {ms[-1]:7.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    locking, locked = asyncio.run(trial_run(args.trials))
    print("manual close mirrored (from the push to the observation):")
    print(_summary("locking", locking))
    print(_summary("locked", locked))


if __name__ == "__main__":
    main()
