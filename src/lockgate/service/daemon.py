"""The daemon: the one place that knows every layer and wires them into a running station.

``lockgate run`` calls :func:`run`. It opens the store, starts the BLE driver, the command engine
and the MQTT link under one owner, and follows product.md's start and stop:

- start: the store is opened and recovered (commands the last run left are settled first), the
  link connects (status online, every lock document), every lock is read once, then READY;
- running: the driver's observations flow into the engine, the engine's outbox into the link, the
  link's requests into the engine; WATCHDOG from the event loop, STATUS with the link's state;
- stop (SIGTERM, SIGINT): STOPPING, no new command starts, running ones get ``STOP_GRACE_S``, the
  outbox is flushed as far as the broker allows, status offline, exit 0.

Failures at start that an operator must mend end the process with a documented exit code
(:class:`~lockgate.service.exits.Exit`) and one log line naming the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import signal
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

from lockgate.ble.discovery import LockIdentity
from lockgate.ble.driver import Driver
from lockgate.ble.errors import AdapterError
from lockgate.clock import utc_now
from lockgate.config import Config
from lockgate.contract.documents import BleStatus, StationStatus
from lockgate.contract.station import RegisteredLock, Station
from lockgate.engine import Engine
from lockgate.model import Cause, StationState
from lockgate.mqtt import Link, LinkSettings, LinkState
from lockgate.radio import Observation
from lockgate.service.exits import Exit
from lockgate.service.notify import Notifier, watchdog
from lockgate.service.settings import link_settings, radio_settings
from lockgate.store import Correlation, Outbox, Store, StoreError, StoreKeyError, load_station_key

log = structlog.get_logger("lockgate.service")

STOP_GRACE_S = 10.0
"""What running commands get to finish after SIGTERM (product.md, Stop)."""
FLUSH_TIMEOUT_S = 3.0
"""How long the outbox is flushed at stop before the station goes offline regardless."""
STATUS_INTERVAL_S = 5.0
"""How often systemd's STATUS line and the status document's outbox depth are refreshed."""


def version() -> str:
    try:
        return importlib.metadata.version("lockgate")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(slots=True)
class _Gauges:
    """What the status document and systemd's STATUS line show; refreshed periodically."""

    outbox_depth: int = 0
    ready: bool = False


