"""The command lifecycle: receipt, SENT, RECEIVED, the end; versions, events, lock documents."""

from __future__ import annotations

import asyncio
import json
import sqlite3

from lockgate.model import Admission, CommandState
from lockgate.radio import Operation
from lockgate.store import Correlation, Outbox
from tests.engine.harness import SHAREE_JSON, Harness


async def test_unlock_walks_the_lifecycle_and_publishes_each_change(harness: Harness) -> None:
    record = await harness.run(
        id="c1",
        command="unlock",
        bike="FR1540",
        credentials=SHAREE_JSON,
        timeout_at=harness.later(5),
    )
    assert record.state is CommandState.SUCCESS
    documents = await harness.documents("c1")
    states = [doc["state"]["value"] for doc in documents]
    assert states[0] == "NOT_SENT"
    assert states[-1] == "SUCCESS"
    assert "SENT" in states
    assert "RECEIVED" in states
    assert [doc["version"] for doc in documents] == list(range(1, len(documents) + 1))
    names = [event["name"] for event in documents[-1]["events"]]
    assert names[0] == "REQUEST_UNLOCK"
    assert "STATE_UNLOCKING" in names
    assert "STATE_UNLOCKED" in names
    assert "RESPONSE_UNLOCK" in names
    lock_events = await harness.events("lock_state")
    assert [(e["previous"], e["lock_state"]) for e in lock_events[-2:]] == [
        ("locked", "unlocking"),
        ("unlocking", "unlocked"),
    ]
    assert all(e["cause"] == "command" and e["command_id"] == "c1" for e in lock_events[-2:])
    assert (await harness.lock_document("FR1540"))["lock_state"] == "unlocked"
    assert harness.radio.unlocks("FR1540") == 1


async def test_receipt_is_stored_before_submit_returns(harness: Harness) -> None:
    submission = await harness.send(id="c2", command="lock", bike="FR1541", credentials=SHAREE_JSON)
    assert submission.admission is Admission.ACCEPTED
    stored = await harness.store.command("c2")
    assert stored is not None
    documents = await harness.documents("c2")
    assert documents[0]["state"]["value"] == "NOT_SENT"
    assert documents[0]["version"] == 1
    await harness.engine.wait_idle(5)
    assert harness.radio.calls[-1][:2] == ("FR1541", Operation.LOCK)


async def test_mqtt5_correlation_is_echoed_on_every_document_of_the_command(
    harness: Harness,
) -> None:
    correlation = Correlation(b"\x01corr", "backend/replies/7")
    payload = json.dumps({"id": "m5", "command": "book", "bike": "FR1540", "user_id": "u"})
    await harness.engine.submit(payload.encode(), correlation=correlation)
    await harness.engine.wait_idle(5)
    await harness.engine.submit(payload.encode())  # repeated without properties: none echoed
    rows = [r for r in await harness.store.queued(after=0, limit=1000) if r.topic == "commands/m5"]
    assert [r.correlation for r in rows] == [correlation, correlation, Correlation()]
    outbox = Outbox(harness.store)  # as the service wires it, for the link
    messages = [m for m in await outbox.next_batch(1000) if m.topic == "commands/m5"]
    assert [m.correlation for m in messages] == [correlation, correlation, Correlation()]


async def test_the_write_ahead_is_on_the_disk_before_the_lock_is_asked_to_move(
    harness: Harness,
) -> None:
    """It is written while the radio connects, and the radio waits for it at AUTHORISED: here
    another connection holds the database's write lock for a while just after the receipt, so
    the write-ahead waits, and the control command must wait with it."""
    seen: list[str | None] = []

    async def look_at_the_disk(bike: str, operation: Operation) -> None:
        with sqlite3.connect(harness.path) as other:
            query = "SELECT dispatched_at FROM command WHERE id = ?"
            seen.append(other.execute(query, ("c9",)).fetchone()[0])

    harness.radio.locks["FR1540"].on_control = look_at_the_disk
    blocker = sqlite3.connect(harness.path, isolation_level=None)
    try:
        await harness.send(id="c9", command="unlock", bike="FR1540", credentials=SHAREE_JSON)
        blocker.execute("BEGIN IMMEDIATE")  # before the worker's first step: no await between
        lock = harness.radio.locks["FR1540"]
        await asyncio.wait_for(lock.authorising.wait(), 10)  # the session is at AUTHORISED
        assert harness.radio.calls, "the radio was not asked while the write-ahead waited"
        assert seen == [], "the lock was asked to move before the write-ahead was durable"
        blocker.execute("ROLLBACK")
        await harness.engine.wait_idle(5)
    finally:
        blocker.close()
    record = await harness.store.command("c9")
    assert record is not None
    assert record.state is CommandState.SUCCESS
    assert len(seen) == 1
    assert seen[0] is not None, "the lock moved before the write-ahead mark was durable"
