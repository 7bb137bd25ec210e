"""The station's radio as a whole: BlueZ, its adapters and their scans, and which adapter an
operation goes through.

:class:`Airwaves` joins :class:`~lockgate.ble.bluez.BluezWatch` (is bluetoothd there and answering,
which adapters, powered or not), :class:`~lockgate.ble.adapters.Adapters` (the configured ones,
up or down, their slots) and :class:`~lockgate.ble.discovery.Discovery` (who hears which lock).
When an adapter goes it tells the driver (``on_lost``: the links through it are gone), forgets
what it heard and stops its scan; when bluetoothd itself went, bleak is made to forget it too
(:mod:`lockgate.ble.bleak_internals`). When an adapter is back its scan starts again. Every turn
is queued for the service (:meth:`Airwaves.turns`). The driver asks it where to reach a lock
(:meth:`Airwaves.route`, which waits for the radio) and connects through the adapter it names.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime

import structlog

from lockgate.ble.adapters import (
    Adapters,
    AdapterStatus,
    Candidate,
    RadioAdapter,
    Turn,
    choose,
)
from lockgate.ble.bleak_internals import forget_bluez
from lockgate.ble.bluez import JOIN_TIMEOUT_S, BluezView, BluezWatch
from lockgate.ble.discovery import Discovery, LockIdentity, Sighting
from lockgate.ble.errors import AdapterError, OperationError
from lockgate.ble.link import Link, connect_within
from lockgate.ble.settings import RadioSettings

log = structlog.get_logger(__name__)

SCAN_RETRY_S = 1.0


class Airwaves:
    """BlueZ, the adapters and what they hear; see the module's docstring."""

    def __init__(
        self,
        locks: Iterable[LockIdentity],
        settings: RadioSettings,
        clock: Callable[[], datetime],
        *,
        on_lost: Callable[[RadioAdapter | None], None],
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._on_lost = on_lost
        self.discovery = Discovery(locks, clock)
        self.adapters = Adapters(settings.adapters, settings.connection_slots, clock())
        self._bluez = BluezWatch(
            on_change=self._bluez_changed,
            probe_interval_s=settings.probe_interval_s,
            probe_timeout_s=settings.probe_timeout_s,
        )
        self._generation = 0
        self.losses = 0
        """Adapters gone down since the start: a miss while one went is the radio's."""
        self.up = asyncio.Event()
        """Set while at least one adapter is up."""
        self._turns: asyncio.Queue[AdapterStatus] = asyncio.Queue()
        self._tasks: asyncio.TaskGroup | None = None
        self._cycle: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Look at BlueZ and scan through every adapter that is up; :class:`AdapterError` when
        none of the configured adapters is (the radio as found now is no turn)."""
        view = await self._bluez.start(max(self._settings.probe_timeout_s, JOIN_TIMEOUT_S))
        if not self.adapters.up():
            names = ", ".join(a.key for a in self.adapters.all()) or "any adapter"
            reason = view.reason if not view.usable else "none is there and powered"
            raise AdapterError(f"{names}: {reason}")
        try:
            await self.discovery.close_stale()
            for adapter in self.adapters.up():
                assert adapter.name is not None
                await self.discovery.scan(adapter.name)
        except TimeoutError as err:
            raise AdapterError("BlueZ did not answer in time") from err
        while not self._turns.empty():
            self._turns.get_nowait()

    def attach(self, tasks: asyncio.TaskGroup | None) -> None:
        """Where scans started and stopped later run (None while stopping), and the scans'
        duty cycle, if there is one."""
        self._tasks = tasks
        window, interval = self._settings.scan_window_s, self._settings.scan_interval_s
        if tasks is not None and self._cycle is None and 0 < window < interval:
            self._cycle = tasks.create_task(self._duty_cycle(window, interval), name="ble-scans")
        elif tasks is None and self._cycle is not None:
            self._cycle.cancel()
            self._cycle = None

    async def stop(self) -> None:
        self._tasks = None
        await self.discovery.stop()
        await self._bluez.stop()

    async def turns(self) -> AsyncIterator[AdapterStatus]:
        while True:
            yield await self._turns.get()

    # --- where an operation goes -----------------------------------------------------------

    async def route(
        self, bike: str, waiting: Callable[[str | None], None]
    ) -> tuple[RadioAdapter, Sighting]:
        """The adapter to reach ``bike`` through, and how it heard the lock. Waits for an adapter
        to be up (telling ``waiting`` why none is, then None), then for the lock to be heard."""
        while True:
            if not self.up.is_set():
                waiting(self.why_down())
                await self.up.wait()
                waiting(None)
            try:
                sightings = await self.discovery.find(
                    bike, self._settings.find_timeout_s, self._usable
                )
            except OperationError:
                if self.up.is_set():
                    raise
                continue  # the radio went while looking: wait for it, then look again
            if (found := self._best(sightings)) is not None:
                return found

    def best_now(self, bike: str) -> tuple[RadioAdapter, Sighting] | None:
        """Where the lock is heard best right now, without waiting (for a watch)."""
        return self._best(self.discovery.sightings(bike))

    def _best(self, sightings: list[Sighting]) -> tuple[RadioAdapter, Sighting] | None:
        best = choose(
            Candidate(adapter, s.rssi)
            for s in sightings
            if (adapter := self.adapters.by_name(s.adapter)) is not None
        )
        if best is None:
            return None
        return best.adapter, next(s for s in sightings if s.adapter == best.adapter.name)

    def _usable(self, name: str) -> bool:
        return self.adapters.by_name(name) is not None

    def sighting_through(self, bike: str, adapter: RadioAdapter | None) -> Sighting | None:
        for sighting in self.discovery.sightings(bike):
            if adapter is not None and sighting.adapter == adapter.name:
                return sighting
        return None

    def why_down(self) -> str:
        reasons = [f"{a.key}: {a.reason}" for a in self.adapters.all() if not a.up]
        return "; ".join(reasons) or "no adapter is up"

    async def connect(self, bike: str, adapter: RadioAdapter, sighting: Sighting) -> Link:
        """A link through ``adapter``, its one connection attempt at a time; a failure counts
        against the adapter."""
        settings = self._settings
        losses = self.losses
        async with adapter.connecting:
            try:
                return await connect_within(
                    self._tasks,
                    bike,
                    sighting.device,
                    timeout_s=settings.connect_timeout_s,
                    max_attempts=settings.connect_attempts,
                    step_timeout_s=settings.steps.gatt_s,
                )
            except OperationError as err:
                if losses == self.losses:
                    adapter.failed()
                    raise
                # Cut by an adapter (or bluetoothd) going: neither the lock's fault nor a sign
                # of this adapter's reach, and the reason should say what happened.
                raise OperationError(
                    err.outcome, f"the radio went during the connection attempt ({err.reason})"
                ) from err

    # --- discovery that costs less ----------------------------------------------------------

    async def _duty_cycle(self, window_s: float, interval_s: float) -> None:
        """Scan ``window_s`` of every ``interval_s`` (the first window is the start's scan); scan
        on while an operation waits for a lock to be heard, and at once when one starts to."""
        while True:
            await asyncio.sleep(window_s)
            await self.discovery.nobody_waits()
            for name in self.discovery.scanning:
                await self.discovery.stop_scan(name)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s - window_s):
                    await self.discovery.wanted.wait()
            for adapter in self.adapters.up():
                if adapter.name is None or adapter.name in self.discovery.scanning:
                    continue
                try:
                    await self.discovery.scan(adapter.name)
                except AdapterError as err:
                    log.warning("scan could not start", adapter=adapter.key, error=str(err))

    # --- following BlueZ -------------------------------------------------------------------

    def _bluez_changed(self, view: BluezView) -> None:
        """BluezWatch's news: links and scans lost with bluetoothd or an adapter, scans started
        again on the return, each turn logged and queued for the service."""
        if self._generation and (not view.present or view.generation != self._generation):
            # bluetoothd went (or was replaced): every link, scan and cached object is gone.
            forget_bluez()
            self._on_lost(None)
            self.discovery.lose(None)
            for name in self.discovery.scanning:
                self._unscan(name)
        if view.present:
            self._generation = view.generation
        for turn in self.adapters.follow(view, self._clock()):
            self._turned(turn)
        if self.adapters.up():
            self.up.set()
        else:
            self.up.clear()

    def _turned(self, turn: Turn) -> None:
        adapter = turn.adapter
        if turn.up:
            log.warning("adapter up", adapter=adapter.key, name=adapter.name)
            if self._tasks is not None:
                self._tasks.create_task(self._scan(adapter), name=f"ble-scan-{adapter.key}")
        else:
            self.losses += 1
            log.warning("adapter down", adapter=adapter.key, reason=turn.reason)
            self._on_lost(adapter)
            if turn.name is not None:
                self.discovery.lose(turn.name)
                self._unscan(turn.name)
        self._turns.put_nowait(adapter.status())

    def _unscan(self, name: str) -> None:
        """Stop the scan through ``name`` now, in a task (it asks BlueZ, within a timeout)."""
        if self._tasks is not None:
            self._tasks.create_task(self.discovery.stop_scan(name), name=f"ble-unscan-{name}")

    async def _scan(self, adapter: RadioAdapter) -> None:
        """Scan through an adapter that came up, trying again each second while it stays up."""
        while adapter.up and adapter.name is not None:
            try:
                await self.discovery.scan(adapter.name)
            except AdapterError as err:
                log.warning("scan could not start", adapter=adapter.key, error=str(err))
                await asyncio.sleep(SCAN_RETRY_S)
            else:
                log.info("scanning", adapter=adapter.key, name=adapter.name)
                return
