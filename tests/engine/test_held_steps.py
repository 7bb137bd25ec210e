"""A command's steps held from the store (docs/store.md, "Writes a card survives"): SENT, RECEIVED
and the state the lock showed are kept in memory and written with the lock's next write, or on
their own a moment after the first. What that must not change: the messages and their order are
those of one transaction per step; nothing held is in the store (so nothing is published) before
its write; a write of held steps that fails takes every one of them back, as a failed step, so
the versions and the lock's events the engine gives out next start from what the disk holds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from lockgate.model import CommandState, LockState
from lockgate.store import Change, StoreError
from tests.engine.harness import SHAREE_JSON, Harness
from tests.engine.radio_model import ModelRadio
from tests.engine.test_storage_faults import CEILING, fill, free

BIKE = "FR1540"


def published(rows: list[Any]) -> list[dict[str, Any]]:
    return [json.loads(row.payload) for row in rows]


async def until_stored(harness: Harness, command_id: str, state: CommandState) -> None:
    async with asyncio.timeout(5):
        while True:
            record = await harness.store.command(command_id)
            if record is not None and record.state is state:
                return
            await asyncio.sleep(0.01)


async def test_held_steps_are_written_on_their_own_while_the_motor_runs_in_the_order_of_steps(
    harness: Harness,
) -> None:
    lock = harness.radio.locks[BIKE]
    lock.hold = asyncio.Event()  # the motion waits after the lock showed it moving
    await harness.run(command="provision", bike=BIKE, credentials=SHAREE_JSON)
    await harness.send(id="u1", command="unlock", bike=BIKE)
    await until_stored(harness, "u1", CommandState.RECEIVED)  # no conclusion came to take them
    lock.hold.set()
    await harness.engine.wait_idle(5)

    messages = [
        (doc["state"]["value"] if topic.startswith("commands/") else doc["lock_state"])
        for topic, doc in await harness.messages()
        if topic == "commands/u1" or (topic == "events" and doc["type"] == "lock_state")
    ]
    receipt = messages.index("NOT_SENT")
    # One transaction per step would queue exactly this, in this order.
    assert messages[receipt:] == [
        "NOT_SENT",
        "SENT",
        "RECEIVED",
        "unlocking",
        "RECEIVED",
        "unlocked",
        "SUCCESS",
    ]
    documents = await harness.documents("u1")
    assert [d["version"] for d in documents] == list(range(1, len(documents) + 1))
    assert documents[-1]["state"]["value"] == "SUCCESS"


@pytest.fixture
async def full(tmp_path: Path, radio: ModelRadio) -> Harness:
    station = await Harness(tmp_path / "lockgate.db", radio, max_size_bytes=CEILING).start()
    await station.run(command="provision", bike=BIKE, credentials=SHAREE_JSON)
    return station


async def test_held_steps_that_cannot_be_written_are_taken_back_as_failed_steps(
    full: Harness,
) -> None:
    """The disk fills as the lock is asked to move: the held steps' own write fails, so SENT,
    RECEIVED and the lock's ``unlocking`` are taken back, in memory as on the disk. The store
    writes again before the motor ends: the conclusion follows the write-ahead's version without
    a gap, and the lock's move is announced once, from the state the disk had."""
    harness = full
    try:
        lock = harness.radio.locks[BIKE]
        lock.hold = asyncio.Event()
        refused = asyncio.Event()
        apply = harness.store.apply

        async def watched(*changes: Change, **options: Any) -> Any:
            try:
                return await apply(*changes, **options)
            except StoreError:
                states = {c.state for change in changes for c in change.commands if c.id == "u2"}
                if CommandState.SENT in states and CommandState.SUCCESS not in states:
                    refused.set()  # the held steps' own write
                raise

        harness.store.apply = watched  # type: ignore[method-assign]

        async def disk_fills(_bike: str, _operation: object) -> None:
            await fill(harness)

        lock.on_control = disk_fills  # after the write-ahead landed, before SENT
        before = await harness.store.queued(after=0, limit=1_000_000)
        await harness.send(id="u2", command="unlock", bike=BIKE, user_id="U")
        await asyncio.wait_for(refused.wait(), 15)
        memory = harness.engine.lock_record(BIKE)
        assert memory is not None
        assert memory.lock_state is LockState.LOCKED, "the state step was not taken back"
        stored = await harness.store.command("u2")
        assert stored is not None
        assert stored.state is CommandState.NOT_SENT

        during = await harness.store.queued(after=0, limit=1_000_000)
        await free(harness)
        lock.hold.set()
        await harness.engine.wait_idle(15)
        after = await harness.store.queued(after=0, limit=1_000_000)

        record = await harness.store.command("u2")
        assert record is not None
        assert record.state is CommandState.SUCCESS, record
        assert harness.radio.unlocks(BIKE) == 1
        rows = {r.id: r for r in before + during + after}
        everything = published(list(rows.values()))
        documents = [d for d in everything if d.get("id") == "u2"]
        assert [d["version"] for d in documents] == list(range(1, record.version + 1))
        # The receipt, the rental start (written ahead), the end: the taken-back steps are gone.
        assert [d["state"]["value"] for d in documents] == ["NOT_SENT", "NOT_SENT", "SUCCESS"]
        states = [
            (d["previous"], d["lock_state"]) for d in everything if d.get("type") == "lock_state"
        ]
        assert ("unlocking", "unlocked") not in states
        assert states[-1] == ("locked", "unlocked")
        assert [s for _, s in states].count("unlocked") == 1
    finally:
        await harness.close()
