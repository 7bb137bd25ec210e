"""One registered lock's side of the engine: its queue of commands, run one at a time.

A :class:`LockWorker` owns a lock's record in memory, its queue, and the mutex under which that
record changes (a command's step, the radio's observation, a booking's expiry). Its task runs the
queued commands in arrival order: it checks the booking table, writes ahead what must survive a
crash (a rental start, the mark that the lock may be touched), asks the radio, turns the radio's
progress into the command document's states, concludes, and settles a command recovered after a
restart by reading, never by moving the lock again. A store that fails mid-command is met the same
way, without a restart: the worker waits until the store writes again, then settles the command by
a read if the radio may have touched the lock, or runs it again from the start if it cannot have
(its memory of the lock was rolled back with the failed write). What a change is comes from the pure
:class:`~lockgate.engine.ledger.Ledger`, how a command ends too (``Ledger.conclude``, for a command
that ran and for one settled by a read alike); every change is one transaction of the store. The
engine (:mod:`lockgate.engine.engine`) admits commands, recovers, keeps the deadlines and owns the
workers' tasks.

Why it is one module of about 650 lines: every path here (run, conclude, settle, provision, observe)
changes the one record under the one mutex, and splitting them would spread that invariant. (How a
running command's steps are held from the store and taken back is :mod:`lockgate.engine.held`.)
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from lockgate.contract.documents import Event
from lockgate.contract.station import RegisteredLock
from lockgate.engine.booking import Booking, BookingStep, Decision, decide
from lockgate.engine.held import HeldSteps, take_back
from lockgate.engine.jobs import STORE_RETRY_S, Crew, Job
from lockgate.engine.ledger import (
    Settling,
    booking_event,
    booking_of,
    command_event,
    state_event,
)
from lockgate.model import (
    BookingChange,
    BookingState,
    Cause,
    CommandName,
    CommandState,
    ErrorCode,
    LockState,
)
from lockgate.protocol.credentials import Credentials
from lockgate.radio import (
    Observation,
    Operation,
    Outcome,
    Progress,
    Result,
    Step,
    StepReached,
    Withdrawn,
)
from lockgate.store.errors import StoreError
from lockgate.store.records import Change, CommandRecord, LockRecord, Provisioning

__all__ = ["LockWorker"]

MOVING = frozenset({LockState.UNLOCKING, LockState.LOCKING})
HEARTBEAT_WRITE_S = 3600.0
"""A lock's heartbeat alone (``last_seen``, RSSI) is written at most this often (monotonic): one
round of 50 locks' heartbeats costs about 124 KiB (bench/README.md), once an hour at most."""
_HEARTBEAT = frozenset({"last_seen", "rssi"})
SETTLE_AGAIN_S = 1.0
"""A settling read that finds the bolt moving reads again this much later (a motion takes at most
15 s, docs/protocol.md), within the engine's ``settle_timeout_s``."""


