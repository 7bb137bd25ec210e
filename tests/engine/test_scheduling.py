"""Per-lock FIFO, parallelism across locks, idempotency under load, and a clean stop."""

from __future__ import annotations

import asyncio

from lockgate.model import Admission, CommandState
from lockgate.radio import Operation
from tests.engine.harness import NOBOND_JSON, SHAREE_JSON, Harness


async def test_commands_for_one_lock_run_one_at_a_time_in_arrival_order(harness: Harness) -> None:
    harness.radio.locks["FR1540"].motor_s = 0.05
    order = ["unlock", "lock", "unlock", "lock"]
    for number, command in enumerate(order):
        await harness.send(id=f"f{number}", command=command, bike="FR1540", credentials=SHAREE_JSON)
    await harness.engine.wait_idle(5)
    assert [m.operation.value for m in harness.radio.motions] == order
    assert harness.radio.max_parallel == 1
    ends = []
    for number in range(len(order)):
        record = await harness.store.command(f"f{number}")
        assert record is not None
        assert record.state is CommandState.SUCCESS
        assert record.ended_at is not None
        ends.append(record.ended_at)
    assert ends == sorted(ends)
    starts = [m.at for m in harness.radio.motions]
    # Each motion starts after the previous command ended.
    assert all(starts[i + 1] >= ends[i] for i in range(len(order) - 1))


async def test_commands_for_different_locks_run_in_parallel(harness: Harness) -> None:
    # Every motor waits until all three locks are at their motion: run one after another, the
    # first would wait for ever (and the commands end TIMED_OUT), however fast the machine.
    at_motion: set[str] = set()
    all_there = asyncio.Event()

    async def meet(bike: str, operation: Operation) -> None:
        at_motion.add(bike)
        if len(at_motion) == 3:
            all_there.set()
        await all_there.wait()

    for lock in harness.radio.locks.values():
        lock.before_motion = meet
    await harness.send(id="p0", command="unlock", bike="FR1540", credentials=SHAREE_JSON)
    await harness.send(id="p1", command="unlock", bike="FR1541", credentials=SHAREE_JSON)
    await harness.send(id="p2", command="unlock", bike="FR1542", credentials=NOBOND_JSON)
    await harness.engine.wait_idle(30)
    assert harness.radio.max_parallel == 3
    assert sorted(m.bike for m in harness.radio.motions) == ["FR1540", "FR1541", "FR1542"]
    for number in range(3):
        record = await harness.store.command(f"p{number}")
        assert record is not None
        assert record.state is CommandState.SUCCESS


async def test_a_repeated_request_runs_once_and_gets_its_document_again(harness: Harness) -> None:
    fields = {"id": "again", "command": "unlock", "bike": "FR1540", "credentials": SHAREE_JSON}
    first = await harness.send(**fields)
    repeats = [await harness.send(**fields) for _ in range(3)]
    await harness.engine.wait_idle(5)
    final = await harness.send(**fields)
    assert first.admission is Admission.ACCEPTED
    assert {r.admission for r in repeats} == {Admission.REPEATED}
    assert final.admission is Admission.REPEATED
    assert harness.radio.unlocks("FR1540") == 1
    documents = await harness.documents("again")
    assert documents[-1]["state"]["value"] == "SUCCESS"  # the stored document, again
    assert documents[-1] == max(documents[:-1], key=lambda d: d["version"])


async def test_stop_lets_a_running_command_finish_and_starts_no_new_one(harness: Harness) -> None:
    harness.radio.locks["FR1540"].motor_s = 0.2
    await harness.send(id="running", command="unlock", bike="FR1540", credentials=SHAREE_JSON)
    await harness.send(id="queued", command="lock", bike="FR1540", credentials=SHAREE_JSON)
    await harness.radio_moved("FR1540")
    await harness.engine.stop(grace_s=2)
    running = await harness.store.command("running")
    queued = await harness.store.command("queued")
    assert running is not None
    assert queued is not None
    assert running.state is CommandState.SUCCESS
    assert queued.state is CommandState.NOT_SENT  # left for the next start, never half-run
    assert [m.operation for m in harness.radio.motions] == [Operation.UNLOCK]
    late = await harness.send(id="late", command="lock", bike="FR1541", credentials=SHAREE_JSON)
    assert late.admission is Admission.ACCEPTED  # the receipt is stored ...
    # ... but nothing runs: the engine queues no job once stopping (submit queues a job at once,
    # before it returns, so one would be in the worker's list now, before any radio call).
    worker = harness.engine._workers["FR1541"]
    assert (worker.waiting, worker.running, worker.queue.qsize()) == ([], None, 0)
    assert harness.radio.calls[-1][0] == "FR1540"
    record = await harness.store.command("late")
    assert record is not None
    assert record.state is CommandState.NOT_SENT


async def test_stop_bounds_a_command_that_does_not_finish(harness: Harness) -> None:
    harness.radio.locks["FR1540"].hold = asyncio.Event()  # the session never ends by itself
    await harness.send(id="stuck", command="unlock", bike="FR1540", credentials=SHAREE_JSON)
    await harness.radio_moved("FR1540")
    # stop() returns although the session never ends: the command is cancelled after its grace
    # (without the bound this await would never return, and the test's timeout would fail it).
    await asyncio.wait_for(harness.engine.stop(grace_s=0.2), timeout=30)
    assert harness.radio.active == set()  # the stuck session was cancelled, not left running
    await harness.close()
    # Left as it was at the lock, to be settled by a read at the next start.
    reopened = Harness(harness.path, harness.radio)
    await reopened.store.open()
    try:
        record = await reopened.store.command("stuck")
    finally:
        await reopened.store.close()
    assert record is not None
    assert record.state in (CommandState.SENT, CommandState.RECEIVED)