class Daemon:
    """One run of the station gateway, from start to exit code."""

    def __init__(self, config: Config, *, notifier: Notifier) -> None:
        self._config = config
        self._notifier = notifier
        self._stop = asyncio.Event()
        self._gauges = _Gauges()
        self._started = utc_now()
        self._station = Station(
            config.station.id,
            config.station.latitude,
            config.station.longitude,
            tuple(RegisteredLock(lock.bike, lock.name, lock.guid, lock.profile) for lock in config.locks),
            uuid.uuid4().hex,
        )
        self._driver: Driver | None = None
        self._link: Link | None = None

    def request_stop(self) -> None:
        """Begin a clean stop (what SIGTERM and SIGINT do)."""
        self._stop.set()

    async def run(self) -> Exit:
        config = self._config
        structlog.contextvars.bind_contextvars(station=config.station.id)
        log.info(
            "starting",
            version=version(),
            boot_id=self._station.boot_id,
            locks=len(config.locks),
            broker=_safe_url(config.mqtt.url),
        )
        if config.ble.dbus_address:
            # bleak finds BlueZ on the system bus; the simulator serves its own.
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = config.ble.dbus_address
        try:
            key = load_station_key(config.store.key_file)
        except StoreKeyError as err:
            log.error("station key unusable", error=str(err))
            return Exit.STORE
        async with contextlib.AsyncExitStack() as stack:
            try:
                store = await stack.enter_async_context(
                    Store(
                        config.store.path,
                        station=self._station,
                        key=key,
                        max_outbox=config.store.max_outbox,
                    )
                )
            except StoreError as err:
                log.error("store unusable", path=str(config.store.path), error=str(err))
                return Exit.STORE
            try:
                driver = await stack.enter_async_context(
                    Driver(_identities(config), radio_settings(config.ble))
                )
            except AdapterError as err:
                log.error("bluetooth adapter unusable", adapter=config.ble.adapter, error=str(err))
                return Exit.ADAPTER
            self._driver = driver
            engine = await stack.enter_async_context(
                Engine(store=store, radio=driver, station=self._station)
            )
            recovery = await engine.recover()
            log.info(
                "recovered",
                settled=recovery.settled,
                resumed=recovery.resumed,
                timed_out=recovery.timed_out,
            )
            outbox = Outbox(store)
            self._gauges.outbox_depth = await outbox.depth()

            async def intake(payload: bytes, correlation: Correlation) -> object:
                return await engine.submit(payload, correlation=correlation)

            await self._serve(driver, engine, outbox, intake)
        log.info("stopped")
        return Exit.OK

    async def _serve(
        self,
        driver: Driver,
        engine: Engine,
        outbox: Outbox,
        intake: _Intake,
    ) -> None:
        link = Link(
            link_settings(self._config),
            outbox=outbox,
            intake=intake,
            status=self._status_document,
        )
        self._link = link
        async with link, asyncio.TaskGroup() as group:
            background = [
                group.create_task(self._pump(driver, engine), name="lockgate.service.observations"),
                group.create_task(watchdog(self._notifier), name="lockgate.service.watchdog"),
                group.create_task(self._refresh(outbox, link), name="lockgate.service.status"),
            ]
            with _signals(self.request_stop):
                await self._first_reads(driver)
                if not self._stop.is_set():
                    self._gauges.ready = True
                    self._notifier.ready(self._status_line(link.state))
                    log.info("ready")
                await self._stop.wait()
            log.info("stopping")
            self._notifier.stopping()
            await engine.stop(STOP_GRACE_S)
            await link.stop(flush_timeout_s=FLUSH_TIMEOUT_S)
            for task in background:
                task.cancel()

    async def _first_reads(self, driver: Driver) -> None:
        """Every lock read once (cause ``startup``), all at once: the driver keeps to its slots."""
        ble = self._config.ble
        timeout_s = ble.connect_timeout_s * ble.connect_attempts + 15.0
        reads = [driver.read(bike, Cause.STARTUP, timeout_s) for bike in driver.bikes]
        reading = asyncio.gather(*reads, return_exceptions=True)
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({reading, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not reading.done():
                reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                results = await reading
        if reading.cancelled():
            return
        for bike, result in zip(driver.bikes, results, strict=True):
            if isinstance(result, BaseException):
                log.error("first read failed", bike=bike, error=repr(result))
            else:
                log.info("first read", bike=bike, outcome=str(result.outcome))

    async def _pump(self, driver: Driver, engine: Engine) -> None:
        """What the radio sees between commands becomes the engine's (and the backend's)."""
        async for observation in driver.observations():
            await _observe(engine, observation)

    async def _refresh(self, outbox: Outbox, link: Link) -> None:
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            with contextlib.suppress(StoreError):
                self._gauges.outbox_depth = await outbox.depth()
            self._notifier.status(self._status_line(link.state))

    def _status_line(self, state: LinkState) -> str:
        broker = "connected" if state.connected else "disconnected"
        line = f"broker {broker}, backlog {state.backlog}"
        if state.oldest_unsent_age_s is not None:
            line += f" (oldest {state.oldest_unsent_age_s:.0f} s)"
        if self._driver is not None:
            line += f", links {self._driver.slots.in_use}/{self._driver.slots.capacity}"
        if state.last_error and not state.connected:
            line += f", last error: {state.last_error}"
        return line

    def _status_document(self, state: Literal["online", "offline"]) -> bytes:
        driver = self._driver
        return StationStatus(
            station=self._station.id,
            state=StationState(state),
            boot_id=self._station.boot_id,
            version=version(),
            since=self._started,
            locks=tuple(lock.bike for lock in self._station.locks),
            outbox_depth=self._gauges.outbox_depth,
            ble=BleStatus(
                adapter=self._config.ble.adapter,
                slots=self._config.ble.connection_slots,
                in_use=driver.slots.in_use if driver is not None else 0,
            ),
        ).to_bytes()


async def _observe(engine: Engine, observation: Observation) -> None:
    try:
        await engine.observe(observation)
    except StoreError as err:
        # The disk refused: the observation is lost, the daemon is not. The next read or watch
        # sees the lock again.
        log.error("observation not stored", bike=observation.bike, error=str(err))


async def run(config: Config, *, notifier: Notifier | None = None) -> Exit:
    """Run the station until SIGTERM or SIGINT; the exit code says how it ended."""
    daemon = Daemon(config, notifier=notifier or Notifier.from_environment())
    return await daemon.run()


def _identities(config: Config) -> list[LockIdentity]:
    return [LockIdentity(lock.bike, lock.name, lock.address, lock.profile) for lock in config.locks]


def _safe_url(url: str) -> str:
    """The broker URL without any user or password in it."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


@contextlib.contextmanager
def _signals(handler: _Handler) -> AsyncIterator[None]:  # type: ignore[misc]
    loop = asyncio.get_running_loop()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, handler)
    try:
        yield
    finally:
        for number in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(number)


_ = datetime
