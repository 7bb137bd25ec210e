"""The command engine: from a raw request on ``commands`` to a lock moved and the change published.

It sits between the MQTT link (which hands it requests and reads the store's outbox), the radio
(:class:`~lockgate.radio.LockRadio`, which it drives and whose observations it is fed) and
the store (where every change and the messages announcing it are written in one transaction before
anything is published). One worker task per lock runs that lock's commands one at a time in arrival
order; locks run in parallel. A deadline task ends queued commands whose ``timeout_at`` passed and
expires bookings. All of it lives in one TaskGroup owned by the engine as an async context manager.

Durability rules, in the order a command meets them: the receipt (NOT_SENT) is stored before
:meth:`Engine.submit` returns; a rental start (``occupied``) and a write-ahead mark are stored
before the radio is asked to move the lock; a command that may have reached the lock when the
daemon died is settled by reading the lock at :meth:`Engine.recover`, never by moving it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Self

import structlog

from lockgate.clock import utc_now
from lockgate.contract.documents import (
    AlarmEvent,
    BatteryEvent,
    BookingEvent,
    CommandEvent,
    ErrorDocument,
    Event,
    HealthEvent,
    LockStateEvent,
    device_state,
)
from lockgate.contract.request import (
    CommandRequest,
    RejectedRequest,
    read_envelope,
    validate,
)
from lockgate.contract.stamps import EventStamp, stamp
from lockgate.contract.station import RegisteredLock, Station
from lockgate.engine.booking import Booking, BookingStep, Decision, decide
from lockgate.model import (
    Admission,
    BookingChange,
    BookingState,
    Cause,
    CommandName,
    CommandState,
    ErrorCode,
    ForceReason,
    LockState,
)
from lockgate.protocol.credentials import Credentials
from lockgate.radio import (
    HealthObserved,
    LockRadio,
    Observation,
    Operation,
    Outcome,
    Progress,
    Reading,
    ReadingObserved,
    Result,
    StateObserved,
    Step,
    StepReached,
)
from lockgate.store.key import StationKey
from lockgate.store.records import (
    Change,
    CommandRecord,
    Correlation,
    LockRecord,
    Provisioning,
    Reply,
)
from lockgate.store.store import Store

_log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
DEFAULT_STOP_GRACE_S = 10.0
DEFAULT_SETTLE_TIMEOUT_S = 30.0
DEFAULT_DEDUPE_WINDOW = timedelta(days=7)
_PRUNE_INTERVAL = timedelta(hours=1)
_MOTION_ENDS = {Operation.UNLOCK: LockState.UNLOCKED, Operation.LOCK: LockState.LOCKED}


class EngineStateError(RuntimeError):
    """The engine was used out of order (submit before recover, or after stop)."""


@dataclass(frozen=True, slots=True)
class Submission:
    """What :meth:`Engine.submit` did with one request."""

    admission: Admission
    command_id: str | None = None
    error_code: ErrorCode | None = None


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :meth:`Engine.recover` found: commands settled by a read, resumed, and timed out."""

    settled: tuple[str, ...] = ()
    resumed: tuple[str, ...] = ()
    timed_out: tuple[str, ...] = ()


@dataclass(slots=True, eq=False)
class _Job:
    """One command on its way through a lock's queue (mutable: its record moves on)."""

    record: CommandRecord
    request: CommandRequest
    settle: bool = False  # recovered after it may have reached the lock: read, never move
    started: bool = False
    ended: bool = False

    @property
    def id(self) -> str:
        return self.record.id


@dataclass(slots=True, eq=False)
class _Lock:
    """The engine's side of one registered lock: its record, its queue and who may write it."""

    registered: RegisteredLock
    record: LockRecord
    queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)
    mutex: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: list[_Job] = field(default_factory=list)
    running: _Job | None = None
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # set while no command runs
    standing: Credentials | None = field(default=None, repr=False)


