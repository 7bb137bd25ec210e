"""What the engine's per-lock workers share, and the unit of work they pass along.

A :class:`Job` is one command on its way through a lock's queue (:mod:`lockgate.engine.worker`);
the :class:`Crew` is what every worker of one engine (:mod:`lockgate.engine.engine`) shares: the
store, the radio, the pure ledger, the clock, the commands' own credentials in memory, and the
events by which the engine stops them and its deadline task is woken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from lockgate.contract.request import CommandRequest
from lockgate.engine.ledger import Ledger
from lockgate.protocol.credentials import Credentials
from lockgate.radio import LockRadio
from lockgate.store.records import CommandRecord
from lockgate.store.store import Store

Clock = Callable[[], datetime]
# How long a worker waits between tries while its store does not write (disk full, read-only).
STORE_RETRY_S = (0.2, 5.0)


@dataclass(slots=True, eq=False)
class Job:
    """One command on its way through a lock's queue (mutable: its record moves on)."""

    record: CommandRecord
    request: CommandRequest
    settle: bool = False  # recovered after it may have reached the lock: read, never move
    started: bool = False
    ended: bool = False
    touched: bool = False  # the radio was asked to move the lock
    store_failed: bool = False  # a write failed mid-command: settled once the store writes again
    deadline: float | None = None
    """For a default (relative) deadline: when it passes on the monotonic clock; ``None``: the
    request's ``timeout_at`` is the backend's, told on the wall clock."""

    @property
    def id(self) -> str:
        return self.record.id


@dataclass(frozen=True, slots=True, eq=False)
class Crew:
    """What every worker of one engine shares: the store, the radio, the ledger and the clock."""

    store: Store
    radio: LockRadio
    ledger: Ledger
    clock: Clock
    mono: Callable[[], float]
    """The monotonic clock: durations (default deadlines, a booking's default expiry)."""
    settle_timeout_s: float
    log: structlog.stdlib.BoundLogger
    secrets: dict[str, Credentials] = field(repr=False)
    """A command's own credentials, by command id, in memory only, until the command ends."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the engine's stop: a queued command no longer starts (it runs after a restart)."""
    deadlines_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """The engine's deadline task looks again (a command queued, a booking written)."""

    def remaining(self, job: Job) -> float:
        """Seconds until the job's deadline: on the monotonic clock for a default deadline, on
        the wall clock for the backend's ``timeout_at``."""
        if job.deadline is not None:
            return job.deadline - self.mono()
        return (job.request.timeout_at - self.clock()).total_seconds()
