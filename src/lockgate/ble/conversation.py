"""A protocol session run over a link: authorise, move the bolt, read, each step under a timeout.

The pure :class:`~lockgate.protocol.session.Session` decides what to write and what a frame means;
this module writes, waits and maps what the lock answers to progress and typed outcomes. Every
failure leaves it as an :class:`~lockgate.ble.errors.OperationError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

import structlog

from lockgate.ble.errors import OperationError
from lockgate.ble.link import Link
from lockgate.ble.settings import StepTimeouts
from lockgate.model import ErrorCode, HardwareState, LockState
from lockgate.protocol.credentials import Credentials
from lockgate.protocol.errors import ProtocolError
from lockgate.protocol.session import (
    MAX_COUNTER,
    AuthorisationFailed,
    Authorised,
    ConfigRead,
    Session,
    SessionEvent,
    SessionState,
    StatusReported,
    UnrecognisedStatus,
    Write,
)
from lockgate.protocol.status import Status, meaning_of
from lockgate.radio import Operation, Outcome, ProgressSink, StateSeen, Step, StepReached

log = structlog.get_logger(__name__)
_E = TypeVar("_E", Authorised, ConfigRead)


class NotAuthorisedError(OperationError):
    """The lock answered ``0x99`` (not authorised) to a command of an authorised session: it
    ended the link's authorisation on its own, and did not act on the command."""

    def __init__(self, reason: str) -> None:
        super().__init__(Outcome.AUTH_FAILED, reason)


_OUTCOME_OF_ERROR = {
    ErrorCode.LOCK_BLOCKED: Outcome.BLOCKED,
    ErrorCode.LOCK_MOVED: Outcome.MOVED,
    ErrorCode.LOCK_REJECTED: Outcome.REJECTED,
    ErrorCode.AUTH_FAILED: Outcome.AUTH_FAILED,
}


@dataclass(slots=True)
class Observed:
    """What a conversation learnt of the lock besides its answers."""

    hardware_state: HardwareState | None = None
    alarm: bool | None = None