class Engine:
    """Runs the contract's commands against the locks, durably. Use as an async context manager::

    async with Engine(store=store, radio=radio, station=station) as engine:
        await engine.recover()
        ...  # engine.submit(payload) per request; engine.observe as the radio's sink
    """

    def __init__(
        self,
        *,
        store: Store,
        radio: LockRadio,
        station: Station,
        key: StationKey | None = None,
        clock: Clock = utc_now,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        settle_timeout_s: float = DEFAULT_SETTLE_TIMEOUT_S,
        dedupe_window: timedelta = DEFAULT_DEDUPE_WINDOW,
    ) -> None:
        self._store = store
        self._radio = radio
        self._station = station
        self._key = key if key is not None else store.key
        self._clock = clock
        self._stop_grace_s = stop_grace_s
        self._settle_timeout_s = settle_timeout_s
        self._dedupe_window = dedupe_window
        self._locks: dict[str, _Lock] = {}
        self._secrets: dict[str, Credentials] = {}  # a command's own credentials, memory only
        self._admission = asyncio.Lock()
        self._deadlines_changed = asyncio.Event()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._recovered = False
        self._stopping = False
        self._log = _log.bind(station=station.id)

    # --- life ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stored = await self._store.locks()
        standing = await self._store.credentials()
        for registered in self._station.locks:
            record = stored.get(registered.bike, LockRecord(registered.bike))
            lock = _Lock(registered, record, standing=standing.get(registered.bike))
            lock.idle.set()
            self._locks[registered.bike] = lock
            self._radio.set_standing_credentials(registered.bike, lock.standing)
        # Every lock document again, with this start's boot_id (product.md, Start).
        await self._store.apply(
            Change(locks=tuple(lock.record for lock in self._locks.values())), at=self._clock()
        )
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        for bike, lock in self._locks.items():
            self._spawn(self._worker(lock), f"lockgate.engine.lock:{bike}")
        self._spawn(self._watch_deadlines(), "lockgate.engine.deadlines")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
        group, self._group = self._group, None
        if group is not None:
            await group.__aexit__(None, None, None)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> None:
        assert self._group is not None
        self._tasks.append(self._group.create_task(coroutine, name=name))

    async def recover(self) -> Recovery:
        """Settles what the last run left: commands that may have reached a lock are read and end
        as the lock shows; NOT_SENT ones run if their time is not up; the rest end TIMED_OUT."""
        if self._group is None:
            raise EngineStateError("recover() needs the engine entered (async with)")
        if self._recovered:
            return Recovery()
        now = self._clock()
        settled: list[str] = []
        resumed: list[str] = []
        timed_out: list[str] = []
        for record in await self._store.unfinished_commands():
            lock = self._locks.get(record.bike or "")
            request = _request_of(record)
            if lock is None or request is None:
                await self._write(
                    record.advanced(
                        CommandState.ERROR,
                        now,
                        error_code=ErrorCode.NOT_FOUND,
                        reason="the bike is no longer registered at this station",
                    )
                )
                continue
            if record.may_have_moved:
                self._enqueue(lock, _Job(record, request, settle=True))
                settled.append(record.id)
            elif record.timeout_at is not None and record.timeout_at > now:
                self._enqueue(lock, _Job(record, request))
                resumed.append(record.id)
            else:
                await self._end(
                    _Job(record, request),
                    ErrorCode.TIMED_OUT,
                    "timeout_at passed while the gateway was stopped",
                )
                timed_out.append(record.id)
        self._recovered = True
        self._deadlines_changed.set()
        self._log.info(
            "recovered", settled=len(settled), resumed=len(resumed), timed_out=len(timed_out)
        )
        return Recovery(tuple(settled), tuple(resumed), tuple(timed_out))

    async def stop(self, grace_s: float | None = None) -> None:
        """No new command starts; running ones get ``grace_s`` to finish, then are cancelled (they
        stay SENT or dispatched in the store and are settled by reading at the next start)."""
        if self._stopping:
            return
        self._stopping = True
        grace = self._stop_grace_s if grace_s is None else grace_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                for lock in self._locks.values():
                    await lock.idle.wait()
        for task in self._tasks:
            task.cancel()

    async def wait_idle(self, timeout_s: float) -> None:
        """Until every queued command has ended (for the service's stop, and for tests)."""
        async with asyncio.timeout(timeout_s):
            for lock in self._locks.values():
                await lock.queue.join()

    def lock_record(self, bike: str) -> LockRecord | None:
        lock = self._locks.get(bike)
        return None if lock is None else lock.record

    # --- requests ------------------------------------------------------------------------------

    async def submit(self, payload: bytes, *, correlation: Correlation | None = None) -> Submission:
        """Ingests one raw request; returns once its answer is stored (the link acknowledges the
        MQTT message only then). Bad input never raises; a store failure does (as StoreError),
        so that the request is not acknowledged and the broker delivers it again."""
        if not self._recovered:
            raise EngineStateError("submit() before recover()")
        correlation = correlation or Correlation()
        now = self._clock()
        envelope = read_envelope(payload, fingerprint_key=self._key.fingerprint_key)
        if isinstance(envelope, ErrorDocument):
            self._log.info("request without a usable id", error=envelope.error_message)
            await self._store.apply(Change(errors=(envelope,)), at=now)
            return Submission(Admission.UNUSABLE, None, envelope.error_code)
        log = self._log.bind(command_id=envelope.id)
        async with self._admission:  # one id is looked up and stored by one request at a time
            known = await self._store.command(envelope.id)
            if known is not None:
                if known.fingerprint == envelope.fingerprint:
                    log.info("repeated request: its stored document again")
                    reply = Reply(known.document(self._station.id), correlation)
                    await self._store.apply(Change(replies=(reply,)), at=now)
                    return Submission(Admission.REPEATED, envelope.id)
                log.warning("id reused with different content")
                conflict = ErrorDocument(
                    error_message=f"id {envelope.id} was already used for a different request",
                    status_code=409,
                    correlation_id=envelope.id,
                    error_code=ErrorCode.CONFLICT,
                )
                await self._store.apply(Change(errors=(conflict,)), at=now)
                return Submission(Admission.CONFLICT, envelope.id, ErrorCode.CONFLICT)
            verdict = validate(envelope, station=self._station, now=now)
            if isinstance(verdict, RejectedRequest):
                log.info("request refused", error_code=verdict.error_code, reason=verdict.reason)
                await self._write(_rejected(verdict, now, correlation))
                return Submission(Admission.REJECTED, envelope.id, verdict.error_code)
            record = CommandRecord(
                id=verdict.id,
                fingerprint=verdict.fingerprint,
                name=verdict.name.value,
                bike=verdict.bike,
                state=CommandState.NOT_SENT,
                version=1,
                received_at=now,
                timeout_at=verdict.timeout_at,
                events=(_event("REQUEST", verdict.name, now),),
                parameters=verdict.parameters(),
                correlation=correlation,
            )
            await self._write(record)
        log.info("command accepted", command=verdict.name, bike=verdict.bike)
        if self._stopping:
            return Submission(Admission.ACCEPTED, verdict.id)  # runs after the next start
        if verdict.credentials is not None:
            self._secrets[verdict.id] = verdict.credentials
        self._enqueue(self._locks[verdict.bike], _Job(record, verdict))
        return Submission(Admission.ACCEPTED, verdict.id)

    def _enqueue(self, lock: _Lock, job: _Job) -> None:
        lock.waiting.append(job)
        lock.queue.put_nowait(job)
        self._deadlines_changed.set()

    # --- running commands ----------------------------------------------------------------------

    async def _worker(self, lock: _Lock) -> None:
        while True:
            job = await lock.queue.get()
            try:
                lock.waiting.remove(job)
                if job.ended or self._stopping:
                    continue  # ended while waiting, or left NOT_SENT for the next start
                job.started = True
                lock.running = job
                lock.idle.clear()
                # Bound for the command's duration, so every log line under it (the driver's too)
                # names the command and the bike (product.md, Logs).
                with structlog.contextvars.bound_contextvars(
                    command_id=job.id, bike=lock.registered.bike
                ):
                    await self._run(lock, job)
            except Exception as err:  # noqa: BLE001 - one command's bug must not stop the queue
                # The traceback as plain text: a renderer that shows frame locals could print a
                # driver's key bytes, so no exc_info reaches the logger.
                self._log.error(
                    "command failed inside the engine",
                    command_id=job.id,
                    error=f"{type(err).__name__}: {err}",
                    traceback="".join(traceback.format_exception(err)),
                )
                with contextlib.suppress(Exception):
                    await self._end(job, ErrorCode.INTERNAL, "the gateway failed inside")
            finally:
                lock.running = None
                lock.idle.set()
                self._secrets.pop(job.id, None)
                lock.queue.task_done()

    async def _run(self, lock: _Lock, job: _Job) -> None:
        if job.settle:
            await self._settle(lock, job)
            return
        request = job.request
        remaining = (request.timeout_at - self._clock()).total_seconds()
        if remaining <= 0:
            await self._end(job, ErrorCode.TIMED_OUT, "timeout_at passed before the command ran")
            return
        try:
            async with asyncio.timeout(remaining) as deadline:
                await self._execute(lock, job)
        except TimeoutError:
            if not deadline.expired():
                raise
            if not job.ended:
                await self._end(job, ErrorCode.TIMED_OUT, "timeout_at passed during the command")

    async def _execute(self, lock: _Lock, job: _Job) -> None:
        request = job.request
        if request.name is CommandName.PROVISION:
            await self._provision(lock, job)
            return
        credentials = self._secrets.get(job.id) or lock.standing
        async with lock.mutex:
            booking = await self._expire_if_due(lock)
            decision = decide(
                request.name,
                booking,
                user=request.user_id,
                end_rental=request.end_rental,
                timeout_at=request.timeout_at,
            )
            # The booking table first: its answer needs no key and says more than a missing one.
            if decision.refusal is not None:
                await self._end(job, decision.refusal, decision.reason or decision.refusal)
                return
            if decision.operation is None:  # book, cancel-booking, force-cancel-booking
                assert decision.before is not None
                await self._finish_booking(lock, job, decision.before)
                return
            if credentials is None:
                await self._end(
                    job,
                    ErrorCode.MISSING_CREDENTIALS,
                    "no credentials: none in the command (a command's own are not kept across a "
                    "restart) and none provisioned for this lock",
                )
                return
            if decision.operation is Operation.UNLOCK and self._clock() >= request.timeout_at:
                await self._end(job, ErrorCode.TIMED_OUT, "timeout_at passed before the unlock")
                return
            # Write-ahead: the rental start and the mark that the lock may be touched, durably,
            # before the radio call (mqtt-contract.md: occupied is recorded whatever happens next).
            await self._dispatch(lock, job, decision.before)
        result = await self._perform(lock, job, decision.operation, credentials)
        await self._conclude(lock, job, decision, result)

    async def _perform(
        self, lock: _Lock, job: _Job, operation: Operation, credentials: Credentials | None
    ) -> Result:
        remaining = max((job.request.timeout_at - self._clock()).total_seconds(), 0.001)

        async def progress(event: Progress) -> None:
            await self._progress(lock, job, event)

        # The outer deadline (_run) also bounds this await; timeout_s lets the driver stop cleanly.
        return await self._radio.perform(
            lock.registered.bike, operation, credentials, timeout_s=remaining, progress=progress
        )

    async def _progress(self, lock: _Lock, job: _Job, event: Progress) -> None:
        if job.ended:
            return
        at = event.at
        if isinstance(event, StepReached):
            target = {Step.SENT: CommandState.SENT, Step.RECEIVED: CommandState.RECEIVED}.get(
                event.step
            )
            order = (CommandState.NOT_SENT, CommandState.SENT, CommandState.RECEIVED)
            if target is None or order.index(target) <= order.index(job.record.state):
                return
            await self._write(job.record.advanced(target, at), job=job)
            return
        async with lock.mutex:
            update = self._transition(lock, event.lock_state, at, Cause.COMMAND, job.id)
            if update is None:
                return
            record, events = update
            command = replace(
                job.record,
                version=job.record.version + 1,
                events=(*job.record.events, _state_event(event.lock_state, at)),
            )
            await self._write(command, job=job, lock=lock, lock_record=record, events=events)

    async def _conclude(self, lock: _Lock, job: _Job, decision: Decision, result: Result) -> None:
        request = job.request
        now = self._clock()
        async with lock.mutex:
            record = lock.record
            events: list[Event] = []
            command_events: list[CommandEvent] = []
            reading = result.reading
            seen = reading.lock_state
            if result.ok and seen is None and decision.operation in _MOTION_ENDS:
                seen = _MOTION_ENDS[decision.operation]  # ok means the lock reported the end
            if seen is not None:
                update = self._transition(lock, seen, now, Cause.COMMAND, job.id, record=record)
                if update is not None:
                    record, new = update
                    events += new
                    command_events.append(_state_event(seen, now))
            record, read_events = self._absorb(record, reading, now, job.id, result)
            events += read_events
            if request.power_cycle:
                command_events.append(
                    CommandEvent(
                        name="RESPONSE_POWER_CYCLE",
                        value="Ilockit locks have no power switch: read on a new connection",
                        timestamp=now,
                    )
                )
            if not result.ok:
                code = result.outcome.error_code or ErrorCode.INTERNAL
                command_events.append(_event("RESPONSE", request.name, now, result.reason))
                command = job.record.advanced(
                    CommandState.ERROR,
                    now,
                    events=tuple(command_events),
                    error_code=code,
                    reason=result.reason,
                )
            else:
                if decision.on_success is not None:
                    record, booking_events = self._book(
                        record, decision.on_success, now, job.id, "the rental ended"
                    )
                    events += booking_events
                    command_events.append(_booking_event(decision.on_success, now))
                command_events.insert(0, _event("RESPONSE", request.name, now, "ok"))
                command = job.record.advanced(
                    CommandState.SUCCESS, now, events=tuple(command_events)
                )
            job.ended = True
            await self._write(command, job=job, lock=lock, lock_record=record, events=events)
        self._log.info(
            "command ended",
            command_id=job.id,
            bike=lock.registered.bike,
            state=command.state,
            error_code=command.error_code,
        )

    async def _settle(self, lock: _Lock, job: _Job) -> None:
        """A command that may have reached the lock before the restart: read, and end as the lock
        shows. Never a second motion."""
        request = job.request
        result = Result(
            Outcome.TIMED_OUT, f"the lock did not answer within {self._settle_timeout_s} s"
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._settle_timeout_s):
                result = await self._radio.perform(
                    lock.registered.bike,
                    Operation.READ,
                    lock.standing,
                    timeout_s=self._settle_timeout_s,
                    progress=_ignore_progress,
                )
        now = self._clock()
        shown = result.reading.lock_state
        async with lock.mutex:
            record, events = lock.record, list[Event]()
            if shown is not None:
                update = self._transition(lock, shown, now, Cause.STARTUP, job.id)
                if update is not None:
                    record, events = update[0], list(update[1])
            record, read_events = self._absorb(record, result.reading, now, job.id, result)
            events += read_events
            wanted = _settled_state(request.name)
            if shown is None:
                missing = result.outcome is Outcome.MISSING_CREDENTIALS or result.ok
                code = (
                    ErrorCode.MISSING_CREDENTIALS
                    if missing
                    else (result.outcome.error_code or ErrorCode.INTERNAL)
                )
                command = job.record.advanced(
                    CommandState.ERROR,
                    now,
                    error_code=code,
                    reason="the gateway restarted during the command and could not read the lock "
                    f"to settle it: {result.reason}",
                )
            elif wanted is None or shown is wanted:
                decision = decide(
                    request.name,
                    _booking_of(record),
                    user=request.user_id,
                    end_rental=request.end_rental,
                )
                extra: tuple[CommandEvent, ...] = (_state_event(shown, now),)
                if decision.on_success is not None and decision.refusal is None:
                    record, booking_events = self._book(
                        record, decision.on_success, now, job.id, "the rental ended"
                    )
                    events += booking_events
                    extra += (_booking_event(decision.on_success, now),)
                command = job.record.advanced(
                    CommandState.SUCCESS,
                    now,
                    events=extra,
                    reason=f"settled after a restart: the lock is {shown}",
                )
            else:
                command = job.record.advanced(
                    CommandState.ERROR,
                    now,
                    events=(_state_event(shown, now),),
                    error_code=ErrorCode.INTERRUPTED,
                    reason=f"the gateway restarted during the command; the lock is {shown}",
                )
            job.ended = True
            await self._write(command, job=job, lock=lock, lock_record=record, events=events)

    async def _dispatch(self, lock: _Lock, job: _Job, before: BookingStep | None) -> None:
        now = self._clock()
        marked = replace(job.record, dispatched_at=now)
        if before is None:
            job.record = marked
            await self._store.apply(Change(dispatches=(marked,)), at=now)
            return
        record, events = self._book(lock.record, before, now, job.id, "the rental started")
        command = marked.advanced(
            marked.state, now, events=(_booking_event(before, now),)
        )  # the rental start is visible on the command, published with the booking
        await self._write(command, job=job, lock=lock, lock_record=record, events=events)

    async def _finish_booking(self, lock: _Lock, job: _Job, step: BookingStep) -> None:
        now = self._clock()
        record, events = self._book(lock.record, step, now, job.id, None)
        job.ended = True
        command = job.record.advanced(
            CommandState.SUCCESS,
            now,
            events=(
                _event("RESPONSE", job.request.name, now, "ok"),
                _booking_event(step, now),
            ),
        )
        await self._write(command, job=job, lock=lock, lock_record=record, events=events)
        self._deadlines_changed.set()

    async def _provision(self, lock: _Lock, job: _Job) -> None:
        now = self._clock()
        credentials = None if job.request.remove_credentials else self._secrets.get(job.id)
        if credentials is None and not job.request.remove_credentials:
            await self._end(
                job,
                ErrorCode.MISSING_CREDENTIALS,
                "the credentials to provision were not kept across a restart: send them again",
            )
            return
        job.ended = True
        command = job.record.advanced(
            CommandState.SUCCESS,
            now,
            events=(_event("RESPONSE", job.request.name, now, "ok"),),
            reason="credentials removed" if credentials is None else "credentials stored",
        )
        job.record = command
        await self._store.apply(
            Change(
                commands=(command,), provisioning=(Provisioning(lock.registered.bike, credentials),)
            ),
            at=now,
        )
        lock.standing = credentials
        self._radio.set_standing_credentials(lock.registered.bike, credentials)

    async def _end(self, job: _Job, code: ErrorCode, reason: str) -> None:
        """Ends a command in ERROR (at most once)."""
        if job.ended or job.record.state.final:
            return
        job.ended = True
        now = self._clock()
        command = job.record.advanced(
            CommandState.ERROR,
            now,
            events=(_event("RESPONSE", job.request.name, now, reason),),
            error_code=code,
            reason=reason,
        )
        await self._write(command, job=job)
        self._log.info(
            "command ended", command_id=job.id, state=command.state, error_code=code, reason=reason
        )

    async def _write(
        self,
        command: CommandRecord,
        *,
        job: _Job | None = None,
        lock: _Lock | None = None,
        lock_record: LockRecord | None = None,
        events: list[Event] | tuple[Event, ...] = (),
    ) -> None:
        """One transaction: the command's new version, the lock's record, their events. Memory is
        set first: the store finishes a write even when its caller is cancelled (Store._run)."""
        if job is not None:
            job.record = command
        locks: tuple[LockRecord, ...] = ()
        if lock is not None and lock_record is not None:
            lock.record = lock_record
            locks = (lock_record,)
        await self._store.apply(
            Change(commands=(command,), locks=locks, events=tuple(events)), at=self._clock()
        )

    # --- deadlines: queued commands and bookings -----------------------------------------------

    async def _watch_deadlines(self) -> None:
        next_prune = self._clock()
        while True:
            self._deadlines_changed.clear()
            now = self._clock()
            if now >= next_prune:
                # The dedupe record of ids is kept for the window, then forgotten, so a station
                # that runs for months does not grow its command table without end.
                await self._store.prune_commands(now - self._dedupe_window)
                next_prune = now + _PRUNE_INTERVAL
            upcoming: list[datetime] = [next_prune]
            for lock in self._locks.values():
                for job in list(lock.waiting):
                    if job.ended or job.started or job.settle:
                        continue
                    if job.request.timeout_at <= now:
                        await self._end(
                            job, ErrorCode.TIMED_OUT, "timeout_at passed while the command waited"
                        )
                    else:
                        upcoming.append(job.request.timeout_at)
                booking = _booking_of(lock.record)
                if booking.expired(now):
                    async with lock.mutex:
                        await self._expire_if_due(lock)
                elif booking.state is BookingState.BOOKED and booking.timeout_at is not None:
                    upcoming.append(booking.timeout_at)
            delay = (min(upcoming) - self._clock()).total_seconds()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0) + 0.001):
                    await self._deadlines_changed.wait()

    async def _expire_if_due(self, lock: _Lock) -> Booking:
        """The lock's booking, after expiring it if its time has passed (caller holds the mutex)."""
        now = self._clock()
        booking = _booking_of(lock.record)
        if not booking.expired(now):
            return booking
        step = BookingStep(Booking(), BookingChange.CANCELED)
        record, events = self._book(lock.record, step, now, None, "the booking expired")
        lock.record = record
        await self._store.apply(Change(locks=(record,), events=tuple(events)), at=now)
        self._log.info("booking expired", bike=lock.registered.bike, user_id=booking.user)
        return _booking_of(record)

    # --- what the driver sees between commands -------------------------------------------------

    async def observe(self, observation: Observation) -> None:
        """The radio's observation sink: lock states (manual, sync, startup), health, readings."""
        lock = self._locks.get(observation.bike)
        if lock is None:
            self._log.warning("observation of an unregistered bike", bike=observation.bike)
            return
        async with lock.mutex:
            record = lock.record
            events: list[Event] = []
            if isinstance(observation, StateObserved):
                update = self._transition(
                    lock, observation.lock_state, observation.at, observation.cause, None
                )
                if update is None:
                    return
                record, events = update[0], list(update[1])
            elif isinstance(observation, HealthObserved):
                changed = (
                    record.health is not observation.health
                    or record.hardware_state is not observation.hardware_state
                )
                record = replace(
                    record,
                    health=observation.health,
                    hardware_state=observation.hardware_state,
                    last_seen=observation.last_seen,
                    dead_since=observation.dead_since,
                )
                if changed:
                    events.append(
                        HealthEvent(
                            **self._stamp(lock, observation.at, None, None),
                            health=observation.health,
                            hardware_state=observation.hardware_state,
                        )
                    )
            elif isinstance(observation, ReadingObserved):
                reading = observation.reading
                if reading.lock_state is not None:
                    update = self._transition(
                        lock, reading.lock_state, observation.at, Cause.SYNC, None
                    )
                    if update is not None:
                        record, events = update[0], list(update[1])
                record, read_events = self._absorb(record, reading, observation.at, None, None)
                events += read_events
            if record == lock.record:
                return
            lock.record = record
            await self._store.apply(Change(locks=(record,), events=tuple(events)), at=self._clock())

    # --- pure steps on a lock's record ---------------------------------------------------------

    def _transition(
        self,
        lock: _Lock,
        lock_state: LockState,
        at: datetime,
        cause: Cause,
        command_id: str | None,
        *,
        record: LockRecord | None = None,
    ) -> tuple[LockRecord, list[Event]] | None:
        """The lock's record after it showed ``lock_state``, with its event; None if no change."""
        record = record or lock.record
        if lock_state is record.lock_state:
            return None
        new = replace(record, lock_state=lock_state)
        new = _device_changed(record, new, at)
        event = LockStateEvent(
            **self._stamp(lock, at, cause, command_id),
            lock_state=lock_state,
            previous=record.lock_state,
        )
        return new, [event]

    def _book(
        self,
        record: LockRecord,
        step: BookingStep,
        at: datetime,
        command_id: str | None,
        reason: str | None,
    ) -> tuple[LockRecord, list[Event]]:
        lock = self._locks[record.bike]
        previous_user = record.booking_user
        new = replace(
            record,
            booking=step.booking.state,
            booking_user=step.booking.user,
            booking_timeout_at=step.booking.timeout_at,
        )
        new = _device_changed(record, new, at)
        event = BookingEvent(
            **self._stamp(lock, at, Cause.COMMAND if command_id else None, command_id),
            booking_state=step.change,
            user_id=step.booking.user or previous_user,
            timeout_at=step.booking.timeout_at,
            reason=reason,
        )
        return new, [event]

    def _absorb(
        self,
        record: LockRecord,
        reading: Reading,
        at: datetime,
        command_id: str | None,
        result: Result | None,
    ) -> tuple[LockRecord, list[Event]]:
        """Battery, firmware, RSSI, alarm and hardware state from a reading, with their events."""
        lock = self._locks[record.bike]
        cause = Cause.COMMAND if command_id else Cause.SYNC
        events: list[Event] = []
        new = record
        if reading.battery is not None and reading.battery != record.battery:
            new = replace(new, battery=reading.battery)
            events.append(
                BatteryEvent(**self._stamp(lock, at, cause, command_id), battery=reading.battery)
            )
        if reading.alarm is not None and reading.alarm != record.alarm:
            new = replace(new, alarm=reading.alarm)
            events.append(
                AlarmEvent(**self._stamp(lock, at, cause, command_id), alarm=reading.alarm)
            )
        if reading.firmware is not None:
            new = replace(new, firmware=reading.firmware)
        if reading.rssi is not None:
            new = replace(new, rssi=reading.rssi)
        if result is not None and result.hardware_state is not None:
            if result.hardware_state is not record.hardware_state:
                events.append(
                    HealthEvent(
                        **self._stamp(lock, at, cause, command_id),
                        health=record.health,
                        hardware_state=result.hardware_state,
                    )
                )
            new = replace(new, hardware_state=result.hardware_state)
        return new, events

    def _stamp(
        self, lock: _Lock, at: datetime, cause: Cause | None, command_id: str | None
    ) -> EventStamp:
        return stamp(
            self._station, at, bike=lock.registered.bike, cause=cause, command_id=command_id
        )


