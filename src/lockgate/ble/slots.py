"""Who may hold one of the adapter's connection links, and who must give one up.

The adapter holds ``capacity`` links at once. A command's operation comes before a sync's, and a
sync's before a watch's; when every link is taken, a command may take one from a watch, whose owner
is told to let go (:attr:`Slot.evicted`). Waiters are served by priority, then in arrival order.

asyncio-only (no radio, no clock): the driver holds a slot for as long as a link is open.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from enum import IntEnum


class Priority(IntEnum):
    """Lower comes first."""

    COMMAND = 0
    SYNC = 1
    WATCH = 2


@dataclass(eq=False)
class Slot:
    """One link's right to exist, held by one lock for one purpose."""

    bike: str
    priority: Priority
    evicted: asyncio.Event = field(default_factory=asyncio.Event)
    released: bool = False


@dataclass(order=True)
class _Waiter:
    priority: Priority
    order: int
    bike: str = field(compare=False)
    future: asyncio.Future[Slot] = field(compare=False)


class SlotPool:
    """The adapter's connection slots."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("an adapter needs at least one connection slot")
        self._capacity = capacity
        self._held: list[Slot] = []
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def in_use(self) -> int:
        return len(self._held)

    def holders(self) -> list[Slot]:
        return list(self._held)

    def try_acquire(self, bike: str, priority: Priority) -> Slot | None:
        """A slot now if one is free and nobody of equal or higher priority waits, else None."""
        if len(self._held) < self._capacity and not any(
            w.priority <= priority for w in self._waiters
        ):
            return self._grant(bike, priority)
        return None

    async def acquire(self, bike: str, priority: Priority) -> Slot:
        """Wait for a slot. A command asks a watch to give its slot up when none is free."""
        slot = self.try_acquire(bike, priority)
        if slot is not None:
            return slot
        waiter = _Waiter(
            priority, next(self._order), bike, asyncio.get_running_loop().create_future()
        )
        self._waiters.append(waiter)
        self._waiters.sort()
        if priority is Priority.COMMAND:
            self._evict_a_watch()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled():
                # Granted in the same instant as cancelled: give it back.
                self.release(waiter.future.result())
            raise

    def repurpose(self, slot: Slot, priority: Priority) -> None:
        """Hold ``slot`` for another purpose: a command's link kept for a watch, or taken back.

        A slot that becomes a watch's while commands wait is asked to go at once.
        """
        slot.priority = priority
        if priority is Priority.WATCH:
            self._evict_a_watch()
        else:
            slot.evicted.clear()

    def release(self, slot: Slot) -> None:
        """Give a slot back (idempotent) and hand it to the first waiter."""
        if slot.released:
            return
        slot.released = True
        self._held.remove(slot)
        self._serve()

    def _grant(self, bike: str, priority: Priority) -> Slot:
        slot = Slot(bike, priority)
        self._held.append(slot)
        return slot

    def _serve(self) -> None:
        while self._waiters and len(self._held) < self._capacity:
            waiter = self._waiters.pop(0)
            if waiter.future.done():
                continue
            waiter.future.set_result(self._grant(waiter.bike, waiter.priority))

    def _evict_a_watch(self) -> None:
        """Ask one watch that is not already leaving to give up its slot."""
        waiting_commands = sum(1 for w in self._waiters if w.priority is Priority.COMMAND)
        leaving = sum(1 for s in self._held if s.evicted.is_set())
        if leaving >= waiting_commands:
            return
        for slot in self._held:
            if slot.priority is Priority.WATCH and not slot.evicted.is_set():
                slot.evicted.set()
                return
