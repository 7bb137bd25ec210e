"""A lock's held steps: a running command's SENT, RECEIVED and the state the lock showed, kept in
memory and written with the lock's next write, or on their own a moment after the first.

Each step costs a transaction of about ten 512-byte pages, most of them the same pages as the
conclusion's (the command row, the lock row, the outbox's last leaf), and the conclusion usually
comes within a motor's time; written with it, the steps add two to four pages (docs/store.md,
"Writes a card survives"). What holding must not change, and does not:

- nothing held is in the store, so nothing held is published before a write has synced it (a
  power cut loses held steps whole and unpublished; the write-ahead on the disk has the command
  settled by a read at the next start);
- a write that carries held steps and fails takes every one of them back, newest first, as a
  step that failed alone is taken back (:func:`take_back`): the engine's memory goes back to what
  the disk holds, and the versions and events it gives out next follow on from there;
- steps are held, and held steps written, only under the lock's mutex, so a failed write's
  rollback always comes before the next step is staged on top.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lockgate.engine.jobs import Crew
from lockgate.store.errors import StoreError
from lockgate.store.records import Change

STEPS_HELD_S = 0.2
"""Held steps are written on their own at most this long after the first of them: the backend
sees SENT and RECEIVED at most this late."""

Held = list[tuple[Change, Callable[[], None]]]
"""Steps held: each change, and how to take its memory back."""


def take_back(held: Held) -> None:
    """Held steps that did not land, taken back newest first (each rollback restores what its step
    replaced, so the oldest's leaves memory as the disk has it)."""
    for _, rollback in reversed(held):
        rollback()


class HeldSteps:
    """One lock's held steps and the timer that writes them on their own."""

    def __init__(
        self, bike: str, crew: Crew, mutex: asyncio.Lock, written: Callable[[], None]
    ) -> None:
        self._bike = bike
        self._crew = crew
        self._mutex = mutex
        self._written = written  # called after a write of held steps that carried a lock record
        self._held: Held = []
        self._timer: asyncio.Task[None] | None = None

    def hold(self, change: Change, rollback: Callable[[], None]) -> None:
        """Holds a step (the caller holds the mutex and has set memory to it)."""
        self._held.append((change, rollback))
        if self._timer is None or self._timer.done():
            self._timer = asyncio.get_running_loop().create_task(
                self._write_later(), name=f"lockgate.engine.steps:{self._bike}"
            )

    def take(self) -> Held:
        """Every held step, for the write that is about to carry them (under the mutex)."""
        held, self._held = self._held, []
        return held

    def cancel(self) -> None:
        """The worker ends: held steps are lost, as in a power cut (settled by a read later)."""
        if self._timer is not None:
            self._timer.cancel()

    async def _write_later(self) -> None:
        """The held steps, on their own, :data:`STEPS_HELD_S` after the first (unless the lock's
        next write took them first). A failure takes them back and is logged: the motion goes on,
        and the conclusion is written (or the command settled by a read) from what was stored."""
        await asyncio.sleep(STEPS_HELD_S)
        async with self._mutex:
            held = self.take()
            if not held:
                return
            try:
                await self._crew.store.apply(*(step for step, _ in held), at=self._crew.clock())
            except StoreError as err:
                take_back(held)
                self._crew.log.error(  # noqa: TRY400 - no exc_info: locals may hold a key
                    "the store failed to write a step", error=str(err)
                )
                return
            if any(step.locks for step, _ in held):
                self._written()
