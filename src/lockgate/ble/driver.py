"""The BLE driver: lock operations with precise outcomes, radio scheduling, watching, health.

:class:`Driver` implements :class:`~lockgate.radio.LockRadio` over bleak. It owns the radio:

- at most ``connection_slots`` links per adapter (:class:`~lockgate.ble.slots.SlotPool`), a
  command before a sync before a watch, and a command may take a watch's slot;
- one connection attempt per adapter at a time (BlueZ runs one anyway and answers InProgress),
  each operation through the adapter that hears the lock best, and none while no adapter is up
  (:class:`~lockgate.ble.airwaves.Airwaves` follows BlueZ and the adapters, and says where);
- one operation per lock at a time;
- a lock left open is watched (its link kept) where slots allow, so that a rider closing it by hand
  is seen within a second; other locks are read every ``sync_interval_s``;
- health per lock from every attempt (:class:`~lockgate.ble.health.HealthTracker`).

What it sees between commands it yields from :meth:`Driver.observations` (state changes with cause
``manual``, ``sync`` or ``startup``, readings, health), in the order it saw them. It owns one
TaskGroup, entered through an exit stack in ``async with``; every task in it is named.

The observations pass through an unbounded queue with one consumer (see :meth:`observations`);
an operation waits until that consumer has taken what came before it, so that what the engine
applies for a lock stays in the order the lock showed it.

Why the scheduling stays in one module of about 750 lines: operations, the watch (and a booked
bike kept ready, a watch of its own kind) and the sync loop
all change one lock's link, slot, turn and health together, and each hand-over between them is one
invariant that reads best in one place. What does not need the other locks lives beside it
(radio_lock.py, conversation.py, link.py, airwaves.py with adapters, bluez and discovery, slots,
health, errors).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Self

import structlog

from lockgate.ble.adapters import AdapterStatus, RadioAdapter
from lockgate.ble.airwaves import Airwaves
from lockgate.ble.conversation import Conversation
from lockgate.ble.discovery import LockIdentity
from lockgate.ble.errors import OperationError
from lockgate.ble.health import HealthTracker
from lockgate.ble.link import Chunk, Link, next_chunk
from lockgate.ble.radio_lock import KeptSession, RadioLock, merge_readings
from lockgate.ble.settings import RadioSettings
from lockgate.ble.slots import Priority
from lockgate.clock import utc_now
from lockgate.model import Cause, HardwareState, LockState
from lockgate.protocol.credentials import Credentials
from lockgate.radio import (
    Observation,
    Operation,
    Outcome,
    ProgressSink,
    Reading,
    ReadingObserved,
    Result,
    StateObserved,
    Step,
    StepReached,
    Withdrawn,
)

log = structlog.get_logger(__name__)

# Outcomes that say the lock was not reached at all; every other outcome means it answered.
_MISSES = frozenset(
    {Outcome.UNREACHABLE, Outcome.BUSY, Outcome.NO_SLOT, Outcome.LINK_LOST, Outcome.TIMED_OUT}
)


@dataclass(slots=True)
class _Attempt:
    """Whether an operation got as far as the radio: only then does its end count for health."""

    started: bool = False
    losses: int = 0
    """The driver's count of adapters lost, when the attempt began: a miss while one was lost
    is the radio's, not the lock's."""
    radio_away: str | None = None
    """Set while the operation waits for an adapter to be up: why none is."""

    def waiting(self, why: str | None) -> None:
        self.radio_away = why


HEALTH_LOOK_S = 30.0
"""The health loop looks at every lock at least this often."""
ROUTE_TRIES = 3
"""How often an operation picks an adapter again when the one it chose went down meanwhile."""


class Driver:
    """The station's BLE radio, as the command engine and the service use it."""

    def __init__(
        self,
        locks: Iterable[LockIdentity],
        settings: RadioSettings,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._settings = settings
        self._observed: asyncio.Queue[Observation | None] = asyncio.Queue()
        self._clock = clock
        now = clock()
        self._locks = {
            lock.bike: RadioLock(
                lock,
                HealthTracker(
                    now,
                    dead_after=timedelta(seconds=settings.dead_after_s),
                    long_dead_after=timedelta(seconds=settings.long_dead_after_s),
                ),
            )
            for lock in locks
        }
        self._air = Airwaves(
            (entry.identity for entry in self._locks.values()),
            settings,
            clock,
            on_lost=self._lose_links,
        )
        self._tasks: asyncio.TaskGroup | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._stack: contextlib.AsyncExitStack | None = None
        self._stopping = False
        self._health_wake = asyncio.Event()

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            # BlueZ and scanning first: an adapter that cannot be used raises AdapterError as
            # itself, not wrapped in the task group's exception group.
            stack.push_async_callback(self._air.stop)
            await self._air.start()
            self._tasks = await stack.enter_async_context(asyncio.TaskGroup())
            self._air.attach(self._tasks)
            stack.push_async_callback(self._close_all)
            self._loops = [
                self._tasks.create_task(self._sync_loop(), name="ble-sync"),
                self._tasks.create_task(self._health_loop(), name="ble-health"),
            ]
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping = True
        self._air.attach(None)  # no scan starts while stopping
        for task in [*self._loops, *(e.watcher for e in self._locks.values() if e.watcher)]:
            task.cancel()
        assert self._stack is not None
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        finally:
            self._observed.put_nowait(None)  # the end of observations(), after all the rest

    async def _close_all(self) -> None:
        for entry in self._locks.values():
            await self._drop_link(entry)

    # --- what others ask -----------------------------------------------------------------

    @property
    def bikes(self) -> list[str]:
        return list(self._locks)

    @property
    def unknown_locks(self) -> frozenset[str]:
        return self._air.discovery.strangers

    @property
    def links_in_use(self) -> int:
        return sum(a.slots.in_use for a in self._air.adapters.all())

    @property
    def link_capacity(self) -> int:
        """Links the adapters that are up hold at once."""
        return sum(a.slots.capacity for a in self._air.adapters.up())

    @property
    def radio_up(self) -> bool:
        """At least one adapter is up."""
        return self._air.up.is_set()

    def radio_status(self) -> list[AdapterStatus]:
        """Every adapter: up or down since when, why, its slots."""
        return [a.status() for a in self._air.adapters.all()]

    async def radio_turns(self) -> AsyncIterator[AdapterStatus]:
        """Each adapter going down or up, as it happens (one consumer: the service)."""
        async for turn in self._air.turns():
            yield turn

    def set_standing_credentials(self, bike: str, credentials: Credentials | None) -> None:
        """Provisioned credentials for reads and watches. New ones on a lock already tried (or
        being tried) read it at once: its state needs a session, which it can have now. A lock
        not tried yet is read by the service's first reads."""
        entry = self._locks[bike]
        renewed = credentials is not None and credentials != entry.standing
        entry.standing = credentials
        tried = entry.last_attempt is not None or entry.mutex.locked()
        if renewed and tried and self._tasks is not None and not self._stopping:
            self._tasks.create_task(self._read_provisioned(entry), name=f"ble-provisioned-{bike}")

    def keep_ready(self, bike: str, *, booked: bool) -> None:
        """A booked bike's lock is kept connected and authorised with its provisioned
        credentials (``keep_booked_ready``), as a watch's link is kept: its unlock then costs
        only the lock control and the motor. Its slot is given up to a command as a watch's."""
        entry = self._locks.get(bike)
        if entry is None:
            return
        ready = booked and self._settings.keep_booked_ready
        if ready == entry.ready:
            return
        entry.ready = ready
        if ready:
            entry.ready_ended.clear()
            if self._tasks is not None and not self._stopping:
                self._ensure_watcher(entry)
        else:
            entry.ready_ended.set()

    async def _read_provisioned(self, entry: RadioLock) -> None:
        timeout = self._settings.connect_timeout_s + 3 * self._settings.steps.answer_s
        try:
            result = await self._read(entry.bike, Cause.SYNC, timeout, Priority.COMMAND)
        except Exception:  # reads do not raise: a bug, logged whole; the sync reads it later
            log.exception("reading a provisioned lock failed", bike=entry.bike)
            return
        log.info("provisioned lock read", bike=entry.bike, outcome=str(result.outcome))

    async def observations(self) -> AsyncIterator[Observation]:
        """What the driver sees between commands, in order, until the driver has stopped. One
        consumer only; nothing is lost (an unbounded queue). An operation waits for the consumer
        to take what came before it, so start consuming before the first operation."""
        while True:
            observation = await self._observed.get()
            self._observed.task_done()
            if observation is None:
                return
            yield observation

    def watched(self) -> list[str]:
        """The locks whose watch is listening right now."""
        return [e.bike for e in self._locks.values() if e.listening]

    async def perform(
        self,
        bike: str,
        operation: Operation,
        credentials: Credentials | None,
        *,
        timeout_s: float,
        progress: ProgressSink,
    ) -> Result:
        entry = self._locks.get(bike)
        if entry is None:
            return Result(Outcome.UNREACHABLE, f"{bike} is not a lock of this station")
        result, _ = await self._operate(
            entry,
            operation=operation,
            credentials=credentials,
            timeout_s=timeout_s,
            progress=progress,
            priority=Priority.COMMAND,
        )
        return result

    async def read(self, bike: str, cause: Cause, timeout_s: float) -> Result:
        """Read a lock outside a command, reporting what changed with ``cause``."""
        priority = Priority.SYNC if cause is Cause.SYNC else Priority.COMMAND
        return await self._read(bike, cause, timeout_s, priority)

    async def _read(self, bike: str, cause: Cause, timeout_s: float, priority: Priority) -> Result:
        entry = self._locks[bike]
        result, before = await self._operate(
            entry,
            operation=Operation.READ,
            credentials=None,
            timeout_s=timeout_s,
            progress=_no_progress,
            priority=priority,
        )
        now = self._clock()
        seen = result.reading.lock_state
        if seen is not None and before is not None and seen is not before:
            self._observe(StateObserved(bike, seen, cause, now))
        if result.ok:
            self._observe(ReadingObserved(bike, result.reading, now))
        return result

    # --- operations ----------------------------------------------------------------------

    async def _operate(
        self,
        entry: RadioLock,
        *,
        operation: Operation,
        credentials: Credentials | None,
        timeout_s: float,
        progress: ProgressSink,
        priority: Priority,
    ) -> tuple[Result, LockState | None]:
        """Run one operation in the lock's turn; also the lock state just before it ran."""
        usable = entry.credentials_for(operation, credentials)
        if isinstance(usable, Result):
            return usable, None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        entry.waiting += 1
        entry.operation_waits.set()
        try:
            async with asyncio.timeout(timeout_s):
                await entry.mutex.acquire()
        except TimeoutError:
            # Never tried: another operation had the lock all along. Nothing to say of health.
            return Result(Outcome.TIMED_OUT, f"the lock was busy for all of {timeout_s:g} s"), None
        finally:
            entry.waiting -= 1
            if not entry.waiting:
                entry.operation_waits.clear()
        attempt = _Attempt(losses=self._air.losses)
        entry.recheck = entry.recheck or operation is not Operation.READ
        released_later = False
        try:
            self._drain(entry)
            before = entry.lock_state
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    result = await self._run(
                        entry,
                        operation=operation,
                        credentials=usable,
                        progress=progress,
                        priority=priority,
                        attempt=attempt,
                    )
            except TimeoutError:
                if attempt.radio_away is not None:
                    # Never reached the radio: nothing to say of the lock's health.
                    result = Result(
                        Outcome.UNREACHABLE,
                        f"the radio stayed down for all of {timeout_s:g} s: {attempt.radio_away}",
                    )
                else:
                    result = Result(
                        Outcome.TIMED_OUT, f"the {operation} did not finish within {timeout_s:g} s"
                    )
                if attempt.started:
                    self._record(entry, result, radio_lost=attempt.losses != self._air.losses)
            except BaseException:
                # Cancelled: the link is kept for a watch or let go, never left over.
                await self._keep_or_drop(entry)
                raise
            released_later = self._release_later(entry)
            if not released_later:
                await self._keep_or_drop(entry)
        finally:
            if not released_later:
                entry.mutex.release()
        log.info(
            "operation ended",
            bike=entry.bike,
            operation=str(operation),
            outcome=str(result.outcome),
            reason=result.reason,
        )
        self._publish_health(entry)
        return result, before

    async def _run(
        self,
        entry: RadioLock,
        *,
        operation: Operation,
        credentials: Credentials | None,
        progress: ProgressSink,
        priority: Priority,
        attempt: _Attempt,
    ) -> Result:
        steps = self._settings.steps
        reading = Reading()
        hardware: HardwareState | None = None
        try:
            # What the lock showed before this operation reaches the engine before its progress.
            await self._observed.join()
            link = await self._link(entry, priority, attempt)
            await progress(StepReached(Step.CONNECTED, self._clock()))
            sighting = self._air.sighting_through(entry.bike, entry.adapter)
            reading = Reading(rssi=sighting.rssi if sighting else None)
            if credentials is not None:
                # The link's session, if an earlier operation left it authorised with these
                # credentials: no new authorisation (6 writes and 5 indications fewer).
                conversation = Conversation(
                    link,
                    credentials,
                    steps,
                    self._clock,
                    progress,
                    session=entry.session_for(link, credentials),
                )
                entry.kept_session = None  # kept again only if this operation ends well
                try:
                    lock_state, alarm = await conversation.command(operation)
                    reading = merge_readings(reading, Reading(lock_state=lock_state, alarm=alarm))
                    entry.kept_session = KeptSession(link, credentials, conversation.session)
                finally:
                    hardware = conversation.observed.hardware_state
                    if conversation.observed.alarm is not None:
                        reading = merge_readings(
                            reading, Reading(alarm=conversation.observed.alarm)
                        )
            if operation is Operation.READ:
                battery = await link.read_battery(steps.gatt_s)
                firmware = await link.read_firmware(steps.gatt_s)
                reading = merge_readings(reading, Reading(battery=battery, firmware=firmware))
            if reading.lock_state is not None and hardware is None:
                hardware = (
                    HardwareState.ERROR
                    if reading.lock_state is LockState.UNKNOWN
                    else HardwareState.NORMAL
                )
            result = Result(Outcome.OK, "done", reading, hardware)
        except Withdrawn:
            await self._drop_link(entry)  # the lock was never asked to move
            raise
        except OperationError as err:
            if err.outcome is Outcome.UNREACHABLE:
                self._air.discovery.forget(entry.bike)
            if err.outcome is Outcome.LINK_LOST and entry.link is not None:
                entry.link.lost.set()  # never kept for a watch, never handed to the next one
            if err.outcome is Outcome.BLOCKED:
                hardware = HardwareState.ERROR
            result = Result(err.outcome, err.reason, reading, hardware)
        except Exception as err:  # perform never raises: the bug is logged whole, the link let go
            log.exception("operation failed unexpectedly", bike=entry.bike)
            result = Result(Outcome.UNREACHABLE, f"unexpected failure: {type(err).__name__}")
            await self._drop_link(entry)
        if attempt.started:
            self._record(entry, result, radio_lost=attempt.losses != self._air.losses)
        return result

    def _record(self, entry: RadioLock, result: Result, *, radio_lost: bool = False) -> None:
        now = self._clock()
        entry.last_attempt = now
        if result.reading.lock_state is not None:
            entry.recheck = False
        if result.outcome in _MISSES:
            if not radio_lost:  # an adapter or bluetoothd went meanwhile: not the lock's fault
                entry.health.missed(now)
                self._health_wake.set()  # its DEAD may now fall due before the loop looks
        else:
            entry.health.reached(now, result.hardware_state)
        if result.reading.lock_state is not None:
            entry.lock_state = result.reading.lock_state

    async def _link(self, entry: RadioLock, priority: Priority, attempt: _Attempt) -> Link:
        """The lock's open link (a watch's, taken over) or a new one in a new slot, through the
        adapter that hears the lock best (:func:`~lockgate.ble.adapters.choose`).

        A sync takes a slot only if one is free: it never waits behind watches, and a read that
        did not happen says nothing of the lock's health. While no adapter is up the operation
        waits for one (within its own timeout).
        """
        if entry.linked and entry.slot is not None and entry.adapter is not None:
            entry.adapter.slots.repurpose(entry.slot, priority)
            attempt.started = True
            assert entry.link is not None
            return entry.link
        await self._drop_link(entry)
        for _ in range(ROUTE_TRIES):
            adapter, sighting = await self._air.route(entry.bike, attempt.waiting)
            if priority is Priority.SYNC:
                slot = adapter.slots.try_acquire(entry.bike, priority)
                if slot is None:
                    raise OperationError(Outcome.NO_SLOT, "every connection slot is taken")
            else:
                slot = await adapter.slots.acquire(entry.bike, priority)
            if not adapter.up:  # it went while this operation waited for its slot
                adapter.slots.release(slot)
                continue
            attempt.started = True
            try:
                entry.link = await self._air.connect(entry.bike, adapter, sighting)
            except BaseException:
                adapter.slots.release(slot)
                raise
            entry.slot, entry.adapter = slot, adapter
            return entry.link
        raise OperationError(Outcome.UNREACHABLE, "every adapter that heard the lock went down")

    async def _drop_link(self, entry: RadioLock) -> None:
        link, entry.link = entry.link, None
        slot, entry.slot = entry.slot, None
        adapter, entry.adapter = entry.adapter, None
        entry.kept_session = None
        entry.gdio.reset()
        try:
            if link is not None:
                await link.close(self._settings.steps.disconnect_s)
        finally:
            if slot is not None and adapter is not None:
                adapter.slots.release(slot)

    def _release_later(self, entry: RadioLock) -> bool:
        """Ends the lock's turn (keep or let go of the link, then free the turn) in a task, so the
        result goes back at once; the next operation still waits for the turn. Not at a stop."""
        if self._tasks is None or self._stopping:
            return False
        self._tasks.create_task(self._release(entry), name=f"release-{entry.bike}")
        return True

    async def _release(self, entry: RadioLock) -> None:
        try:
            await self._keep_or_drop(entry)
        finally:
            entry.mutex.release()

    async def _keep_or_drop(self, entry: RadioLock) -> None:
        """In the lock's turn, after an operation: keep the link for a watch, or let it go."""
        if not self._should_watch(entry):
            await self._drop_link(entry)
            return
        if entry.linked and entry.slot is not None and entry.adapter is not None:
            entry.adapter.slots.repurpose(entry.slot, Priority.WATCH)
        else:
            await self._drop_link(entry)
        self._ensure_watcher(entry)

    def _should_watch(self, entry: RadioLock) -> bool:
        """Keep the lock's link: it is open (a rider may close it by hand), or kept ready."""
        if self._stopping:
            return False
        if entry.ready and entry.standing is not None:
            return True
        return self._settings.watch and entry.lock_state in (
            LockState.UNLOCKED,
            LockState.UNLOCKING,
            LockState.LOCKING,
        )

    # --- watching ------------------------------------------------------------------------

    def _ensure_watcher(self, entry: RadioLock) -> None:
        if (entry.watcher is None or entry.watcher.done()) and self._tasks is not None:
            entry.watcher = self._tasks.create_task(self._watch(entry), name=f"watch-{entry.bike}")

    async def _watch(self, entry: RadioLock) -> None:
        """Keep a link to an open lock and mirror what it indicates, until it is closed; in the
        lock's turn only while nobody else wants it (an operation takes turn and link at once)."""
        while True:
            await self._watch_while_open(entry)
            async with entry.mutex:
                # Decided in the lock's turn: an operation that ended while this task waited for
                # the turn may have left the lock open again, and it found this task alive, so
                # started no other watcher. Leaving now would leave its slot unwatched and never
                # given up to a command.
                if not self._should_watch(entry):
                    await self._drop_link(entry)
                    return

    async def _watch_while_open(self, entry: RadioLock) -> None:
        base = self._settings.watch_retry_s
        backoff = base
        while self._should_watch(entry):
            pause = 0.0
            if not entry.linked and not self._air.up.is_set():
                await self._air.up.wait()  # nothing to reconnect through: no backing off
                continue
            try:
                async with entry.mutex:
                    if entry.waiting or not self._should_watch(entry):
                        continue  # the waiting operation goes first; this loop queues behind it
                    if entry.linked:
                        await self._make_ready(entry)
                        if entry.linked:  # not dropped by a refused authorisation
                            await self._listen(entry)
                    elif await self._rewatch(entry):
                        backoff = base
                    else:
                        pause, backoff = backoff, min(backoff * 2, self._settings.sync_interval_s)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("watch failed", bike=entry.bike)
                pause, backoff = backoff, min(backoff * 2, self._settings.sync_interval_s)
            if pause:
                await asyncio.sleep(pause)

    async def _rewatch(self, entry: RadioLock) -> bool:
        """Connect again for a watch, in the lock's turn; False if not now (no slot, nobody
        hears the lock, a command connecting) or failed."""
        best = self._air.best_now(entry.bike)
        if best is None:
            return False
        adapter, sighting = best
        if adapter.connecting.locked():
            return False  # a command's connection attempt goes first
        slot = adapter.slots.try_acquire(entry.bike, Priority.WATCH)
        if slot is None:
            return False
        await self._drop_link(entry)
        try:
            entry.link = await self._air.connect(entry.bike, adapter, sighting)
        except OperationError as err:
            adapter.slots.release(slot)
            if err.outcome is Outcome.UNREACHABLE:
                self._air.discovery.forget(entry.bike, adapter.name)
            self._record(entry, Result(err.outcome, err.reason))
            self._publish_health(entry)
            log.info("watch could not reconnect", bike=entry.bike, reason=err.reason)
            return False
        except BaseException:
            adapter.slots.release(slot)
            raise
        entry.slot, entry.adapter = slot, adapter
        self._record(entry, Result(Outcome.OK, "watch connected"))
        self._publish_health(entry)
        return True

    async def _make_ready(self, entry: RadioLock) -> None:
        """In the lock's turn, on its link: a lock kept ready is authorised with its provisioned
        credentials once per link, so that a command with the same credentials takes the session
        up (:meth:`_run`). A refusal ends the readiness until the next booking."""
        credentials, link = entry.standing, entry.link
        if not entry.ready or credentials is None or link is None:
            return
        if entry.session_for(link, credentials) is not None:
            return
        conversation = Conversation(
            link, credentials, self._settings.steps, self._clock, _no_progress
        )
        try:
            await conversation.authorise()
        except OperationError as err:
            log.info("lock not kept ready", bike=entry.bike, reason=err.reason)
            if err.outcome is not Outcome.LINK_LOST and err.outcome is not Outcome.TIMED_OUT:
                entry.ready = False  # refused: not again for this booking
            await self._drop_link(entry)
            return
        entry.kept_session = KeptSession(link, credentials, conversation.session)
        log.info("lock kept ready", bike=entry.bike)

    async def _listen(self, entry: RadioLock) -> None:
        """In the lock's turn: mirror the link's unprompted statuses until something else is due."""
        link, slot = entry.link, entry.slot
        assert link is not None
        assert slot is not None
        entry.listening = True
        losses = self._air.losses
        try:
            while self._should_watch(entry) and not entry.waiting:
                chunk = await next_chunk(
                    link.chunks, link.lost, slot.evicted, entry.operation_waits, entry.ready_ended
                )
                if chunk is not None:
                    self._on_watched_chunk(entry, chunk)
                    continue
                if entry.ready_ended.is_set():
                    entry.ready_ended.clear()
                    continue  # the loop's condition says whether the link is still wanted
                if link.lost.is_set():
                    log.info("watched link dropped", bike=entry.bike)
                    self._record(
                        entry,
                        Result(Outcome.LINK_LOST, "watched link dropped"),
                        radio_lost=losses != self._air.losses,
                    )
                    await self._drop_link(entry)
                    self._publish_health(entry)
                elif slot.evicted.is_set() and not entry.waiting:
                    log.info("watch gives its slot to a command", bike=entry.bike)
                    await self._drop_link(entry)
                return
        finally:
            entry.listening = False

    def _drain(self, entry: RadioLock) -> None:
        """Mirror what the lock said since the watch last listened, before an operation talks."""
        if entry.link is None:
            return
        chunks = entry.link.chunks
        while not chunks.empty():
            self._on_watched_chunk(entry, chunks.get_nowait())

    def _on_watched_chunk(self, entry: RadioLock, chunk: Chunk) -> None:
        for observation in entry.heard(chunk, self._clock()):
            self._observe(observation)

    # --- the radio itself ------------------------------------------------------------------

    def _lose_links(self, adapter: RadioAdapter | None) -> None:
        """Every link through ``adapter`` (every link, with None) is gone: whoever holds the
        lock's turn sees it at once and lets it go; a command caught mid-motion ends LINK_LOST
        and its lock is read again once the radio is back (``recheck``), never moved blindly."""
        for entry in self._locks.values():
            if entry.link is not None and (adapter is None or entry.adapter is adapter):
                entry.link.lost.set()
                entry.recheck = True

    # --- syncing and health --------------------------------------------------------------

    async def _sync_loop(self) -> None:
        """Read every lock that is not watched once per ``sync_interval_s``, one at a time,
        counting from the driver's start for a lock not tried since (the first read is the
        service's); a lock left in doubt (``recheck``), or a read that found no slot, at the next
        tick."""
        interval = self._settings.sync_interval_s
        tick = min(interval / 4, 5.0)
        started = self._clock()
        timeout = self._settings.connect_timeout_s + 3 * self._settings.steps.answer_s
        while True:
            await asyncio.sleep(tick)
            await self._air.up.wait()  # a read while the radio is away says nothing
            for entry in self._locks.values():
                now = self._clock()
                since = now - (entry.last_attempt or started)
                due = entry.recheck or since.total_seconds() >= interval
                if not due or entry.linked or entry.mutex.locked() or entry.waiting:
                    continue
                entry.recheck = False  # one read settles the doubt, whatever it can read
                try:
                    await self.read(entry.bike, Cause.SYNC, timeout)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("sync failed", bike=entry.bike)

    async def _health_loop(self) -> None:
        """Health that changes by time alone (DEAD, LONG_DEAD), said when it falls due: the
        loop sleeps until the first lock's next such change (each attempt's own change is said
        where it is recorded, and a miss wakes the loop to look again), so an idle station does
        not look at every lock every second. At most ``HEALTH_LOOK_S`` apart all the same (a
        wall clock step moves what is due)."""
        while True:
            now = self._clock()
            for entry in self._locks.values():
                self._publish_health(entry)
            due = [
                change
                for entry in self._locks.values()
                if (change := entry.health.next_change(now)) is not None
            ]
            wait = (min(due) - now).total_seconds() if due else HEALTH_LOOK_S
            self._health_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(max(wait, 0.05), HEALTH_LOOK_S)):
                    await self._health_wake.wait()

    def _publish_health(self, entry: RadioLock) -> None:
        if (change := entry.health_change(self._clock())) is not None:
            self._observe(change)

    def _observe(self, observation: Observation) -> None:
        self._observed.put_nowait(observation)


async def _no_progress(_progress: object) -> None:
    return None
