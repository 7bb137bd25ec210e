"""The store under a station's load: transactions, and a deep outbox while the broker is away.

1. Transactions: each writes a lock record and two lock_state events (with their outbox rows, in
   one transaction, synchronous=FULL) — the cost of one mirrored transition — and the event loop's
   lag meanwhile (the store runs SQLite on its own thread).
2. A broker away for a long time: the outbox filled to ``--depth`` events, then the cost of one
   more transition at that depth and of the first batch the MQTT link reads on reconnect.

    .venv/bin/python bench/store_outbox.py [--transactions 500] [--depth 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from lockgate.contract.documents import LockStateEvent
from lockgate.contract.station import RegisteredLock, Station
from lockgate.model import LockState, Profile
from lockgate.store import Change, LockRecord, Outbox, StationKey, Store

STATION = Station(
    "FR101",
    "47.976634",
    "7.825490",
    (
        RegisteredLock(
            "FR1540", "ISHAREIT-2200540", "00000000-0000-0000-0000-fc3c002a2add", Profile.SHAREE
        ),
    ),
    "bench",
)


def _event(state: LockState, previous: LockState) -> LockStateEvent:
    return LockStateEvent(
        event_id=str(uuid.uuid4()),
        station=STATION.id,
        boot_id=STATION.boot_id,
        seq=0,
        bike="FR1540",
        at=datetime.now(UTC),
        latitude=STATION.latitude,
        longitude=STATION.longitude,
        lock_state=state,
        previous=previous,
    )


def _transition(index: int) -> Change:
    opening = index % 2 == 0
    state = LockState.UNLOCKED if opening else LockState.LOCKED
    before = LockState.LOCKED if opening else LockState.UNLOCKED
    moving = LockState.UNLOCKING if opening else LockState.LOCKING
    return Change(
        locks=(LockRecord("FR1540", lock_state=state),),
        events=(_event(moving, before), _event(state, moving)),
    )


async def _lag(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(0.001)
        samples.append(time.perf_counter() - started - 0.001)


def _ms(values: list[float]) -> str:
    ordered = sorted(v * 1000 for v in values)
    p99 = ordered[int(0.99 * (len(ordered) - 1))]
    return f"median {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms, max {ordered[-1]:.2f} ms"


async def run(transactions: int, depth: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.db"
        key = StationKey.from_bytes(bytes(range(32)))
        async with Store(path, station=STATION, key=key, max_outbox=depth + 1000) as store:
            durations: list[float] = []
            lag: list[float] = []
            stop = asyncio.Event()
            lagging = asyncio.create_task(_lag(lag, stop))
            for index in range(transactions):
                started = time.perf_counter()
                await store.apply(_transition(index), at=datetime.now(UTC))
                durations.append(time.perf_counter() - started)
            stop.set()
            await lagging
            print(f"transaction (lock record + 2 events), n={transactions}: {_ms(durations)}")
            print(f"event-loop lag meanwhile: {_ms(lag)}")

            filled = time.perf_counter()
            index = transactions
            while await store.outbox_depth() < depth:
                await store.apply(_transition(index), at=datetime.now(UTC))
                index += 1
            print(f"outbox filled to {depth} messages in {time.perf_counter() - filled:.1f} s")
            deep: list[float] = []
            for _ in range(50):
                started = time.perf_counter()
                await store.apply(_transition(index), at=datetime.now(UTC))
                deep.append(time.perf_counter() - started)
                index += 1
            print(f"transaction at that depth, n=50: {_ms(deep)}")
            outbox = Outbox(store)
            await outbox.connected()
            started = time.perf_counter()
            batch = await outbox.next_batch(100)
            print(
                f"first batch of {len(batch)} on reconnect: "
                f"{(time.perf_counter() - started) * 1000:.1f} ms"
            )
        print(
            f"database size at that depth: {path.stat().st_size / 1e6:.1f} MB"
            if path.exists()
            else ""
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=500)
    parser.add_argument("--depth", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(run(args.transactions, args.depth))


if __name__ == "__main__":
    main()
