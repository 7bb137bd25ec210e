"""The daemon: the one place that knows every layer and wires them into a running station.

``lockgate run`` calls :func:`run`. It opens the store, starts the BLE driver, the command engine
and the MQTT link under one owner, and follows docs/station.md's start and stop:

- start: the store is opened, the driver starts and its observations flow into the engine, the
  commands the last run left are queued to be settled (recovery, before any new request), the link
  is started (it connects on its own: every lock document, ``commands``, then status online) and
  given up to ``ONLINE_WAIT_S`` to be up (a broker that refuses is not waited for), then READY.
  The first read of every lock goes on behind READY, a few at a time so that commands keep their
  precedence, and STATUS counts the locks still to be read. (READY waits for no read: one
  connection attempt per adapter at a time makes every read one connect time per lock, past
  systemd's start timeout for a large station; docs/station.md, "Running".)
- running: the driver's observations go to the engine, the engine's outbox to the link, the link's
  requests to the engine; WATCHDOG from the event loop, STATUS with the link's state;
- stop (SIGTERM, SIGINT): STOPPING, no new command starts, running ones get ``STOP_GRACE_S``, the
  outbox is flushed as far as the broker allows, status offline, exit 0.

A failure an operator must mend (the store, the adapter, a key of signed commands) ends the process
at start with its exit code (:class:`~lockgate.service.exits.Exit`) and one log line naming the
cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.metadata
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Literal

import structlog

from lockgate.ble.adapters import AdapterStatus
from lockgate.ble.driver import Driver
from lockgate.ble.errors import AdapterError
from lockgate.clock import StationClock, sync_source, utc_now
from lockgate.config import Config
from lockgate.contract import topics
from lockgate.contract.documents import (
    AdapterDocument,
    BleStatus,
    ClockStatus,
    RadioEvent,
    SealingKey,
    StationStatus,
)
from lockgate.contract.envelope import CommandGate, public_jwk
from lockgate.contract.home_assistant import discovery_documents
from lockgate.contract.stamps import stamp
from lockgate.engine import Engine
from lockgate.model import Cause, RadioState, StationState
from lockgate.mqtt import Link, LinkState
from lockgate.service.exits import Exit
from lockgate.service.notify import Notifier, feed_watchdog, watchdog_interval
from lockgate.service.settings import (
    command_gate,
    identities,
    link_settings,
    radio_settings,
    station,
)
from lockgate.store import (
    Change,
    Correlation,
    Outbox,
    Store,
    StoreError,
    load_station_key,
)
from lockgate.store.command_keys import CommandKeyError

log = structlog.get_logger("lockgate.service")

STOP_GRACE_S = 10.0
"""What running commands get to finish after SIGTERM (docs/station.md, Stop)."""
FLUSH_TIMEOUT_S = 3.0
"""How long the outbox is flushed at stop before the station says offline regardless."""
STATUS_INTERVAL_S = 5.0
"""How often systemd's STATUS line and the status document's ``outbox_depth`` are refreshed."""
ONLINE_WAIT_S = 3.0
"""READY waits this long at most for the link to be up; a broker that refuses is not waited for."""
_LINK_POLL_S = 0.05
FIRST_READ_MARGIN_S = 15.0
"""The first read of a lock may take its connection attempts and this much for the session."""
CLOCK_CHECK_S = 1.0
"""How often the wall clock is compared with the monotonic one, and its synchronisation read."""


@functools.cache
def version() -> str:
    """The installed package's version: read once (importlib.metadata scans the installed
    distributions, some milliseconds each time, and the status document is written often)."""
    try:
        return importlib.metadata.version("lockgate")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


class Daemon:
    """One run of the station gateway, from start to exit code."""

    def __init__(self, config: Config, *, notifier: Notifier, fresh: bool = False) -> None:
        self._config = config
        self._fresh = fresh
        self._notifier = notifier
        self._stop = asyncio.Event()
        self._station = station(config, uuid.uuid4().hex)
        self._started = utc_now()
        self._outbox_depth = 0
        self._published_depth = 0  # the depth the last status document was written with
        self._driver: Driver | None = None
        self._gate = CommandGate()
        self._sealing_key: SealingKey | None = None  # the public half, for the status document
        self._unread = len(config.locks)  # locks whose first read has not ended yet
        self._exit = Exit.OK
        self._radio_down_at: float | None = None  # loop time since when no adapter is up
        self._clock = StationClock(sync_source(config.clock.source, config.clock.synchronized_file))

    @property
    def boot_id(self) -> str:
        return self._station.boot_id

    def request_stop(self) -> None:
        """Begin a clean stop (what SIGTERM and SIGINT do)."""
        if not self._stop.is_set():
            log.info("stop requested")
        self._stop.set()

    async def run(self) -> Exit:
        config = self._config
        log.info(
            "starting",
            version=version(),
            boot_id=self.boot_id,
            locks=len(config.locks),
            broker=_without_credentials(config.mqtt.url),
        )
        self._log_clock()
        if config.ble.dbus_address:
            # bleak finds BlueZ on the system bus; a simulator serves its own.
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = config.ble.dbus_address
        try:
            key = load_station_key(config.store.key_file)
        except StoreError as err:  # StoreKeyError: unreadable, or readable by others
            return _refuse(Exit.IO_ERROR, "station key unusable", error=str(err))
        try:
            self._gate = command_gate(config.commands)
        except CommandKeyError as err:
            # The reason names the file and what is wrong with it, never a key's content.
            return _refuse(Exit.KEYS, "command keys unusable", error=str(err))
        if self._gate.station_key is not None:
            self._sealing_key = SealingKey.model_validate(public_jwk(self._gate.station_key))
        if self._gate.require_signed:
            log.info("signed commands only", backend_keys=len(self._gate.backend_keys))
        else:
            log.warning(
                "open: unsigned commands accepted", backend_keys=len(self._gate.backend_keys)
            )
        async with contextlib.AsyncExitStack() as stack:
            try:
                store = await stack.enter_async_context(
                    Store(
                        config.store.path,
                        station=self._station,
                        key=key,
                        max_outbox=config.store.max_outbox,
                        max_refusals=config.store.max_refusals,
                        max_size_bytes=_bytes(config.store.max_size_mb),
                        fresh=self._fresh,
                        clock_synced=self._clock.is_synced,
                    )
                )
            except StoreError as err:  # unusable, a schema it does not know, a disk fault
                path = str(config.store.path)
                return _refuse(Exit.IO_ERROR, "store unusable", path=path, error=str(err))
            try:
                driver = await stack.enter_async_context(
                    Driver(identities(config), radio_settings(config.ble))
                )
            except AdapterError as err:
                name = ", ".join(config.ble.adapter_keys)
                return _refuse(Exit.UNAVAILABLE, "adapter unusable", adapter=name, error=str(err))
            self._driver = driver
            engine = await stack.enter_async_context(
                Engine(
                    store=store,
                    radio=driver,
                    station=self._station,
                    gate=self._gate,
                    clock=self._clock.now,
                    mono=self._clock.mono,
                    clock_synced=self._clock.is_synced,
                    refusal_window=timedelta(seconds=config.store.refusal_window_s),
                )
            )
            await self._serve(driver, engine, store)
        log.info("stopped", boot_id=self.boot_id, exit_code=int(self._exit))
        return self._exit

    async def _serve(self, driver: Driver, engine: Engine, store: Store) -> None:
        outbox = Outbox(store)

        async def intake(payload: bytes, correlation: Correlation) -> object:
            return await engine.submit(payload, correlation=correlation)

        link = Link(link_settings(self._config), outbox=outbox, intake=intake, status=self._status)
        async with asyncio.TaskGroup() as group:
            # The driver hands out observations in order and waits for them to be taken before
            # its next operation: the engine takes them from the first moment on.
            background = [
                group.create_task(self._mirror(driver, engine), name="lockgate.service.mirror"),
                group.create_task(
                    feed_watchdog(self._notifier, watchdog_interval()),
                    name="lockgate.service.watchdog",
                ),
                group.create_task(self._radio_deadline(driver), name="lockgate.service.radio"),
                group.create_task(self._watch_clock(engine, outbox), name="lockgate.service.clock"),
            ]
            await engine.recover()  # the engine logs what it settled, resumed and timed out
            self._outbox_depth = await outbox.depth()
            await self._announce(store)
            if self._config.home_assistant.enabled and self._config.home_assistant.commands:
                background.append(
                    group.create_task(
                        self._follow_provisioning(store), name="lockgate.service.discovery"
                    )
                )
            async with link:
                first_reads = group.create_task(
                    self._first_reads(driver, link), name="lockgate.service.first-reads"
                )
                background += [
                    first_reads,
                    group.create_task(self._report(outbox, link), name="lockgate.service.status"),
                    group.create_task(
                        self._follow_radio(driver, store, link), name="lockgate.service.turns"
                    ),
                ]
                await _online_or_away(link)
                self._notifier.ready(self._status_line(link.state))
                log.info("ready", boot_id=self.boot_id, locks_to_read=self._unread)
                await self._stop.wait()
                # No first read starts or goes on once stopping: the next start reads again.
                first_reads.cancel()
                await asyncio.gather(first_reads, return_exceptions=True)
                self._notifier.stopping()
                log.info("stopping")
                await engine.stop(STOP_GRACE_S)
                await link.stop(flush_timeout_s=FLUSH_TIMEOUT_S)
                with contextlib.suppress(StoreError):
                    await outbox.close()  # what the broker acknowledged, removed before closing
            for task in background:
                task.cancel()

    async def _announce(self, store: Store) -> None:
        """Home Assistant's discovery documents, retained (the link publishes them with the lock
        documents, before ``online``); those of locks no longer configured, or of a discovery
        turned off, emptied (which removes them from the broker and from Home Assistant)."""
        settings = self._config.home_assistant
        documents: dict[str, bytes] = {}
        if settings.enabled:
            commanded = await store.provisioned_bikes() if settings.commands else frozenset()
            documents = discovery_documents(
                prefix=settings.prefix,
                station=self._station.id,
                station_prefix=link_settings(self._config).prefix,
                locks=self._station.locks,
                commanded=commanded,
            )
        for topic in await store.retained_topics():
            if topic.startswith(topics.OUTSIDE) and topic not in documents:
                documents[topic] = b""
        for topic, payload in documents.items():
            await store.set_retained(topic, payload)

    async def _follow_provisioning(self, store: Store) -> None:
        """With Home Assistant's commands allowed, a lock is a lock entity only while its
        credentials are provisioned: its documents change with a ``provision``."""
        changed = asyncio.Event()
        store.add_listener(changed.set)
        known = await store.provisioned_bikes()
        while True:
            await changed.wait()
            changed.clear()
            try:
                now = await store.provisioned_bikes()
                if now != known:
                    await self._announce(store)
                    known = now
            except StoreError as err:
                log.warning("discovery documents not updated", error=str(err))

    async def _first_reads(self, driver: Driver, link: Link) -> None:
        """Every lock read once (cause ``startup``), behind READY.

        At most :func:`first_reads_at_once` at a time: with one connection attempt per adapter at
        a time more would not read faster, and each would be one more connect a command could
        find queued before its own (the driver serves a command and a first read in arrival
        order). A command for a lock not read yet simply runs.
        """
        ble = self._config.ble
        timeout_s = ble.connect_timeout_s * ble.connect_attempts + FIRST_READ_MARGIN_S
        bikes = iter(driver.bikes)

        async def reader() -> None:
            for bike in bikes:  # one iterator shared by the readers: each lock is read once
                await _first_read(driver, bike, timeout_s)
                self._unread -= 1
                if not self._unread:
                    log.info("first reads done", locks=len(driver.bikes))
                self._notifier.status(self._status_line(link.state))

        async with asyncio.TaskGroup() as readers:
            for number in range(first_reads_at_once(ble.connection_slots)):
                readers.create_task(reader(), name=f"lockgate.service.first-read-{number}")

    async def _mirror(self, driver: Driver, engine: Engine) -> None:
        """What the radio sees between commands becomes the engine's, and so the backend's."""
        async for observation in driver.observations():
            try:
                await engine.observe(observation)
            except StoreError as err:
                # The disk refused: this observation is lost, the daemon is not. The next read or
                # watch sees the lock again.
                _lost(observation.bike, err)

    async def _follow_radio(self, driver: Driver, store: Store, link: Link) -> None:
        """Each adapter going down or up: an event, the retained status, systemd's STATUS."""
        loop = asyncio.get_running_loop()
        down_at: dict[str, float] = {}
        async for turn in driver.radio_turns():
            now = loop.time()
            if turn.up:
                went = down_at.pop(turn.adapter, None)
                down_s = None if went is None else round(now - went, 3)
            else:
                down_at.setdefault(turn.adapter, now)
                down_s = None
            if driver.radio_up:
                if self._radio_down_at is not None:
                    log.warning("radio back", down_s=round(now - self._radio_down_at, 3))
                self._radio_down_at = None
            elif self._radio_down_at is None:
                self._radio_down_at = now
                log.warning(
                    "radio down: commands wait for it",
                    reason=turn.reason,
                    exit_after_s=self._config.ble.radio_lost_exit_s,
                )
            event = RadioEvent(
                **stamp(self._station, turn.since, bike=None),
                adapter=turn.adapter,
                radio_state=RadioState.UP if turn.up else RadioState.DOWN,
                reason=turn.reason,
                down_s=down_s,
            )
            try:
                await store.apply(Change(events=(event,)), at=utc_now())
                if link.state.connected:
                    await store.set_retained("status", self._status("online"))
            except StoreError as err:
                log.error(  # noqa: TRY400 - the store's reason is the whole story
                    "radio event not stored", adapter=turn.adapter, error=str(err)
                )
            self._notifier.status(self._status_line(link.state))

    async def _radio_deadline(self, driver: Driver) -> None:
        """No adapter up for ``radio_lost_exit_s``: stop, and exit for systemd to restart us
        (a fresh process, a fresh bleak, a fresh look at BlueZ)."""
        limit = self._config.ble.radio_lost_exit_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            down_at = self._radio_down_at
            if down_at is None or driver.radio_up or loop.time() - down_at < limit:
                continue
            log.error(
                "radio lost for too long: exiting for a restart",
                down_s=round(loop.time() - down_at, 1),
                exit_code=int(Exit.UNAVAILABLE),
            )
            self._exit = Exit.UNAVAILABLE
            self.request_stop()
            return

    def _log_clock(self) -> None:
        clock = self._clock
        if clock.synced:
            log.info("clock synchronised", source=clock.source.name)
        else:
            log.warning(
                "clock not synchronised: requests' timeout_at not judged, default deadlines apply",
                source=clock.source.name,
            )

    async def _watch_clock(self, engine: Engine, outbox: Outbox) -> None:
        """Every :data:`CLOCK_CHECK_S`: a step of the wall clock is logged, published as a
        ``clock`` event and makes the engine look at its deadlines again; a change of its
        synchronisation is logged and published in the status document."""
        while True:
            await asyncio.sleep(CLOCK_CHECK_S)
            change = self._clock.check()
            if change.step_s is not None:
                log.warning("clock stepped", step_s=round(change.step_s, 3))
                await engine.clock_stepped(change.step_s)
            if change.synced_changed:
                self._log_clock()
            if (change.synced_changed or change.step_s is not None) and not self._stop.is_set():
                with contextlib.suppress(StoreError):
                    await outbox.set_retained("status", self._status("online"))

    async def _report(self, outbox: Outbox, link: Link) -> None:
        """Keep systemd's STATUS and the retained status document's depth current."""
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            with contextlib.suppress(StoreError):
                self._outbox_depth = await outbox.depth()
                if link.state.connected and self._outbox_depth != self._published_depth:
                    # A new generation of the retained status: the link publishes the newest.
                    await outbox.set_retained("status", self._status("online"))
            self._notifier.status(self._status_line(link.state))

    def _status_line(self, state: LinkState) -> str:
        parts = [f"broker {'connected' if state.connected else 'disconnected'}"]
        if self._unread:
            total = len(self._config.locks)
            parts.append(f"{total - self._unread}/{total} locks read")
        parts.append(f"backlog {state.backlog}")
        if state.oldest_unsent_age_s is not None:
            parts.append(f"oldest {state.oldest_unsent_age_s:.0f} s")
        if self._driver is not None:
            driver = self._driver
            if not driver.radio_up:
                parts.append("radio DOWN")
            parts.append(f"links {driver.links_in_use}/{driver.link_capacity}")
        if state.last_error and not state.connected:
            parts.append(f"last error: {state.last_error}")
        return ", ".join(parts)

    def _ble_status(self) -> BleStatus:
        ble = self._config.ble
        driver = self._driver
        if driver is None:
            return BleStatus(
                adapter=ble.adapter_keys[0], slots=ble.connection_slots, in_use=0, since=None
            )
        adapters = driver.radio_status()
        up = [a for a in adapters if a.up]
        down = [a for a in adapters if not a.up]
        return BleStatus(
            adapter=ble.adapter_keys[0],
            slots=ble.connection_slots,
            in_use=driver.links_in_use,
            state=RadioState.UP if up else RadioState.DOWN,
            # Up since the first adapter came up; down since the last one went.
            since=min(a.since for a in up) if up else max((a.since for a in down), default=None),
            reason=None if up else "; ".join(a.reason or "" for a in down) or None,
            adapters=tuple(_adapter_document(a) for a in adapters),
        )

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        """The retained ``status`` document (the will carries the offline one)."""
        self._published_depth = self._outbox_depth
        return StationStatus(
            station=self._station.id,
            state=StationState(state),
            boot_id=self.boot_id,
            version=version(),
            since=self._started,
            locks=tuple(lock.bike for lock in self._station.locks),
            outbox_depth=self._outbox_depth,
            ble=self._ble_status(),
            clock=ClockStatus(
                synced=self._clock.synced,
                since=self._clock.since,
                source=self._clock.source.name,
            ),
            sealing_key=self._sealing_key,
        ).to_bytes()


