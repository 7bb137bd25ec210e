"""A test double of the radio port only: a small honest model of Ilockit locks behind ``LockRadio``.

Each :class:`ModelLock` has a bolt state, a motor that takes ``motor_s`` and finishes even if the
session that started it is cancelled (a motor does not stop because the link dropped), credentials
it checks, scripted failures per outcome, and a record of every motion, so tests can assert that no
unlock happened twice. The store and the engine are always the real ones.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from lockgate.model import HardwareState, LockState
from lockgate.protocol.credentials import Credentials
from lockgate.radio import (
    Operation,
    Outcome,
    ProgressSink,
    Reading,
    Result,
    StateSeen,
    Step,
    StepReached,
)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Motion:
    bike: str
    operation: Operation
    at: datetime


@dataclass
class ModelLock:
    bike: str
    credentials: Credentials | None
    state: LockState = LockState.LOCKED
    motor_s: float = 0.05
    battery: int = 87
    firmware: str = "2.18"
    rssi: int = -61
    failures: deque[Outcome] = field(default_factory=deque)
    crash: deque[BaseException] = field(default_factory=deque)  # a driver bug: raises from perform
    hold: asyncio.Event | None = None  # when set, a motion waits here after SENT until it is set
    connecting: asyncio.Event | None = None  # when set, a session waits here before anything
    before_motion: Callable[[str, Operation], Awaitable[None]] | None = None
    on_control: Callable[[str, Operation], Awaitable[None]] | None = None
    """Called as the lock control command reaches the lock: before SENT is reported, as with the
    driver (which reports SENT once the write was answered)."""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    authorising: asyncio.Event = field(default_factory=asyncio.Event)
    """Set as a session reaches AUTHORISED, before the engine hears of it (and holds the motion
    there until its write-ahead is on the disk)."""

    def push(self, operation: Operation) -> None:
        """The motor runs to its end whatever happens to the link."""
        target = LockState.UNLOCKED if operation is Operation.UNLOCK else LockState.LOCKED
        self.state = LockState.UNLOCKING if operation is Operation.UNLOCK else LockState.LOCKING

        arrived = self.arrived = asyncio.Event()

        def finish() -> None:
            self.state = target
            arrived.set()

        asyncio.get_running_loop().call_later(self.motor_s, finish)


class ModelRadio:
    """Implements :class:`lockgate.radio.LockRadio` over :class:`ModelLock` values."""

    def __init__(self, *locks: ModelLock) -> None:
        self.locks = {lock.bike: lock for lock in locks}
        self.motions: list[Motion] = []
        self.calls: list[tuple[str, Operation, bool]] = []
        self.standing: dict[str, Credentials | None] = {}
        self.booked: dict[str, bool] = {}
        self.active: set[str] = set()
        self.max_parallel = 0

    def unlocks(self, bike: str) -> int:
        return sum(1 for m in self.motions if m.bike == bike and m.operation is Operation.UNLOCK)

    def set_standing_credentials(self, bike: str, credentials: Credentials | None) -> None:
        self.standing[bike] = credentials

    def keep_ready(self, bike: str, *, booked: bool) -> None:
        self.booked[bike] = booked

    async def perform(
        self,
        bike: str,
        operation: Operation,
        credentials: Credentials | None,
        *,
        timeout_s: float,
        progress: ProgressSink,
    ) -> Result:
        self.calls.append((bike, operation, credentials is not None))
        lock = self.locks[bike]
        self.active.add(bike)
        self.max_parallel = max(self.max_parallel, len(self.active))
        try:
            async with asyncio.timeout(timeout_s):
                return await self._perform(lock, operation, credentials, progress)
        except TimeoutError:
            return Result(Outcome.TIMED_OUT, f"no answer within {timeout_s:.3f} s")
        finally:
            self.active.discard(bike)

    async def _perform(
        self,
        lock: ModelLock,
        operation: Operation,
        credentials: Credentials | None,
        progress: ProgressSink,
    ) -> Result:
        await asyncio.sleep(0)  # a connection is never instantaneous
        if lock.connecting is not None:
            await lock.connecting.wait()
        if lock.crash:
            raise lock.crash.popleft()
        if lock.failures and lock.failures[0] in (Outcome.UNREACHABLE, Outcome.NO_SLOT):
            outcome = lock.failures.popleft()
            return Result(outcome, f"scripted: {outcome}", hardware_state=None)
        if credentials is None:
            # Battery and firmware need no session; the state does.
            reading = Reading(battery=lock.battery, firmware=lock.firmware, rssi=lock.rssi)
            return Result(Outcome.MISSING_CREDENTIALS, "a session needs credentials", reading)
        if credentials != lock.credentials:
            return Result(Outcome.AUTH_FAILED, "the lock refused the credentials (0x97)")
        if lock.failures and lock.failures[0] is Outcome.AUTH_FAILED:
            lock.failures.popleft()
            return Result(Outcome.AUTH_FAILED, "scripted: auth failed (0x97)")
        # As the driver: the last step before the lock is asked to move (the engine holds the
        # motion here until its write-ahead is on the disk).
        lock.authorising.set()
        await progress(StepReached(Step.AUTHORISED, now()))
        if operation is Operation.READ:
            return Result(
                Outcome.OK,
                "read",
                Reading(lock.state, lock.battery, lock.firmware, lock.rssi, alarm=False),
                HardwareState.NORMAL,
            )
        if lock.on_control is not None:
            await lock.on_control(lock.bike, operation)
        await progress(StepReached(Step.SENT, now()))
        if lock.failures:
            outcome = lock.failures.popleft()
            hardware = HardwareState.ERROR if outcome is Outcome.BLOCKED else None
            return Result(outcome, f"scripted: {outcome}", hardware_state=hardware)
        target = LockState.UNLOCKED if operation is Operation.UNLOCK else LockState.LOCKED
        await progress(StepReached(Step.RECEIVED, now()))
        if lock.state is not target:
            if lock.before_motion is not None:
                await lock.before_motion(lock.bike, operation)
            self.motions.append(Motion(lock.bike, operation, now()))
            lock.push(operation)
            await progress(StateSeen(lock.state, now()))
            if lock.hold is not None:
                await lock.hold.wait()
            await lock.arrived.wait()
        # The end state is the result's reading, not progress (as the driver does).
        return Result(
            Outcome.OK,
            "ok",
            Reading(lock.state, lock.battery, lock.firmware, lock.rssi),
            HardwareState.NORMAL,
        )
