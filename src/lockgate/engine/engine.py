"""The command engine: from a raw request on ``commands`` to a lock moved and the change published.

It sits between the MQTT link (which hands it requests; the service gives the link the store's
outbox), the radio (:class:`~lockgate.radio.LockRadio`, which it drives and whose observations the
service feeds it) and the store (where every change and the messages announcing it are written in
one transaction before anything is published). This module admits requests, recovers what the
last run left, keeps the deadlines and owns the tasks; one
:class:`~lockgate.engine.worker.LockWorker` per lock runs that lock's commands one at a time in
arrival order (locks run in parallel), and the pure :class:`~lockgate.engine.ledger.Ledger` says
what each change is. Every task lives in one TaskGroup, entered through an exit stack in
``async with``.

Durability rules, in the order a command meets them: the receipt (NOT_SENT) is stored before
:meth:`Engine.submit` returns; a rental start (``occupied``) and a write-ahead mark are stored
before the radio is asked to move the lock; a command that may have reached the lock when the
daemon died is settled by reading the lock at :meth:`Engine.recover`, never by moving it again.

Why it is one module of about 500 lines: admission is one ordered chain (gate, envelope, known id,
rules, receipt) under one lock, and recovery and deadlines share the workers' lifecycle with it;
the per-lock work and the pure rules already live apart (worker, ledger, jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

import structlog

from lockgate.clock import monotonic, utc_now
from lockgate.contract.documents import ClockEvent, ErrorDocument
from lockgate.contract.envelope import CommandGate, Refused
from lockgate.contract.request import (
    CommandRequest,
    Envelope,
    RejectedRequest,
    read_envelope,
    validate,
)
from lockgate.contract.stamps import stamp
from lockgate.contract.station import Station
from lockgate.engine.jobs import Clock, Crew, Job
from lockgate.engine.ledger import Ledger, command_event, rejected, request_of
from lockgate.engine.worker import LockWorker
from lockgate.errors import LockgateError
from lockgate.model import Admission, CommandState, ErrorCode
from lockgate.radio import LockRadio, Observation
from lockgate.store.key import StationKey
from lockgate.store.records import Change, CommandRecord, Correlation, LockRecord, Reply
from lockgate.store.store import Store, StoreCorruptError, StoreError

_log = structlog.get_logger(__name__)

DEFAULT_STOP_GRACE_S = 10.0
DEFAULT_SETTLE_TIMEOUT_S = 30.0
DEFAULT_DEDUPE_WINDOW = timedelta(days=7)
DEFAULT_REFUSAL_WINDOW = timedelta(hours=1)
MAX_CORRELATION_BYTES = 1024
_PRUNE_INTERVAL = timedelta(hours=1)
_STORE_RETRY_S = 1.0

__all__ = [
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_REFUSAL_WINDOW",
    "DEFAULT_SETTLE_TIMEOUT_S",
    "DEFAULT_STOP_GRACE_S",
    "MAX_CORRELATION_BYTES",
    "Clock",
    "Engine",
    "EngineStateError",
    "Recovery",
    "Submission",
]


class EngineStateError(LockgateError, RuntimeError):
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


class Engine:
    """Runs the contract's commands against the locks, durably. Use as an async context manager::

    async with Engine(store=store, radio=radio, station=station) as engine:
        await engine.recover()
        ...  # engine.submit(payload) per request; engine.observe(o) per radio observation
    """

    def __init__(
        self,
        *,
        store: Store,
        radio: LockRadio,
        station: Station,
        key: StationKey | None = None,
        gate: CommandGate | None = None,
        clock: Clock = utc_now,
        mono: Callable[[], float] = monotonic,
        clock_synced: Callable[[], bool] | None = None,
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        settle_timeout_s: float = DEFAULT_SETTLE_TIMEOUT_S,
        dedupe_window: timedelta = DEFAULT_DEDUPE_WINDOW,
        refusal_window: timedelta = DEFAULT_REFUSAL_WINDOW,
    ) -> None:
        if refusal_window <= timedelta(0) or refusal_window > dedupe_window:
            raise ValueError("refusal_window must be positive and no longer than dedupe_window")
        self._store = store
        self._radio = radio
        self._station = station
        self._key = key if key is not None else store.key
        self._gate = gate if gate is not None else CommandGate()
        self._clock = clock
        self._mono = mono
        self._clock_synced = clock_synced if clock_synced is not None else _assumed_synced
        # Forward steps of the wall clock (monotonic time seen, seconds): a window told against
        # times written before a step is lengthened by it (_cutoff).
        self._steps: list[tuple[float, float]] = []
        self._stop_grace_s = stop_grace_s
        self._dedupe_window = dedupe_window
        self._refusal_window = refusal_window
        # Refusals are forgotten at most half their window late.
        self._prune_interval = min(_PRUNE_INTERVAL, refusal_window / 2)
        self._log = _log.bind(station=station.id)
        self._crew = Crew(
            store=store,
            radio=radio,
            ledger=Ledger(station),
            clock=clock,
            mono=mono,
            settle_timeout_s=settle_timeout_s,
            log=self._log,
            secrets={},
        )
        self._workers: dict[str, LockWorker] = {}
        self._admission = asyncio.Lock()
        self._stack: contextlib.AsyncExitStack | None = None
        self._running: list[asyncio.Task[None]] = []
        self._recovered = False

    # --- life ----------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        stored = await self._store.locks()
        standing = await self._store.credentials()
        for registered in self._station.locks:
            bike = registered.bike
            record = stored.get(bike, LockRecord(bike))
            self._workers[bike] = LockWorker(registered, record, standing.get(bike), self._crew)
            self._radio.set_standing_credentials(bike, standing.get(bike))
            self._workers[bike].tell_radio_booking()
        # Every lock document again, with this start's boot_id (docs/station.md, Start).
        await self._store.apply(
            Change(locks=tuple(worker.record for worker in self._workers.values())),
            at=self._clock(),
        )
        async with contextlib.AsyncExitStack() as stack:
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            stack.push_async_callback(self.stop)  # left before the group: it ends the tasks
            self._running = [
                tasks.create_task(worker.run(), name=f"lockgate.engine.lock:{bike}")
                for bike, worker in self._workers.items()
            ]
            self._running.append(
                tasks.create_task(self._watch_deadlines(), name="lockgate.engine.deadlines")
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(exc_type, exc, tb)

    async def recover(self) -> Recovery:
        """Settles what the last run left: commands that may have reached a lock are read and end
        as the lock shows; NOT_SENT ones run if their time is not up; the rest end TIMED_OUT."""
        if self._stack is None:
            raise EngineStateError("recover() needs the engine entered (async with)")
        if self._recovered:
            return Recovery()
        now = self._clock()
        settled: list[str] = []
        resumed: list[str] = []
        timed_out: list[str] = []
        for record in await self._store.unfinished_commands():
            worker = self._workers.get(record.bike or "")
            request = request_of(record)
            if worker is None or request is None:
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
                worker.enqueue(Job(record, request, settle=True))
                settled.append(record.id)
            elif record.timeout_at is not None and record.timeout_at > now:
                worker.enqueue(Job(record, request))
                resumed.append(record.id)
            else:
                async with worker.mutex:
                    await worker.end(
                        Job(record, request),
                        ErrorCode.TIMED_OUT,
                        "timeout_at passed while the gateway was stopped",
                    )
                timed_out.append(record.id)
        self._recovered = True
        self._crew.deadlines_changed.set()
        self._log.info(
            "recovered", settled=len(settled), resumed=len(resumed), timed_out=len(timed_out)
        )
        return Recovery(tuple(settled), tuple(resumed), tuple(timed_out))

    async def stop(self, grace_s: float | None = None) -> None:
        """No new command starts; running ones get ``grace_s`` to finish, then are cancelled (they
        stay SENT or dispatched in the store and are settled by reading at the next start)."""
        stopping = self._crew.stopping
        if stopping.is_set():
            return
        stopping.set()
        grace = self._stop_grace_s if grace_s is None else grace_s
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                for worker in self._workers.values():
                    await worker.idle.wait()
        for task in self._running:
            task.cancel()

    async def wait_idle(self, timeout_s: float) -> None:
        """Until every queued command has ended (for tests and tools; the service stops with
        :meth:`stop`, which gives running commands a grace period and leaves the rest queued)."""
        async with asyncio.timeout(timeout_s):
            for worker in self._workers.values():
                await worker.queue.join()

    def lock_record(self, bike: str) -> LockRecord | None:
        worker = self._workers.get(bike)
        return None if worker is None else worker.record

    # --- requests ------------------------------------------------------------------------------

    async def submit(self, payload: bytes, *, correlation: Correlation | None = None) -> Submission:
        """Ingests one raw request; returns once its answer is stored (the link acknowledges the
        MQTT message only then). Bad input never raises; a store failure does (as StoreError),
        so that the request is not acknowledged and the broker delivers it again."""
        if not self._recovered:
            raise EngineStateError("submit() before recover()")
        correlation = self._bounded(correlation or Correlation())
        now, received = self._clock(), self._mono()
        # Admission, in order: signature, claims and sealed credentials (a refused request is
        # answered here and never read further: docs/mqtt-contract.md, Refusals); the request the
        # gate parsed (once) to an envelope with a usable id (or an error document); the id looked
        # up (a repeat or a conflict); the rules checked (a refusal); the receipt stored; the
        # command queued.
        opened = self._gate.open(
            payload, station=self._station.id, now=now, max_lifetime=self._dedupe_window
        )
        if isinstance(opened, Refused):
            return await self._turn_away(opened, payload, correlation, now)
        envelope = read_envelope(opened.request, fingerprint_key=self._key.fingerprint_key)
        if isinstance(envelope, ErrorDocument):
            return await self._unusable(envelope, now)
        async with self._admission:  # one id is looked up and stored by one request at a time
            try:
                known = await self._store.command(envelope.id)
            except StoreCorruptError as err:
                return await self._unreadable(envelope.id, err, now)
            if known is not None:
                return await self._again(known, envelope, correlation, now)
            verdict = self._check(envelope, now)
            if isinstance(verdict, RejectedRequest):
                return await self._refuse(verdict, correlation, now)
            record = await self._receive(verdict, correlation, now)
        deadline = None
        if verdict.relative:  # a duration from the receipt, on the monotonic clock
            deadline = received + (verdict.timeout_at - now).total_seconds()
        return self._start(verdict, record, deadline)

    def _bounded(self, correlation: Correlation) -> Correlation:
        """MQTT 5 properties are kept and echoed only within a size a backend could mean."""
        data, topic = correlation.correlation_data, correlation.response_topic
        if data is not None and len(data) > MAX_CORRELATION_BYTES:
            self._log.warning("correlation data too large to keep", size=len(data))
            data = None
        if topic is not None and not _fits(topic, MAX_CORRELATION_BYTES):
            self._log.warning("response topic too long or not UTF-8: not kept")
            topic = None
        return Correlation(data, topic)

    async def _unusable(self, error: ErrorDocument, now: datetime) -> Submission:
        self._log.info("request without a usable id", error=error.error_message)
        # Like a refusal, without its own disk sync (see _write): it changes nothing but the outbox.
        await self._store.apply(Change(errors=(error,)), at=now, durable=False)
        return Submission(Admission.UNUSABLE, None, error.error_code)

    async def _unreadable(
        self, command_id: str, err: StoreCorruptError, now: datetime
    ) -> Submission:
        """The stored record of this id is damaged: answered, not raised, or the broker would
        deliver the request for ever. Nothing runs: the station cannot know what it did."""
        self._log.error(
            "the record of a known id cannot be read", command_id=command_id, error=str(err)
        )
        error = ErrorDocument(
            error_message=f"id {command_id}: the station's record of this id cannot be read",
            status_code=500,
            correlation_id=command_id,
            error_code=ErrorCode.INTERNAL,
        )
        await self._store.apply(Change(errors=(error,)), at=now)
        return Submission(Admission.REJECTED, command_id, ErrorCode.INTERNAL)

    async def _again(
        self, known: CommandRecord, envelope: Envelope, correlation: Correlation, now: datetime
    ) -> Submission:
        """A known id: its stored document again, or a conflict if the content differs."""
        log = self._log.bind(command_id=envelope.id)
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
        await self._store.apply(Change(errors=(conflict,)), at=now, durable=False)  # see _write
        return Submission(Admission.CONFLICT, envelope.id, ErrorCode.CONFLICT)

    def _check(self, envelope: Envelope, now: datetime) -> CommandRequest | RejectedRequest:
        """The contract's rules; a fault in checking them refuses the request (INTERNAL) rather
        than escaping as a message the broker would deliver again for ever."""
        try:
            return validate(
                envelope, station=self._station, now=now, clock_synced=self._clock_synced()
            )
        except Exception as err:  # noqa: BLE001 - hostile input must get an answer, never a raise
            self._log.error(
                "request could not be checked",
                command_id=envelope.id,
                error=type(err).__name__,
                traceback="".join(traceback.format_exception(err)),
            )
            return RejectedRequest(
                envelope.id,
                envelope.command,
                None,
                None,
                envelope.fingerprint,
                ErrorCode.INTERNAL,
                "request: the gateway could not check this request",
            )

    async def _refuse(
        self, verdict: RejectedRequest, correlation: Correlation, now: datetime
    ) -> Submission:
        self._log.info(
            "request refused",
            command_id=verdict.id,
            error_code=verdict.error_code,
            reason=verdict.reason,
        )
        await self._write(rejected(verdict, now, correlation), durable=False)
        return Submission(Admission.REJECTED, verdict.id, verdict.error_code)

    async def _receive(
        self, verdict: CommandRequest, correlation: Correlation, now: datetime
    ) -> CommandRecord:
        """The receipt (NOT_SENT), stored before submit returns."""
        record = CommandRecord(
            id=verdict.id,
            fingerprint=verdict.fingerprint,
            name=verdict.name.value,
            bike=verdict.bike,
            state=CommandState.NOT_SENT,
            version=1,
            received_at=now,
            timeout_at=verdict.timeout_at,
            events=(command_event("REQUEST", verdict.name, now),),
            parameters=verdict.parameters(),
            correlation=correlation,
            reason=verdict.note,
        )
        await self._write(record)
        self._log.info(
            "command accepted", command_id=verdict.id, command=verdict.name, bike=verdict.bike
        )
        return record

    def _start(
        self, verdict: CommandRequest, record: CommandRecord, deadline: float | None
    ) -> Submission:
        if self._crew.stopping.is_set():
            return Submission(Admission.ACCEPTED, verdict.id)  # runs after the next start
        if verdict.credentials is not None:
            self._crew.secrets[verdict.id] = verdict.credentials
        self._workers[verdict.bike].enqueue(Job(record, verdict, deadline=deadline))
        return Submission(Admission.ACCEPTED, verdict.id)

    async def _turn_away(
        self, refusal: Refused, payload: bytes, correlation: Correlation, now: datetime
    ) -> Submission:
        """A request that failed a check of its signature, claims or sealed credentials."""
        log = self._log.bind(command_id=refusal.command_id or refusal.correlation_id)
        log.info("request refused", error_code=refusal.error_code, reason=refusal.reason)
        if refusal.command_id is None:
            # Not under a valid signature: nothing is stored under an id a forger chose.
            error = refusal.error_document()
            await self._store.apply(Change(errors=(error,)), at=now, durable=False)  # see _write
            return Submission(Admission.UNUSABLE, None, refusal.error_code)
        async with self._admission:
            try:
                known = await self._store.command(refusal.command_id)
            except StoreCorruptError as err:
                return await self._unreadable(refusal.command_id, err, now)
            if known is not None:
                # A late re-send of a command that ran (now expired, say) learns how it ended.
                reply = Reply(known.document(self._station.id), correlation)
                await self._store.apply(Change(replies=(reply,)), at=now)
                return Submission(Admission.REPEATED, refusal.command_id)
            digest = hmac.new(self._key.fingerprint_key, payload, hashlib.sha256).hexdigest()
            await self._write(rejected(refusal.rejected(digest), now, correlation), durable=False)
        return Submission(Admission.REJECTED, refusal.command_id, refusal.error_code)

    async def _write(self, command: CommandRecord, *, durable: bool = True) -> None:
        """A command's record on its own (a receipt, a refusal), in one transaction.

        A refusal is written without its own disk sync (``durable=False``), and so are the error
        documents answering a conflict or a request without a usable id: lost in a power cut,
        each costs nothing (no lock moved, and the same request is answered the same way again),
        and a flood of bad requests is then not held to the disk's rate of syncs (docs/store.md).
        Still stored before ``submit`` returns: before it is published, and before the request's
        PUBACK."""
        await self._store.apply(Change(commands=(command,)), at=self._clock(), durable=durable)

    # --- what the radio sees between commands --------------------------------------------------

    async def observe(self, observation: Observation) -> None:
        """What the radio saw between commands: lock states (manual, sync, startup), health,
        readings. The service calls it for every item of the driver's ``observations()``."""
        worker = self._workers.get(observation.bike)
        if worker is None:
            self._log.warning("observation of an unregistered bike", bike=observation.bike)
            return
        try:
            await worker.observe(observation)
        except StoreError as err:
            # The record in memory stays as the disk has it, so the next observation of this lock
            # (a sync read comes periodically) makes the same change again and writes it then.
            self._log.error("the store failed to write an observation", error=str(err))

    # --- deadlines: queued commands and bookings -----------------------------------------------

    async def _watch_deadlines(self) -> None:
        while True:
            try:
                await self._keep_deadlines()
            except StoreError as err:
                # A full or read-only disk must not end the task (and with it the engine): what
                # was due is looked at again once the store writes.
                self._log.error("the store failed while keeping deadlines", error=str(err))
                await asyncio.sleep(_STORE_RETRY_S)

    async def _keep_deadlines(self) -> None:
        """Queued commands' deadlines, bookings' expiries and the pruning, each told in seconds
        from now: a default deadline on the monotonic clock, the backend's on the wall clock.
        Woken when a command is queued, a booking written, or the wall clock stepped."""
        changed = self._crew.deadlines_changed
        next_prune = self._mono()
        while True:
            changed.clear()
            if self._mono() >= next_prune:
                now = self._clock()
                # The dedupe record of ids is kept for the window, then forgotten, so a station
                # that runs for months does not grow its command table without end.
                await self._store.prune_commands(self._cutoff(now, self._dedupe_window))
                # A refused request is remembered only long enough to answer its repeats the
                # same way; the store also keeps at most max_refusals of them (docs/store.md).
                await self._store.prune_refusals(self._cutoff(now, self._refusal_window))
                next_prune = self._mono() + self._prune_interval.total_seconds()
            upcoming: list[float] = [next_prune - self._mono()]
            for worker in self._workers.values():
                for job in list(worker.waiting):
                    if job.ended or job.started or job.settle:
                        continue
                    left = self._crew.remaining(job)
                    if left <= 0:
                        async with worker.mutex:
                            await worker.end(
                                job,
                                ErrorCode.TIMED_OUT,
                                "timeout_at passed while the command waited",
                            )
                    else:
                        upcoming.append(left)
                expiry = worker.booking_left()
                if expiry is not None and expiry <= 0:
                    async with worker.mutex:
                        await worker.expire_if_due()
                    worker.tell_radio_booking()
                elif expiry is not None:
                    upcoming.append(expiry)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(min(upcoming), 0.0) + 0.001):
                    await changed.wait()

    def _cutoff(self, now: datetime, window: timedelta) -> datetime:
        """What is older than ``window`` (told on the wall clock of the rows): a forward step of
        the wall clock within the window makes rows written before it look older than they are,
        so the window is lengthened by it until the step itself is older than the window."""
        mono = self._mono()
        horizon = self._dedupe_window.total_seconds()
        self._steps = [(at, step) for at, step in self._steps if mono - at < horizon]
        ahead = sum(step for at, step in self._steps if mono - at < window.total_seconds())
        return now - window - timedelta(seconds=ahead)

    # --- the wall clock ------------------------------------------------------------------------

    async def clock_stepped(self, step_s: float) -> None:
        """The wall clock stepped by ``step_s`` seconds (forward positive): a ``clock`` event says
        so, default deadlines and expiries (durations) move with it, and every deadline told on
        the wall clock is looked at again at once (a booking whose expiry the step passed
        expires now). A store that cannot write is logged, not raised."""
        now = self._clock()
        if step_s > 0:
            self._steps.append((self._mono(), step_s))
        event = ClockEvent(**stamp(self._station, now, bike=None), step_s=round(step_s, 3))
        try:
            await self._store.apply(Change(events=(event,)), at=now)
        except StoreError as err:
            self._log.error("the store failed to write the clock's step", error=str(err))
        step = timedelta(seconds=step_s)
        for worker in self._workers.values():
            try:
                await worker.clock_stepped(step)
            except StoreError as err:
                self._log.error("the store failed to move a booking's expiry", error=str(err))
        self._crew.deadlines_changed.set()


def _assumed_synced() -> bool:
    return True


def _fits(text: str, limit: int) -> bool:
    """Whether ``text`` is valid UTF-8 (no lone surrogate) of at most ``limit`` bytes."""
    try:
        return len(text.encode("utf-8")) <= limit
    except UnicodeEncodeError:
        return False