def _adapter_document(status: AdapterStatus) -> AdapterDocument:
    return AdapterDocument(
        adapter=status.adapter,
        name=status.name,
        address=status.address,
        state=RadioState.UP if status.up else RadioState.DOWN,
        since=status.since,
        reason=status.reason,
        slots=status.slots,
        in_use=status.in_use,
    )


async def run(config: Config, *, notifier: Notifier | None = None, fresh: bool = False) -> Exit:
    """Run the station until SIGTERM or SIGINT; the exit code says how it ended. ``fresh``
    starts on a new store when the old one is unusable (its files are set aside, not deleted)."""
    daemon = Daemon(config, notifier=notifier or Notifier.from_environment(), fresh=fresh)
    structlog.contextvars.bind_contextvars(station=config.station.id)
    with _on_signals(daemon.request_stop):
        return await daemon.run()


async def _online_or_away(link: Link) -> None:
    """Until the link is up (online, subscribed to ``commands``) or its first attempt failed, at
    most :data:`ONLINE_WAIT_S`: a backend that sees READY's station online can send at once, and a
    broker that is away does not hold the start back."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(ONLINE_WAIT_S):
            while not (link.state.connected or link.state.last_error):
                with contextlib.suppress(TimeoutError):
                    await link.wait_connected(_LINK_POLL_S)  # the link tells no failure: looked at


def first_reads_at_once(connection_slots: int) -> int:
    """How many first reads run at once: two (one connecting while the other talks to its
    lock), fewer so that one slot stays free for a command."""
    return max(1, min(2, connection_slots - 1))


async def _first_read(driver: Driver, bike: str, timeout_s: float) -> None:
    try:
        result = await driver.read(bike, Cause.STARTUP, timeout_s)
    except Exception:  # the driver's reads do not raise: a bug, logged whole; the others go on
        log.exception("first read failed", bike=bike)
        return
    if not result.ok:
        log.warning("first read failed", bike=bike, outcome=str(result.outcome))


def _refuse(code: Exit, event: str, **fields: str) -> Exit:
    """A start that cannot go on: one error line naming the cause, then the exit code."""
    log.error(event, exit_code=int(code), **fields)
    return code


def _lost(bike: str, error: StoreError) -> None:
    log.error("observation not stored", bike=bike, error=str(error))


def _bytes(megabytes: int | None) -> int | None:
    return None if megabytes is None else megabytes * 2**20


def _without_credentials(url: str) -> str:
    """The broker URL with any user and password left out, for the log."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


@contextlib.contextmanager
def _on_signals(handler: Callable[[], None]) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, handler)
    try:
        yield
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)
