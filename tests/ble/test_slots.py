"""The adapter's connection slots: capacity, priority order, and commands evicting watches."""

from __future__ import annotations

import asyncio

import pytest

from lockgate.ble.slots import Priority, SlotPool


async def test_capacity_is_never_exceeded_and_priority_is_served_first() -> None:
    pool = SlotPool(2)
    a = pool.try_acquire("a", Priority.SYNC)
    b = pool.try_acquire("b", Priority.SYNC)
    assert a is not None
    assert b is not None
    assert pool.try_acquire("c", Priority.COMMAND) is None
    order: list[str] = []
    held: list[int] = []

    async def want(bike: str, priority: Priority) -> None:
        slot = await pool.acquire(bike, priority)
        order.append(bike)
        held.append(pool.in_use)
        await asyncio.sleep(0)
        pool.release(slot)

    tasks = [
        asyncio.create_task(want("watch", Priority.WATCH)),
        asyncio.create_task(want("sync", Priority.SYNC)),
        asyncio.create_task(want("command", Priority.COMMAND)),
    ]
    await asyncio.sleep(0)
    pool.release(a)
    await asyncio.gather(*tasks[2:3])
    pool.release(b)
    await asyncio.gather(*tasks)
    assert order == ["command", "sync", "watch"]
    assert max(held) == 2  # never more than the capacity, while every waiter was served
    assert pool.in_use == 0


async def test_a_command_evicts_one_watch_not_a_sync() -> None:
    pool = SlotPool(2)
    watch = pool.try_acquire("w", Priority.WATCH)
    sync = pool.try_acquire("s", Priority.SYNC)
    assert watch is not None
    assert sync is not None
    waiting = asyncio.create_task(pool.acquire("c", Priority.COMMAND))
    await asyncio.sleep(0)
    assert watch.evicted.is_set()
    assert not sync.evicted.is_set()
    assert not waiting.done()
    pool.release(watch)
    slot = await waiting
    assert slot.bike == "c"
    assert pool.in_use == 2


async def test_a_sync_does_not_evict() -> None:
    pool = SlotPool(1)
    watch = pool.try_acquire("w", Priority.WATCH)
    assert watch is not None
    waiting = asyncio.create_task(pool.acquire("s", Priority.SYNC))
    await asyncio.sleep(0)
    assert not watch.evicted.is_set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    pool.release(watch)
    assert pool.in_use == 0


async def test_cancelled_waiter_gives_nothing_away() -> None:
    pool = SlotPool(1)
    held = pool.try_acquire("a", Priority.COMMAND)
    assert held is not None
    waiting = asyncio.create_task(pool.acquire("b", Priority.COMMAND))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    pool.release(held)
    pool.release(held)  # releasing twice is harmless
    assert pool.in_use == 0
    assert pool.try_acquire("c", Priority.WATCH) is not None


def test_a_pool_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one"):
        SlotPool(0)


async def test_a_link_kept_for_a_watch_goes_when_commands_wait() -> None:
    pool = SlotPool(1)
    held = pool.try_acquire("a", Priority.COMMAND)
    assert held is not None
    waiting = asyncio.create_task(pool.acquire("b", Priority.COMMAND))
    await asyncio.sleep(0)
    assert not held.evicted.is_set()  # a command's slot is never taken
    pool.repurpose(held, Priority.WATCH)
    assert held.evicted.is_set()
    pool.repurpose(held, Priority.COMMAND)  # taken back by a command on the same lock
    assert not held.evicted.is_set()
    pool.release(held)
    assert (await waiting).bike == "b"
