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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

import structlog

from lockgate.clock import utc_now
from lockgate.contract.documents import ErrorDocument
from lockgate.contract.envelope import CommandGate, Refused
from lockgate.contract.request import RejectedRequest, read_envelope, validate
from lockgate.contract.station import Station
from lockgate.engine.ledger import Ledger, booking_of, command_event, rejected, request_of
from lockgate.engine.worker import Clock, Crew, Job, LockWorker
from lockgate.model import Admission, BookingState, CommandState, ErrorCode
from lockgate.radio import LockRadio, Observation
from lockgate.store.key import StationKey
from lockgate.store.records import Change, CommandRecord, Correlation, LockRecord, Reply
from lockgate.store.store import Store

_log = structlog.get_logger(__name__)

DEFAULT_STOP_GRACE_S = 10.0
DEFAULT_SETTLE_TIMEOUT_S = 30.0
DEFAULT_DEDUPE_WINDOW = timedelta(days=7)
_PRUNE_INTERVAL = timedelta(hours=1)

__all__ = [
    "DEFAULT_DEDUPE_WINDOW",
    "DEFAULT_SETTLE_TIMEOUT_S",
    "DEFAULT_STOP_GRACE_S",
    "Clock",
    "Engine",
    "EngineStateError",
    "Recovery",
    "Submission",
]


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
        stop_grace_s: float = DEFAULT_STOP_GRACE_S,
        settle_timeout_s: float = DEFAULT_SETTLE_TIMEOUT_S,
        dedupe_window: timedelta = DEFAULT_DEDUPE_WINDOW,
    ) -> None:
        self._store = store
        self._radio = radio
        self._station = station
        self._key = key if key is not None else store.key
        self._gate = gate if gate is not None else CommandGate()
        self._clock = clock
        self._stop_grace_s = stop_grace_s
        self._dedupe_window = dedupe_window
        self._log = _log.bind(station=station.id)
        self._crew = Crew(
            store=store,
            radio=radio,
            ledger=Ledger(station),
            clock=clock,
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
        # Every lock document again, with this start's boot_id (product.md, Start).
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
        """Until every queued command has ended (for the service's stop, and for tests)."""
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
        correlation = correlation or Correlation()
        now = self._clock()
        # Signature, claims and sealed credentials first: a refused request is answered here and
        # never read further (docs/mqtt-contract.md, Refusals).
        opened = self._gate.open(
            payload, station=self._station.id, now=now, max_lifetime=self._dedupe_window
        )
        if isinstance(opened, Refused):
            return await self._refuse(opened, payload, correlation, now)
        payload = opened.payload
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
                await self._write(rejected(verdict, now, correlation))
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
                events=(command_event("REQUEST", verdict.name, now),),
                parameters=verdict.parameters(),
                correlation=correlation,
            )
            await self._write(record)
        log.info("command accepted", command=verdict.name, bike=verdict.bike)
        if self._crew.stopping.is_set():
            return Submission(Admission.ACCEPTED, verdict.id)  # runs after the next start
        if verdict.credentials is not None:
            self._crew.secrets[verdict.id] = verdict.credentials
        self._workers[verdict.bike].enqueue(Job(record, verdict))
        return Submission(Admission.ACCEPTED, verdict.id)

    async def _refuse(
        self, refusal: Refused, payload: bytes, correlation: Correlation, now: datetime
    ) -> Submission:
        """A request that failed a check of its signature, claims or sealed credentials."""
        log = self._log.bind(command_id=refusal.command_id or refusal.correlation_id)
        log.info("request refused", error_code=refusal.error_code, reason=refusal.reason)
        if refusal.command_id is None:
            # Not under a valid signature: nothing is stored under an id a forger chose.
            await self._store.apply(Change(errors=(refusal.error_document(),)), at=now)
            return Submission(Admission.UNUSABLE, None, refusal.error_code)
        async with self._admission:
            known = await self._store.command(refusal.command_id)
            if known is not None:
                # A late re-send of a command that ran (now expired, say) learns how it ended.
                reply = Reply(known.document(self._station.id), correlation)
                await self._store.apply(Change(replies=(reply,)), at=now)
                return Submission(Admission.REPEATED, refusal.command_id)
            digest = hmac.new(self._key.fingerprint_key, payload, hashlib.sha256).hexdigest()
            await self._write(rejected(refusal.rejected(digest), now, correlation))
        return Submission(Admission.REJECTED, refusal.command_id, refusal.error_code)

    async def _write(self, command: CommandRecord) -> None:
        """A command's record on its own (a receipt, a refusal), in one transaction."""
        await self._store.apply(Change(commands=(command,)), at=self._clock())

    # --- what the radio sees between commands --------------------------------------------------

    async def observe(self, observation: Observation) -> None:
        """What the radio saw between commands: lock states (manual, sync, startup), health,
        readings. The service calls it for every item of the driver's ``observations()``."""
        worker = self._workers.get(observation.bike)
        if worker is None:
            self._log.warning("observation of an unregistered bike", bike=observation.bike)
            return
        await worker.observe(observation)

    # --- deadlines: queued commands and bookings -----------------------------------------------

    async def _watch_deadlines(self) -> None:
        changed = self._crew.deadlines_changed
        next_prune = self._clock()
        while True:
            changed.clear()
            now = self._clock()
            if now >= next_prune:
                # The dedupe record of ids is kept for the window, then forgotten, so a station
                # that runs for months does not grow its command table without end.
                await self._store.prune_commands(now - self._dedupe_window)
                next_prune = now + _PRUNE_INTERVAL
            upcoming: list[datetime] = [next_prune]
            for worker in self._workers.values():
                for job in list(worker.waiting):
                    if job.ended or job.started or job.settle:
                        continue
                    if job.request.timeout_at <= now:
                        await worker.end(
                            job, ErrorCode.TIMED_OUT, "timeout_at passed while the command waited"
                        )
                    else:
                        upcoming.append(job.request.timeout_at)
                booking = booking_of(worker.record)
                if booking.expired(now):
                    async with worker.mutex:
                        await worker.expire_if_due()
                elif booking.state is BookingState.BOOKED and booking.timeout_at is not None:
                    upcoming.append(booking.timeout_at)
            delay = (min(upcoming) - self._clock()).total_seconds()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(delay, 0.0) + 0.001):
                    await changed.wait()