async def _ignore_progress(_: Progress) -> None:
    return None


def _booking_of(record: LockRecord) -> Booking:
    return Booking(record.booking, record.booking_user, record.booking_timeout_at)


def _device_changed(before: LockRecord, after: LockRecord, at: datetime) -> LockRecord:
    if device_state(before.lock_state, before.booking) is device_state(
        after.lock_state, after.booking
    ):
        return after
    return replace(after, state_changed_at=at)


def _settled_state(name: CommandName) -> LockState | None:
    if name in (CommandName.UNLOCK, CommandName.FORCE_UNLOCK):
        return LockState.UNLOCKED
    if name in (CommandName.LOCK, CommandName.FORCE_LOCK):
        return LockState.LOCKED
    return None  # a read (sync-device) is settled by any answer


def _event_name(name: CommandName | str | None) -> str:
    known = name if isinstance(name, CommandName) else _known_command(name)
    return (known or "command").upper().replace("-", "_")


def _known_command(name: str | None) -> CommandName | None:
    try:
        return CommandName(name or "")
    except ValueError:
        return None


def _event(
    prefix: str, name: CommandName | str | None, at: datetime, value: str | None = None
) -> CommandEvent:
    return CommandEvent(name=f"{prefix}_{_event_name(name)}", value=value, timestamp=at)