class Conversation:
    """One session with one lock over an open link.

    ``session``: an authorised session of the same link and credentials, taken up again (the
    lock keeps a link's authorisation until a new IV is asked for, docs/protocol.md), so that a
    command on a kept link needs no new authorisation; :meth:`authorise` then does nothing.
    """

    def __init__(
        self,
        link: Link,
        credentials: Credentials,
        timeouts: StepTimeouts,
        clock: Callable[[], datetime],
        progress: ProgressSink,
        *,
        session: Session | None = None,
    ) -> None:
        self._link = link
        self._session = session if session is not None else Session(credentials)
        self.resumed = session is not None
        """The session was taken up authorised, not started here."""
        self._timeouts = timeouts
        self._clock = clock
        self._progress = progress
        self._queue = link.chunks
        self._awaiting_ack = False
        self._target: LockState | None = None
        self.observed = Observed()

    @property
    def session(self) -> Session:
        return self._session

    @property
    def authorised(self) -> bool:
        """The session is authorised and its counter can still rise."""
        return self._session.state is SessionState.AUTHORISED and self._session.counter < (
            MAX_COUNTER
        )

    async def authorise(self, *, again: bool = False) -> None:
        """Authorise the link (a new IV, the challenge, the answer); nothing if the session
        already is, unless ``again``."""
        if self.authorised and not again:
            return
        await self._write(self._session.start())
        await self._until(Authorised, "authorising")

    async def command(self, operation: Operation) -> tuple[LockState, bool | None]:
        """Authorise (or take the kept session up), then the operation's one command: the lock
        state it ends with, and the alarm a config read gives (None after a motion).

        A session taken up may have been ended by the lock on its own: it answers the command
        0x99 and does not act on it. Then the link is authorised once more and the command sent
        again: never a second motion, the first command having been refused, not done."""
        await self.authorise()
        await self._progress(StepReached(Step.AUTHORISED, self._clock()))
        try:
            return await self._command(operation)
        except NotAuthorisedError:
            if not self.resumed:
                raise
        log.info("kept session no longer authorised: authorising again", bike=self._link.bike)
        await self.authorise(again=True)
        await self._progress(StepReached(Step.AUTHORISED, self._clock()))
        return await self._command(operation)

    async def _command(self, operation: Operation) -> tuple[LockState, bool | None]:
        if operation is Operation.READ:
            config = await self.read_config()
            return config.lock_state, config.alarm
        target = LockState.UNLOCKED if operation is Operation.UNLOCK else LockState.LOCKED
        return await self.move(target), None

    async def move(self, target: LockState) -> LockState:
        """Unlock (target UNLOCKED) or lock (target LOCKED); return the state the lock reached."""
        write = self._session.unlock() if target is LockState.UNLOCKED else self._session.lock()
        await self._write(write)
        await self._progress(StepReached(Step.SENT, self._clock()))
        self._awaiting_ack = True
        self._target = target
        doing = "waiting for the lock to " + ("open" if target is LockState.UNLOCKED else "close")
        while True:
            event = await self._next_event(self._timeouts.motion_s, doing)
            if not isinstance(event, StatusReported):
                continue
            meaning = meaning_of(event.status)
            if meaning.error is not None:
                raise OperationError(
                    _OUTCOME_OF_ERROR.get(meaning.error, Outcome.REJECTED),
                    f"the lock answered {event.status:#04x}: {meaning.text}",
                )
            if meaning.lock_state is LockState.UNKNOWN:
                raise OperationError(Outcome.REJECTED, "the lock reports its state as unknown")
            if meaning.lock_state is target:
                return target

    async def read_config(self) -> ConfigRead:
        await self._write(self._session.read_config())
        return await self._until(ConfigRead, "reading the lock's state")

    # --- plumbing ------------------------------------------------------------------------

    async def _write(self, write: Write) -> None:
        await self._link.write(write, self._timeouts.gatt_s)

    async def _until(self, kind: type[_E], doing: str) -> _E:
        while True:
            event = await self._next_event(self._timeouts.answer_s, doing)
            if isinstance(event, kind):
                return event
            if isinstance(event, AuthorisationFailed):
                raise OperationError(
                    Outcome.AUTH_FAILED,
                    f"the lock refused the credentials ({event.status:#04x}: "
                    f"{meaning_of(event.status).text})",
                )
            if isinstance(event, StatusReported) and meaning_of(event.status).error is not None:
                meaning = meaning_of(event.status)
                raise OperationError(
                    _OUTCOME_OF_ERROR.get(
                        meaning.error or ErrorCode.LOCK_REJECTED, Outcome.REJECTED
                    ),
                    f"the lock answered {event.status:#04x}: {meaning.text}",
                )

    async def _next_event(self, timeout_s: float, doing: str) -> SessionEvent:
        """The next event the lock's chunks complete, writing whatever the session answers."""
        while True:
            channel, chunk = await self._link.next_chunk(self._queue, timeout_s, doing)
            try:
                output = self._session.receive(channel, chunk)
            except ProtocolError as err:
                raise OperationError(Outcome.PROTOCOL, f"the lock sent a bad frame: {err}") from err
            for write in output.writes:
                await self._write(write)
            for event in output.events:
                self._note(event)
                if isinstance(event, StatusReported):
                    if event.status is Status.NOT_AUTHORISED:
                        # Before any progress: the lock did not take the command (no RECEIVED).
                        raise NotAuthorisedError(
                            f"the lock answered {event.status:#04x}: not authorised"
                        )
                    await self._report(event.status)
            if output.events:
                # One chunk completes at most one frame, and a frame is at most one event.
                return output.events[0]

    async def _report(self, status: Status) -> None:
        """Progress for a status: the first answer to a lock control acknowledges it.

        The state a motion ends in is not progress but the operation's result (:meth:`move`
        returns it at once): the engine writes it with the command's conclusion, one transaction
        and one document fewer between the bolt's end and the rider's answer.
        """
        meaning = meaning_of(status)
        if self._awaiting_ack and (meaning.lock_state or meaning.error):
            self._awaiting_ack = False
            await self._progress(StepReached(Step.RECEIVED, self._clock()))
        if meaning.lock_state is not None and meaning.lock_state is not self._target:
            await self._progress(StateSeen(meaning.lock_state, self._clock()))

    def _note(self, event: SessionEvent) -> None:
        if isinstance(event, StatusReported):
            meaning = meaning_of(event.status)
            if meaning.hardware_state is not None:
                self.observed.hardware_state = meaning.hardware_state
            if event.status in (Status.ALARM_ON, Status.ALARM_OFF):
                self.observed.alarm = event.status is Status.ALARM_ON
        elif isinstance(event, UnrecognisedStatus):
            log.info("unrecognised status from lock", bike=self._link.bike, status=event.value)
        elif isinstance(event, ConfigRead):
            self.observed.alarm = event.alarm