class LockWorker:
    """One registered lock: its record, its queue, and the task that runs its commands."""

    def __init__(
        self,
        registered: RegisteredLock,
        record: LockRecord,
        standing: Credentials | None,
        crew: Crew,
    ) -> None:
        self.registered = registered
        self.record = record
        self.standing = standing
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.mutex = asyncio.Lock()
        """Held while the lock's record changes; never across a radio call."""
        self.waiting: list[Job] = []
        self.running: Job | None = None
        self.idle = asyncio.Event()  # set while no command runs
        self.idle.set()
        self.booking_deadline: tuple[datetime, float] | None = None
        """A booking's default expiry: its ``timeout_at`` as written, and when it passes on the
        monotonic clock (kept in memory; after a restart the written time is the expiry)."""
        self._timeout: asyncio.Timeout | None = None  # the running command's deadline
        # When the lock's record was last written (monotonic): long ago, so the first heartbeat is.
        self._written_at = crew.mono() - HEARTBEAT_WRITE_S
        self._crew = crew
        self._held = HeldSteps(registered.bike, crew, self.mutex, self._note_written)

    @property
    def bike(self) -> str:
        return self.registered.bike

    def enqueue(self, job: Job) -> None:
        self.waiting.append(job)
        self.queue.put_nowait(job)
        self._crew.deadlines_changed.set()

    # --- the queue ------------------------------------------------------------------------------

    async def run(self) -> None:
        """The worker's task: the lock's commands, one at a time, in arrival order, for ever."""
        try:
            await self._run_queue()
        finally:
            self._held.cancel()

    async def _run_queue(self) -> None:
        crew = self._crew
        while True:
            job = await self.queue.get()
            try:
                self.waiting.remove(job)
                if job.ended or crew.stopping.is_set():
                    continue  # ended while waiting, or left NOT_SENT for the next start
                job.started = True
                self.running = job
                self.idle.clear()
                # Bound for the command's duration, so every log line under it (the driver's too)
                # names the command and the bike (docs/station.md, Logs).
                with structlog.contextvars.bound_contextvars(command_id=job.id, bike=self.bike):
                    await self._run_until_stored(job)
            except Exception as err:  # noqa: BLE001 - one command's bug must not stop the queue
                # The traceback as plain text: a renderer that shows frame locals could print a
                # driver's key bytes, so no exc_info reaches the logger.
                crew.log.error(  # noqa: TRY400 - no exc_info, as said above
                    "command failed inside the engine",
                    command_id=job.id,
                    error=f"{type(err).__name__}: {err}",
                    traceback="".join(traceback.format_exception(err)),
                )
                with contextlib.suppress(Exception):
                    async with self.mutex:
                        await self.end(job, ErrorCode.INTERNAL, "the gateway failed inside")
            finally:
                self.running = None
                self.idle.set()
                crew.secrets.pop(job.id, None)
                self.queue.task_done()
                self.tell_radio_booking()

    def tell_radio_booking(self) -> None:
        """Tells the radio whether the bike is booked now (it may keep the lock ready)."""
        booked = booking_of(self.record).state is BookingState.BOOKED
        self._crew.radio.keep_ready(self.bike, booked=booked)

    async def _run_until_stored(self, job: Job) -> None:
        """Runs the job; while the store fails, waits and tries again. A job that may have
        touched the lock is then settled by a read, never run again; one that cannot have is run
        from the start. Left as stored when the engine stops (the next start settles it)."""
        crew = self._crew
        delay, longest = STORE_RETRY_S
        while True:
            try:
                await self._run(job)
            except StoreError as err:
                job.ended = False  # the final write, if it was one, did not land
                if job.touched:
                    job.settle = job.store_failed = True
                crew.log.error(  # noqa: TRY400 - no exc_info: a frame's locals may hold a key
                    "the store failed during a command: it is settled once the store writes again",
                    command_id=job.id,
                    error=str(err),
                    settle=job.settle,
                )
            else:
                return
            if crew.stopping.is_set():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, longest)

    async def _run(self, job: Job) -> None:
        if job.settle:
            await self._settle(job)
            return
        remaining = self._crew.remaining(job)
        if remaining <= 0:
            async with self.mutex:
                await self.end(job, ErrorCode.TIMED_OUT, "timeout_at passed before the command ran")
            return
        try:
            async with asyncio.timeout(remaining) as deadline:
                self._timeout = deadline
                try:
                    await self._execute(job)
                finally:
                    self._timeout = None
        except TimeoutError:
            if not deadline.expired():
                raise
            if not job.ended:
                async with self.mutex:
                    await self.end(job, ErrorCode.TIMED_OUT, "timeout_at passed during the command")

    # --- executing a command -------------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        request = job.request
        if request.name is CommandName.PROVISION:
            await self._provision(job)
            return
        credentials = self._crew.secrets.get(job.id) or self.standing
        async with self.mutex:
            booking = await self.expire_if_due()
            decision = decide(
                request.name,
                booking,
                user=request.user_id,
                end_rental=request.end_rental,
                timeout_at=request.timeout_at,
            )
            # The booking table first: its answer needs no key and says more than a missing one.
            if decision.refusal is not None:
                await self.end(job, decision.refusal, decision.reason or decision.refusal)
                return
            if decision.operation is None:  # book, cancel-booking, force-cancel-booking
                assert decision.before is not None
                await self._finish_booking(job, decision.before)
                return
            if credentials is None:
                await self.end(
                    job,
                    ErrorCode.MISSING_CREDENTIALS,
                    "no credentials: none in the command (a command's own are not kept across a "
                    "restart) and none provisioned for this lock",
                )
                return
            if decision.operation is Operation.UNLOCK and self._crew.remaining(job) <= 0:
                await self.end(job, ErrorCode.TIMED_OUT, "timeout_at passed before the unlock")
                return
            # Write-ahead: the rental start and the mark that the lock may be touched, durably,
            # before the lock is asked to move (mqtt-contract.md: occupied is recorded whatever
            # happens next). Staged here, under the mutex; written while the radio connects and
            # authorises (which cannot move the bolt), and awaited by the radio at AUTHORISED.
            write_ahead = asyncio.ensure_future(self._commit(*self._stage_dispatch(job, decision)))
        try:
            result = await self._perform(job, decision.operation, credentials, write_ahead)
        except Withdrawn:
            pass  # the write-ahead failed: its StoreError is raised below
        finally:
            await asyncio.wait({write_ahead})  # a write asked for lands or fails, never left
        write_ahead.result()
        await self._conclude(job, decision, result)

    def _stage_dispatch(self, job: Job, decision: Decision) -> tuple[Change, Callable[[], None]]:
        now = self._crew.clock()
        marked = replace(job.record, dispatched_at=now)
        before = decision.before
        if before is None:
            return self._stage(marked, job=job, dispatch=True)
        record, events = self._crew.ledger.book(
            self.record, before, now, job.id, "the rental started"
        )
        command = marked.advanced(
            marked.state, now, events=(booking_event(before, now),)
        )  # the rental start is visible on the command, published with the booking
        return self._stage(command, job=job, record=record, events=events)

    async def _perform(
        self,
        job: Job,
        operation: Operation,
        credentials: Credentials,
        write_ahead: asyncio.Future[None],
    ) -> Result:
        remaining = max(self._crew.remaining(job), 0.001)

        async def progress(event: Progress) -> None:
            if isinstance(event, StepReached) and event.step is Step.AUTHORISED:
                # The last step before the lock is asked to move: only once the write-ahead is
                # on the disk, and not at all if it failed.
                await asyncio.wait({write_ahead})
                if write_ahead.exception() is not None:
                    raise Withdrawn("the write-ahead did not land")
                job.touched = True
                return
            try:
                await self._progress(job, event)
            except StoreError as err:
                # Not the radio's fault: the motion goes on, and the result is written at the end
                # (or, if the store still fails then, the command is settled by a read).
                self._crew.log.error(  # noqa: TRY400 - no exc_info: locals may hold a key
                    "the store failed to write a step", error=str(err)
                )

        # The outer deadline (_run) also bounds this await; timeout_s lets the driver stop cleanly.
        return await self._crew.radio.perform(
            self.bike, operation, credentials, timeout_s=remaining, progress=progress
        )

    async def _progress(self, job: Job, event: Progress) -> None:
        # Under the mutex, as every held step: a write of held steps that fails takes them back
        # before the next step is staged on top of them, and this one is judged against that.
        async with self.mutex:
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
                await self._write(job.record.advanced(target, at), job=job, soon=True)
                return
            update = self._crew.ledger.transition(
                self.record, event.lock_state, at, Cause.COMMAND, job.id
            )
            if update is None:
                return
            record, events = update
            command = job.record.advanced(
                job.record.state, at, events=(state_event(event.lock_state, at),)
            )
            await self._write(command, job=job, record=record, events=events, soon=True)

    async def _conclude(self, job: Job, decision: Decision, result: Result) -> None:
        """The command's end, as the ledger concludes it from the radio's result."""
        await self._end_with(
            job,
            result,
            operation=decision.operation,
            on_success=decision.on_success,
        )

    async def _end_with(
        self,
        job: Job,
        result: Result,
        *,
        operation: Operation | None = None,
        on_success: BookingStep | None = None,
        settling: Settling | None = None,
    ) -> None:
        """Writes the ledger's conclusion of a command (run or settled) in one transaction."""
        async with self.mutex:
            concluded = self._crew.ledger.conclude(
                self.record,
                job.record,
                job.request,
                result,
                self._crew.clock(),
                operation=operation,
                on_success=on_success,
                settling=settling,
            )
            job.ended = True
            await self._write(
                concluded.command, job=job, record=concluded.record, events=concluded.events
            )
        self._crew.log.info(
            "command ended",
            command_id=job.id,
            bike=self.bike,
            state=concluded.command.state,
            error_code=concluded.command.error_code,
        )

    async def _finish_booking(self, job: Job, step: BookingStep) -> None:
        now = self._crew.clock()
        record, events = self._crew.ledger.book(self.record, step, now, job.id, None)
        if step.change is BookingChange.BOOKED and job.deadline is not None:
            # A default expiry is a duration: it passes on the monotonic clock, whatever the
            # wall clock does meanwhile.
            assert record.booking_timeout_at is not None
            self.booking_deadline = (record.booking_timeout_at, job.deadline)
        job.ended = True
        command = job.record.advanced(
            CommandState.SUCCESS,
            now,
            events=(
                command_event("RESPONSE", job.request.name, now, "ok"),
                booking_event(step, now),
            ),
        )
        await self._write(command, job=job, record=record, events=events)
        self._crew.deadlines_changed.set()

    async def _provision(self, job: Job) -> None:
        crew = self._crew
        now = crew.clock()
        credentials = None if job.request.remove_credentials else crew.secrets.get(job.id)
        if credentials is None and not job.request.remove_credentials:
            await self.end(
                job,
                ErrorCode.MISSING_CREDENTIALS,
                "the credentials to provision were not kept across a restart: send them again",
            )
            return
        job.ended = True
        command = job.record.advanced(
            CommandState.SUCCESS,
            now,
            events=(command_event("RESPONSE", job.request.name, now, "ok"),),
            reason="credentials removed" if credentials is None else "credentials stored",
        )
        await crew.store.apply(
            Change(commands=(command,), provisioning=(Provisioning(self.bike, credentials),)),
            at=now,
        )
        job.record = command  # only once written: a failed write leaves the job to run again
        self.standing = credentials
        crew.radio.set_standing_credentials(self.bike, credentials)

    # --- settling after a restart --------------------------------------------------------------

    async def _settle(self, job: Job) -> None:
        """A command that may have reached the lock before the restart: read, and end as the lock
        shows. Never a second motion."""
        crew = self._crew
        result = Result(
            Outcome.TIMED_OUT, f"the lock did not answer within {crew.settle_timeout_s} s"
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(crew.settle_timeout_s):
                while True:
                    result = await crew.radio.perform(
                        self.bike,
                        Operation.READ,
                        crew.secrets.get(job.id) or self.standing,
                        timeout_s=crew.settle_timeout_s,
                        progress=_ignore_progress,
                    )
                    if result.reading.lock_state not in MOVING:
                        break
                    # The motor of the interrupted command still runs (it finishes whatever
                    # happens to the link): its end is what the command is settled by.
                    await asyncio.sleep(SETTLE_AGAIN_S)
        await self._end_with(job, result, settling=Settling(store_failed=job.store_failed))

    # --- what others ask of the lock -----------------------------------------------------------

    async def end(self, job: Job, code: ErrorCode, reason: str) -> None:
        """Ends a command in ERROR (at most once). The caller holds the mutex: the write takes the
        running command's held steps with it (:meth:`_commit`)."""
        if job.ended or job.record.state.final:
            return
        job.ended = True
        now = self._crew.clock()
        command = job.record.advanced(
            CommandState.ERROR,
            now,
            events=(command_event("RESPONSE", job.request.name, now, reason),),
            error_code=code,
            reason=reason,
        )
        try:
            await self._write(command, job=job)
        except StoreError:
            job.ended = False
            raise
        self._crew.log.info(
            "command ended", command_id=job.id, state=command.state, error_code=code, reason=reason
        )

    def booking_left(self) -> float | None:
        """Seconds until the lock's booking expires (``None``: no booking with an expiry): on the
        monotonic clock for a default expiry, on the wall clock for the backend's."""
        booking = booking_of(self.record)
        if booking.state is not BookingState.BOOKED or booking.timeout_at is None:
            return None
        noted = self.booking_deadline
        if noted is not None and noted[0] == booking.timeout_at:
            return noted[1] - self._crew.mono()
        return (booking.timeout_at - self._crew.clock()).total_seconds()

    async def expire_if_due(self) -> Booking:
        """The lock's booking, after expiring it if its time has passed (caller holds the mutex)."""
        now = self._crew.clock()
        booking = booking_of(self.record)
        left = self.booking_left()
        if left is None or left > 0:
            return booking
        step = BookingStep(Booking(), BookingChange.CANCELED)
        record, events = self._crew.ledger.book(self.record, step, now, None, "the booking expired")
        await self._store_record(record, events)
        self._crew.log.info("booking expired", bike=self.bike, user_id=booking.user)
        return booking_of(record)

    async def clock_stepped(self, step: timedelta) -> None:
        """The wall clock stepped by ``step``: default deadlines are durations, so their wall-clock
        times move with it (a default booking expiry is written again, its lock document with
        it); the running command's deadline from the backend is looked at again at once."""
        for job in (*self.waiting, *((self.running,) if self.running is not None else ())):
            if job.deadline is not None:
                shifted = job.request.timeout_at + step
                job.request = replace(job.request, timeout_at=shifted)
                job.record = replace(job.record, timeout_at=shifted)
        timeout = self._timeout
        running = self.running
        if timeout is not None and running is not None and running.deadline is None:
            loop = asyncio.get_running_loop()
            timeout.reschedule(loop.time() + max(self._crew.remaining(running), 0.0))
        async with self.mutex:
            noted = self.booking_deadline
            booking = booking_of(self.record)
            if noted is None or booking.timeout_at != noted[0]:
                return
            shifted = noted[0] + step
            previous = self.booking_deadline
            self.booking_deadline = (shifted, noted[1])
            try:
                await self._store_record(replace(self.record, booking_timeout_at=shifted), [])
            except StoreError:
                self.booking_deadline = previous
                raise

    async def observe(self, observation: Observation) -> None:
        """What the radio saw of this lock between commands, written if it changes the record.

        A read that found nothing new but the lock's heartbeat (``last_seen``, RSSI) is kept in
        memory, and written with the lock's next change or once :data:`HEARTBEAT_WRITE_S` passed
        since the lock's record was last written, without a sync of its own: a sync every ten
        minutes per lock was most of an idle station's writes (docs/store.md)."""
        async with self.mutex:
            record, events = self._crew.ledger.observed(self.record, observation)
            if record == self.record:
                return
            if not events and _heartbeat_only(self.record, record):
                if self._crew.mono() - self._written_at < HEARTBEAT_WRITE_S:
                    self.record = record
                    return
                await self._store_record(record, events, durable=False)
                return
            await self._store_record(record, events)

    async def _store_record(
        self, record: LockRecord, events: list[Event], *, durable: bool = True
    ) -> None:
        """The lock's record and its events, in one transaction; memory moves on only if the
        write lands, so a later write repeats the change rather than forgetting it."""
        previous, self.record = self.record, record

        def rollback() -> None:
            if self.record is record:
                self.record = previous

        await self._commit(Change(locks=(record,), events=tuple(events)), rollback, durable=durable)

    async def _write(
        self,
        command: CommandRecord,
        *,
        job: Job | None = None,
        record: LockRecord | None = None,
        events: list[Event] | tuple[Event, ...] = (),
        soon: bool = False,
    ) -> None:
        """One transaction: the command's new version, the lock's record, their events. Memory is
        set first: the store finishes a write even when its caller is cancelled (see the store's
        database thread). ``soon``: a step between the write-ahead and the conclusion (SENT,
        RECEIVED, a state the lock showed), held and written with the next write (see
        :meth:`_commit`); lost in a power cut, the command is settled by a read."""
        await self._commit(*self._stage(command, job=job, record=record, events=events), soon=soon)

    def _stage(
        self,
        command: CommandRecord,
        *,
        job: Job | None = None,
        record: LockRecord | None = None,
        events: list[Event] | tuple[Event, ...] = (),
        dispatch: bool = False,
    ) -> tuple[Change, Callable[[], None]]:
        """Sets memory to a write's outcome; the change to write, and how to take it back."""
        previous_command = job.record if job is not None else None
        previous_record = self.record
        if job is not None:
            job.record = command
        if record is not None:
            self.record = record

        def rollback() -> None:
            # Nothing of it landed (one transaction): memory goes back to what the disk holds, so
            # the command is settled or run again from there and no event is silently skipped.
            # Only what is still as this write left it: a later change (an observation) stays.
            if job is not None and previous_command is not None and job.record is command:
                job.record = previous_command
            if record is not None and self.record is record:
                self.record = previous_record

        if dispatch:
            return Change(dispatches=(command,)), rollback
        locks = () if record is None else (record,)
        return Change(commands=(command,), locks=locks, events=tuple(events)), rollback

    async def _commit(
        self,
        change: Change,
        rollback: Callable[[], None],
        *,
        soon: bool = False,
        durable: bool = True,
    ) -> None:
        """Writes ``change`` (memory already set; ``rollback`` takes it back if the write fails),
        with the held steps before it in the same transaction (:mod:`lockgate.engine.held`).
        ``soon`` (a step, under the mutex): held, not written yet."""
        if soon:
            self._held.hold(change, rollback)
            return
        held = self._held.take()
        try:
            await self._crew.store.apply(
                *(step for step, _ in held),
                change,
                at=self._crew.clock(),
                durable=durable or bool(held),  # held steps are published once synced
            )
        except StoreError:
            rollback()
            take_back(held)
            raise
        if change.locks or any(step.locks for step, _ in held):
            self._note_written()

    def _note_written(self) -> None:
        """The lock's record was written (a heartbeat alone waits an hour from now)."""
        self._written_at = self._crew.mono()


async def _ignore_progress(_: Progress) -> None:
    return None


def _heartbeat_only(before: LockRecord, after: LockRecord) -> bool:
    """Whether ``after`` differs from ``before`` in the heartbeat's fields alone."""
    return all(
        getattr(before, name) == getattr(after, name)
        for name in LockRecord.__dataclass_fields__
        if name not in _HEARTBEAT
    )
