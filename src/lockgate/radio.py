"""The radio port: what the command engine asks of the radio, and what the radio tells it.

Plain frozen types and one :class:`typing.Protocol`, no bleak and no I/O, so that the engine, the
service and the BLE driver (:mod:`lockgate.ble`, which implements the port) agree on one
vocabulary without the engine importing the transport. It sits just above the model and the
protocol's credentials. Two directions:

- asked: :meth:`LockRadio.perform` runs one :class:`Operation` and ends with one :class:`Result`;
  every failure of the radio is one :class:`Outcome`, mapped once at the driver's edge, with the
  contract's ``ERRORS.*`` code beside it; its :data:`Progress` goes to the caller's sink;
- told: what the radio sees on its own between commands is an :data:`Observation`, which the
  driver yields from ``Driver.observations()`` and the service hands to ``Engine.observe``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from lockgate.model import Cause, ErrorCode, HardwareState, Health, LockState
from lockgate.protocol.credentials import Credentials


class Operation(StrEnum):
    """What one connection to a lock is for."""

    UNLOCK = "unlock"
    LOCK = "lock"
    READ = "read"
    """Read state, battery and firmware (state needs a session; battery and firmware do not)."""


class Outcome(StrEnum):
    """How an operation ended, typed by cause."""

    OK = "ok"
    UNREACHABLE = "unreachable"  # not in range, not found, or every connection attempt failed
    BUSY = "busy"  # BlueZ kept answering InProgress: another attempt held the adapter
    NO_SLOT = "no_slot"  # the adapter had no free connection slot
    LINK_LOST = "link_lost"  # the link dropped mid-session
    AUTH_FAILED = "auth_failed"  # the lock refused the credentials
    MISSING_CREDENTIALS = "missing_credentials"  # a session was needed and no credentials exist
    BLOCKED = "blocked"  # the bolt could not move (0x03 / 0x0C)
    MOVED = "moved"  # the lock refused to close because it moved (0x04)
    REJECTED = "rejected"  # the lock refused the command (0x90, 0x92, 0x9A)
    PROTOCOL = "protocol"  # the lock sent bytes that break the protocol
    TIMED_OUT = "timed_out"  # a step, or the operation's deadline, ran out

    @property
    def error_code(self) -> ErrorCode | None:
        return _ERROR_CODES[self]


_ERROR_CODES: dict[Outcome, ErrorCode | None] = {
    Outcome.OK: None,
    Outcome.UNREACHABLE: ErrorCode.LOCK_UNREACHABLE,
    Outcome.BUSY: ErrorCode.LOCK_UNREACHABLE,
    Outcome.NO_SLOT: ErrorCode.LOCK_UNREACHABLE,
    Outcome.LINK_LOST: ErrorCode.LOCK_UNREACHABLE,
    Outcome.AUTH_FAILED: ErrorCode.AUTH_FAILED,
    Outcome.MISSING_CREDENTIALS: ErrorCode.MISSING_CREDENTIALS,
    Outcome.BLOCKED: ErrorCode.LOCK_BLOCKED,
    Outcome.MOVED: ErrorCode.LOCK_MOVED,
    Outcome.REJECTED: ErrorCode.LOCK_REJECTED,
    Outcome.PROTOCOL: ErrorCode.LOCK_REJECTED,
    Outcome.TIMED_OUT: ErrorCode.TIMED_OUT,
}


class Step(StrEnum):
    """Milestones of an operation, in order, as the command document's states need them."""

    CONNECTED = "connected"
    AUTHORISED = "authorised"
    SENT = "sent"  # the lock control command was written (with response) to the lock
    RECEIVED = "received"  # the lock acknowledged it: its first status after the command


@dataclass(frozen=True, slots=True)
class StepReached:
    step: Step
    at: datetime


@dataclass(frozen=True, slots=True)
class StateSeen:
    """The lock indicated a state during the operation (unlocking, unlocked, locking, locked).

    Not for the state an unlock or lock ends in: that one is the :class:`Result`'s reading, and
    the operation returns as soon as the lock shows it.
    """

    lock_state: LockState
    at: datetime


Progress = StepReached | StateSeen
ProgressSink = Callable[[Progress], Awaitable[None]]
"""Awaited by the radio before it goes on: ``AUTHORISED`` is the last step before the lock is
asked to move, so a sink may hold the motion there (the engine waits for its write-ahead)."""


class Withdrawn(Exception):  # noqa: N818 - a verdict, not an error of the radio
    """Raised by a progress sink at ``AUTHORISED`` to stop the operation before the lock is asked
    to move (the engine's write-ahead did not land). The radio lets the link go and raises it
    from :meth:`LockRadio.perform` as it is: the one exception ``perform`` lets through."""


@dataclass(frozen=True, slots=True)
class Reading:
    """What an operation learnt of the lock; ``None`` where it learnt nothing."""

    lock_state: LockState | None = None
    battery: int | None = None
    firmware: str | None = None
    rssi: int | None = None
    alarm: bool | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """The end of one operation."""

    outcome: Outcome
    reason: str
    reading: Reading = Reading()
    hardware_state: HardwareState | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


# --- what the driver sees on its own, between commands -----------------------------------------


@dataclass(frozen=True, slots=True)
class StateObserved:
    """A lock's state seen outside a command: a rider (manual) or a periodic read (sync)."""

    bike: str
    lock_state: LockState
    cause: Cause
    at: datetime


@dataclass(frozen=True, slots=True)
class HealthObserved:
    """A lock's reachability or hardware state changed."""

    bike: str
    health: Health
    hardware_state: HardwareState
    last_seen: datetime | None
    dead_since: datetime | None
    at: datetime


@dataclass(frozen=True, slots=True)
class ReadingObserved:
    """Battery, firmware, RSSI or alarm read outside a command."""

    bike: str
    reading: Reading
    at: datetime


Observation = StateObserved | HealthObserved | ReadingObserved


class LockRadio(Protocol):
    """The radio as the command engine uses it (the BLE driver, or a test's model of locks)."""

    async def perform(
        self,
        bike: str,
        operation: Operation,
        credentials: Credentials | None,
        *,
        timeout_s: float,
        progress: ProgressSink,
    ) -> Result:
        """Run one operation on one lock; never raises for a radio or lock failure (only the
        progress sink's :class:`Withdrawn`)."""
        ...

    def set_standing_credentials(self, bike: str, credentials: Credentials | None) -> None:
        """Provisioned credentials for reads and watches between commands (``None`` removes)."""
        ...

    def keep_ready(self, bike: str, *, booked: bool) -> None:
        """Whether the lock's bike is booked now: a radio may keep a booked bike's lock ready
        for its unlock (connected and authorised with its provisioned credentials)."""
        ...
