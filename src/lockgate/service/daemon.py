"""The daemon: the one place that knows every layer and wires them into a running station.

``lockgate run`` calls :func:`run`. It opens the store, starts the BLE driver, the command engine
and the MQTT link under one owner, and follows product.md's start and stop:

- start: the store is opened, the driver starts and its observations flow into the engine, the
  commands the last run left are settled (recovery, before any new request), the link connects
  (status online, every lock document, then ``commands``), every lock is read once, then READY;
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
import importlib.metadata
import os
import signal
import uuid
from collections.abc import Callable, Coroutine, Iterator
from datetime import timedelta
from typing import Any, Literal

import structlog

from lockgate.ble.driver import Driver
from lockgate.ble.errors import AdapterError
from lockgate.clock import utc_now
from lockgate.config import Config
from lockgate.contract.documents import BleStatus, SealingKey, StationStatus
from lockgate.contract.envelope import CommandGate, public_jwk
from lockgate.engine import Engine
from lockgate.model import Cause, StationState
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
    Correlation,
    Outbox,
    SchemaError,
    Store,
    StoreError,
    StoreKeyError,
    load_station_key,
)
from lockgate.store.command_keys import CommandKeyError

log = structlog.get_logger("lockgate.service")

STOP_GRACE_S = 10.0
"""What running commands get to finish after SIGTERM (product.md, Stop)."""
FLUSH_TIMEOUT_S = 3.0
"""How long the outbox is flushed at stop before the station says offline regardless."""
STATUS_INTERVAL_S = 5.0
"""How often systemd's STATUS line and the status document's ``outbox_depth`` are refreshed."""
FIRST_READ_MARGIN_S = 15.0
"""The first read of a lock may take its connection attempts and this much for the session."""


def version() -> str:
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
        if config.ble.dbus_address:
            # bleak finds BlueZ on the system bus; a simulator serves its own.
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = config.ble.dbus_address
        try:
            key = load_station_key(config.store.key_file)
        except StoreKeyError as err:
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
                    )
                )
            except (StoreError, SchemaError) as err:
                path = str(config.store.path)
                return _refuse(Exit.IO_ERROR, "store unusable", path=path, error=str(err))
            try:
                driver = await stack.enter_async_context(
                    Driver(identities(config), radio_settings(config.ble))
                )
            except AdapterError as err:
                name = config.ble.adapter
                return _refuse(Exit.UNAVAILABLE, "adapter unusable", adapter=name, error=str(err))
            self._driver = driver
            engine = await stack.enter_async_context(
                Engine(
                    store=store,
                    radio=driver,
                    station=self._station,
                    gate=self._gate,
                    refusal_window=timedelta(seconds=config.store.refusal_window_s),
                )
            )
            await self._serve(driver, engine, Outbox(store))
        log.info("stopped", boot_id=self.boot_id)
        return Exit.OK

    async def _serve(self, driver: Driver, engine: Engine, outbox: Outbox) -> None:
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
            ]
            await engine.recover()  # the engine logs what it settled, resumed and timed out
            self._outbox_depth = await outbox.depth()
            async with link:
                background.append(
                    group.create_task(self._report(outbox, link), name="lockgate.service.status")
                )
                await self._until_stopped(self._first_reads(driver))
                if not self._stop.is_set():
                    self._notifier.ready(self._status_line(link.state))
                    log.info("ready", boot_id=self.boot_id)
                    await self._stop.wait()
                self._notifier.stopping()
                log.info("stopping")
                await engine.stop(STOP_GRACE_S)
                await link.stop(flush_timeout_s=FLUSH_TIMEOUT_S)
            for task in background:
                task.cancel()

    async def _until_stopped(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` until it ends or a stop is requested, whichever comes first."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, stopped):
                pending.cancel()
            await asyncio.gather(task, stopped, return_exceptions=True)

    async def _first_reads(self, driver: Driver) -> None:
        """Every lock read once (cause ``startup``), all at once: the driver keeps to its slots."""
        ble = self._config.ble
        timeout_s = ble.connect_timeout_s * ble.connect_attempts + FIRST_READ_MARGIN_S
        bikes = driver.bikes
        results = await asyncio.gather(
            *(driver.read(bike, Cause.STARTUP, timeout_s) for bike in bikes),
            return_exceptions=True,
        )
        for bike, result in zip(bikes, results, strict=True):
            if isinstance(result, BaseException):
                log.error("first read failed", bike=bike, error=f"{type(result).__name__}")
            elif not result.ok:
                log.warning("first read failed", bike=bike, outcome=str(result.outcome))

    async def _mirror(self, driver: Driver, engine: Engine) -> None:
        """What the radio sees between commands becomes the engine's, and so the backend's."""
        async for observation in driver.observations():
            try:
                await engine.observe(observation)
            except StoreError as err:
                # The disk refused: this observation is lost, the daemon is not. The next read or
                # watch sees the lock again.
                _lost(observation.bike, err)

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
        parts = [
            f"broker {'connected' if state.connected else 'disconnected'}",
            f"backlog {state.backlog}",
        ]
        if state.oldest_unsent_age_s is not None:
            parts.append(f"oldest {state.oldest_unsent_age_s:.0f} s")
        if self._driver is not None:
            parts.append(f"links {self._driver.slots.in_use}/{self._driver.slots.capacity}")
        if state.last_error and not state.connected:
            parts.append(f"last error: {state.last_error}")
        return ", ".join(parts)

    def _status(self, state: Literal["online", "offline"]) -> bytes:
        """The retained ``status`` document (the will carries the offline one)."""
        driver = self._driver
        self._published_depth = self._outbox_depth
        return StationStatus(
            station=self._station.id,
            state=StationState(state),
            boot_id=self.boot_id,
            version=version(),
            since=self._started,
            locks=tuple(lock.bike for lock in self._station.locks),
            outbox_depth=self._outbox_depth,
            ble=BleStatus(
                adapter=self._config.ble.adapter,
                slots=self._config.ble.connection_slots,
                in_use=driver.slots.in_use if driver is not None else 0,
            ),
            sealing_key=self._sealing_key,
        ).to_bytes()


async def run(config: Config, *, notifier: Notifier | None = None, fresh: bool = False) -> Exit:
    """Run the station until SIGTERM or SIGINT; the exit code says how it ended. ``fresh``
    starts on a new store when the old one is unusable (its files are set aside, not deleted)."""
    daemon = Daemon(config, notifier=notifier or Notifier.from_environment(), fresh=fresh)
    structlog.contextvars.bind_contextvars(station=config.station.id)
    with _on_signals(daemon.request_stop):
        return await daemon.run()


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
