"""The engine driving the real BLE driver against the simulator: the seam between them.

Commands go in as raw requests; what comes out is read where the MQTT link will read it, from the
store's outbox. This checks that the driver's progress becomes the command document's states and
``STATE_*`` events, that transitions become ``lock_state`` events with the right cause (command,
manual, startup), and that a rider closing a watched lock by hand reaches the outbox.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lockgate.ble.driver import Driver
from lockgate.ble.settings import RadioSettings, StepTimeouts
from lockgate.contract.station import RegisteredLock, Station
from lockgate.contract.times import format_time
from lockgate.engine import Engine
from lockgate.model import Cause, CommandState, ErrorCode, LockState, MessageKind
from lockgate.protocol.identity import address_to_guid
from lockgate.store import StationKey, Store
from lockgate_sim.testing import RunningSimulator, run_simulator
from tests.ble.conftest import bike_of, identities, world

pytestmark = pytest.mark.integration


@dataclass
class Gateway:
    sim: RunningSimulator
    store: Store
    driver: Driver
    engine: Engine

    async def messages(self, kind: MessageKind) -> list[dict[str, Any]]:
        rows = await self.store.queued(after=0, limit=100_000)
        return [json.loads(row.payload) for row in rows if row.kind is kind]

    async def lock_events(self, bike: str) -> list[tuple[str, str, str | None]]:
        return [
            (e["lock_state"], e["cause"], e.get("command_id"))
            for e in await self.messages(MessageKind.EVENT)
            if e["type"] == "lock_state" and e["bike"] == bike
        ]


@pytest.fixture
async def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Gateway]:
    config = world(locks=2)
    async with run_simulator(config, time_scale=0.1) as sim:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)
        station = Station(
            "FR101",
            "47.976634",
            "7.825490",
            tuple(
                RegisteredLock(
                    bike_of(lock), lock.name, address_to_guid(lock.address), lock.profile
                )
                for lock in config.locks
            ),
            uuid.uuid4().hex,
        )
        settings = RadioSettings(
            sync_interval_s=3600.0, steps=StepTimeouts(gatt_s=5, answer_s=5, motion_s=10)
        )
        key = StationKey.from_bytes(bytes(range(32)))
        # As the service wires them: each part built whole, then one task carries the driver's
        # observations to the engine. The task group is entered first, so it is left last: the
        # driver's end ends the observations, and the task with them.
        async with (
            Store(tmp_path / "lockgate.db", station=station, key=key) as store,
            asyncio.TaskGroup() as tasks,
            Driver(identities(config), settings) as driver,
            Engine(store=store, radio=driver, station=station) as engine,
        ):

            async def mirror() -> None:
                async for observation in driver.observations():
                    await engine.observe(observation)

            tasks.create_task(mirror(), name="observations")
            await engine.recover()
            yield Gateway(sim, store, driver, engine)


async def eventually(check: Callable[[], bool], timeout_s: float = 10) -> None:
    """Wait until ``check`` holds: a wait limit, not a timing assertion."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - the states it checks signal nothing
            await asyncio.sleep(0.02)


def request(bike: str, command: str, **fields: Any) -> bytes:
    deadline = format_time(datetime.now(UTC) + timedelta(seconds=60))
    body = {"id": uuid.uuid4().hex, "command": command, "bike": bike, "timeout_at": deadline}
    return json.dumps(body | fields).encode()


async def test_unlock_then_closed_by_hand(gateway: Gateway) -> None:
    lock = gateway.sim.world.locks[0]
    bike = bike_of(lock)
    keys = {"K_seed": lock.k_seed, "K_u": lock.k_u}
    submission = await gateway.engine.submit(request(bike, "unlock", credentials=keys))
    await gateway.engine.wait_idle(30)

    record = await gateway.store.command(submission.command_id or "")
    assert record is not None
    assert record.state is CommandState.SUCCESS, record.reason
    documents = [
        d for d in await gateway.messages(MessageKind.COMMAND) if d["id"] == submission.command_id
    ]
    states = [d["state"]["value"] for d in documents]
    walked = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
    assert walked == ["NOT_SENT", "SENT", "RECEIVED", "SUCCESS"]
    names = [e["name"] for e in documents[-1]["events"]]
    assert names[0] == "REQUEST_UNLOCK"
    assert names.index("STATE_UNLOCKING") < names.index("STATE_UNLOCKED")
    assert [d["version"] for d in documents] == list(range(1, len(documents) + 1))
    assert await gateway.lock_events(bike) == [
        ("unlocking", "command", submission.command_id),
        ("unlocked", "command", submission.command_id),
    ]

    # The open lock is watched: a rider closing it reaches the outbox, cause manual.
    await eventually(lambda: bike in gateway.driver.watched())
    await gateway.sim.control.close_by_hand(lock.name)

    def closed() -> bool:
        record = gateway.engine.lock_record(bike)
        return record is not None and record.lock_state is LockState.LOCKED

    await eventually(closed)
    assert (await gateway.lock_events(bike))[2:] == [
        ("locking", "manual", None),
        ("locked", "manual", None),
    ]


async def test_the_startup_read_is_mirrored(gateway: Gateway) -> None:
    lock = gateway.sim.world.locks[1]
    bike = bike_of(lock)
    keys = {"auth_id": lock.auth_id, "phone_id": lock.phone_id, "ltk": lock.ltk}
    provision = await gateway.engine.submit(request(bike, "provision", credentials=keys))
    await gateway.engine.wait_idle(30)
    record = await gateway.store.command(provision.command_id or "")
    assert record is not None
    assert record.state is CommandState.SUCCESS, record.reason

    result = await gateway.driver.read(bike, Cause.STARTUP, timeout_s=30)
    assert result.ok, result.reason

    def read() -> bool:
        record = gateway.engine.lock_record(bike)
        return record is not None and record.battery == lock.battery

    await eventually(read)  # the reading reaches the engine through the observations task
    events = await gateway.lock_events(bike)
    assert events == [("locked", "startup", None)]
    lock_documents = [
        json.loads(row.payload)
        for row in await gateway.store.unacknowledged_retained()
        if row.topic == f"locks/{bike}"
    ]
    assert lock_documents[-1]["lock_state"] == "locked"
    assert lock_documents[-1]["battery"] == lock.battery
    assert lock_documents[-1]["heartbeat_v2"]["health"] == "HEALTHY"


async def test_a_blocked_unlock_leaves_the_lock_where_it_was(gateway: Gateway) -> None:
    """The lock says unlocking, then that its bolt is blocked (0x0C): the command ends in ERROR
    and the lock is mirrored as locked again, not left unlocking."""
    lock = gateway.sim.world.locks[0]
    bike = bike_of(lock)
    await gateway.sim.control.jam(lock.name)
    keys = {"K_seed": lock.k_seed, "K_u": lock.k_u}
    submission = await gateway.engine.submit(request(bike, "unlock", credentials=keys))
    await gateway.engine.wait_idle(30)
    record = await gateway.store.command(submission.command_id or "")
    assert record is not None
    assert record.state is CommandState.ERROR
    assert record.error_code is ErrorCode.LOCK_BLOCKED
    lock_record = gateway.engine.lock_record(bike)
    assert lock_record is not None
    assert lock_record.lock_state is LockState.LOCKED
    states = [state for state, _, _ in await gateway.lock_events(bike)]
    assert states[-1] == "locked"
    assert (await gateway.sim.control.lock(lock.name)).bolt == "locked"
