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
    settle_timeout_s: float
    log: structlog.stdlib.BoundLogger
    secrets: dict[str, Credentials] = field(repr=False)
    """A command's own credentials, by command id, in memory only, until the command ends."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set by the engine's stop: a queued command no longer starts (it runs after a restart)."""
    deadlines_changed: asyncio.Event = field(default_factory=asyncio.Event)
    """The engine's deadline task looks again (a command queued, a booking written)."""