def _state_event(lock_state: LockState, at: datetime) -> CommandEvent:
    return CommandEvent(name=f"STATE_{lock_state.upper()}", timestamp=at)


def _booking_event(step: BookingStep, at: datetime) -> CommandEvent:
    return CommandEvent(name=f"STATE_{step.change.upper()}", timestamp=at)


def _rejected(verdict: RejectedRequest, now: datetime, correlation: Correlation) -> CommandRecord:
    return CommandRecord(
        id=verdict.id,
        fingerprint=verdict.fingerprint,
        # Echo only what is a known command and a plausible bike id: a refused request's
        # strings are anyone's, and the document is kept and published.
        name=_known_command(verdict.name),
        bike=verdict.bike if verdict.bike is not None and len(verdict.bike) <= 64 else None,
        state=CommandState.ERROR,
        version=1,
        received_at=now,
        timeout_at=verdict.timeout_at,
        error_code=verdict.error_code,
        reason=verdict.reason,
        events=(
            _event("REQUEST", verdict.name, now),
            _event("RESPONSE", verdict.name, now, verdict.reason),
        ),
        correlation=correlation,
        ended_at=now,
    )


def _request_of(record: CommandRecord) -> CommandRequest | None:
    """The request again from its stored record, without credentials (never stored)."""
    try:
        name = CommandName(record.name or "")
    except ValueError:
        return None
    if record.bike is None or record.timeout_at is None:
        return None
    parameters = record.parameters
    reason = parameters.get("reason")
    return CommandRequest(
        id=record.id,
        name=name,
        bike=record.bike,
        timeout_at=record.timeout_at,
        fingerprint=record.fingerprint,
        user_id=parameters.get("user_id"),
        end_rental=bool(parameters.get("end_rental")),
        reason=ForceReason(reason) if reason else None,
        comment=parameters.get("comment"),
        power_cycle=bool(parameters.get("power_cycle")),
        remove_credentials=bool(parameters.get("remove_credentials")),
    )
