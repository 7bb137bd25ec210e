"""Which of the station's locks are in range, through which adapter: scanners that map
advertisements to bikes.

One :class:`bleak.BleakScanner` runs per adapter while that adapter is up. An advertisement is
matched to a configured lock by Bluetooth address (from COPRI's GUID) or else by advertised name;
each match updates the lock's :class:`Sighting` on that adapter (RSSI, last seen). Ilockit locks
that are not the station's are reported once each, for field engineers, and never driven.

When an adapter goes (powered off, pulled, bluetoothd gone) its scanner and its sightings go with
it (:meth:`Discovery.lose`); when it is back a new scanner starts. Every call to BlueZ here has a
timeout: a hung bluetoothd holds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak_retry_connector import close_stale_connections_by_address, get_device

from lockgate.ble.errors import OperationError, adapter_failure
from lockgate.model import Profile
from lockgate.protocol.identity import profile_of_name
from lockgate.radio import Outcome

log = structlog.get_logger(__name__)

MAX_STRANGERS = 256
"""Foreign locks remembered (and reported once each): bikes of other stations pass by for months."""
CALL_TIMEOUT_S = 5.0
"""Any one call to BlueZ made here (start or stop a scan, look a device up)."""


@dataclass(frozen=True, slots=True)
class LockIdentity:
    """How the station knows one lock (config's ``[[locks]]``)."""

    bike: str
    name: str
    address: str
    profile: Profile


@dataclass(frozen=True, slots=True)
class Sighting:
    device: BLEDevice
    rssi: int | None
    last_seen: datetime
    adapter: str
    """BlueZ's name of the adapter that heard it (``hci0``)."""


def adapter_of(device: BLEDevice) -> str | None:
    """The adapter a BlueZ device object hangs under (``/org/bluez/hci1/dev_...`` → ``hci1``)."""
    details = device.details
    path = details.get("path") if isinstance(details, dict) else None
    if not isinstance(path, str):
        return None
    parts = path.split("/")
    return parts[3] if len(parts) > 3 and parts[3] else None


class Discovery:
    """The station's view of what is in range, per adapter."""

    def __init__(self, locks: Iterable[LockIdentity], clock: Callable[[], datetime]) -> None:
        locks = list(locks)
        self._by_address = {lock.address.upper(): lock.bike for lock in locks}
        self._address_of = {lock.bike: lock.address.upper() for lock in locks}
        self._by_name = {lock.name: lock.bike for lock in locks}
        self._clock = clock
        self._sightings: dict[str, dict[str, Sighting]] = {}  # bike → adapter → sighting
        self._arrived: dict[str, asyncio.Event] = {}
        self._strangers: set[str] = set()
        self._scanners: dict[str, BleakScanner] = {}  # by adapter name
        self._finders = 0
        self.wanted = asyncio.Event()
        """Set while an operation waits for a lock to be heard: a paused scan starts at once."""
        self._unwanted = asyncio.Event()
        self._unwanted.set()

    async def close_stale(self) -> None:
        """Links an earlier run left behind hold adapter slots and keep locks from advertising."""
        for address in self._address_of.values():
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await close_stale_connections_by_address(address)

    async def scan(self, adapter: str) -> None:
        """Start scanning on ``adapter``; :class:`AdapterError` when it cannot be used."""
        await self.stop_scan(adapter)
        scanner = BleakScanner(
            detection_callback=self._on_advertisement, bluez={"adapter": adapter}
        )
        self._scanners[adapter] = scanner  # what it hears counts from its first advertisement
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await scanner.start()
        except BaseException as err:
            self._scanners.pop(adapter, None)
            if isinstance(err, Exception):
                raise adapter_failure(err, adapter) from err
            raise

    async def stop_scan(self, adapter: str) -> None:
        """Stop ``adapter``'s scanner, if any; never raises (a scanner whose bluetoothd is gone
        has nothing left to stop)."""
        scanner = self._scanners.pop(adapter, None)
        if scanner is None:
            return
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await scanner.stop()
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - a dead scanner is stopped all the same
            log.debug("stopping a scan failed", adapter=adapter, error=repr(err))

    async def stop(self) -> None:
        for adapter in list(self._scanners):
            await self.stop_scan(adapter)

    def lose(self, adapter: str | None) -> None:
        """Forget what ``adapter`` heard (every adapter's, with None): it is gone. Its scanner is
        still to be stopped (:meth:`stop_scan`): that takes bleak's callbacks away, and must
        come before a new scan, whose discovery session a late stop would end."""
        for seen in self._sightings.values():
            if adapter is None:
                seen.clear()
            else:
                seen.pop(adapter, None)

    @property
    def scanning(self) -> list[str]:
        """The adapters with a scanner (running, or left by a bluetoothd that went)."""
        return list(self._scanners)

    @property
    def strangers(self) -> frozenset[str]:
        """Ilockit locks in range that are not the station's, by advertised name."""
        return frozenset(self._strangers)

    def sightings(self, bike: str) -> list[Sighting]:
        """Where the lock was heard, one sighting per adapter."""
        return list(self._sightings.get(bike, {}).values())

    def sighting(self, bike: str) -> Sighting | None:
        """The strongest sighting of the lock."""
        return max(
            self.sightings(bike),
            key=lambda s: s.rssi if s.rssi is not None else -1000,
            default=None,
        )

    def forget(self, bike: str, adapter: str | None = None) -> None:
        """Drop a sighting BlueZ no longer backs (the device object went away)."""
        seen = self._sightings.get(bike)
        if seen is None:
            return
        if adapter is None:
            seen.clear()
        else:
            seen.pop(adapter, None)

    async def find(
        self, bike: str, timeout_s: float, usable: Callable[[str], bool]
    ) -> list[Sighting]:
        """Where the lock is heard, through adapters ``usable`` takes; waits up to ``timeout_s``
        for a first sighting.

        A lock BlueZ already knows needs no advertisement: one still connected (left by an
        earlier run of the daemon, or by another program) does not advertise at all.
        """
        found = [s for s in self.sightings(bike) if usable(s.adapter)]
        if found:
            return found
        address = self._address_of.get(bike)
        if address is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CALL_TIMEOUT_S):
                    known = await get_device(address)
                if known is not None and (adapter := adapter_of(known)) and usable(adapter):
                    return [Sighting(known, None, self._clock(), adapter)]
        arrived = self._arrived.setdefault(bike, asyncio.Event())
        self._finders += 1
        self.wanted.set()
        self._unwanted.clear()
        try:
            async with asyncio.timeout(timeout_s):
                while not (found := [s for s in self.sightings(bike) if usable(s.adapter)]):
                    arrived.clear()
                    await arrived.wait()
        except TimeoutError as err:
            raise OperationError(
                Outcome.UNREACHABLE, f"the lock was not seen in range within {timeout_s:g} s"
            ) from err
        finally:
            self._finders -= 1
            if not self._finders:
                self.wanted.clear()
                self._unwanted.set()
        return found

    async def nobody_waits(self) -> None:
        """Returns once no operation waits for a lock to be heard."""
        await self._unwanted.wait()

    def _on_advertisement(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        name = advertisement.local_name or device.name or ""
        bike = self._by_address.get(device.address.upper()) or self._by_name.get(name)
        if bike is None:
            if (
                profile_of_name(name) is not None
                and name not in self._strangers
                and len(self._strangers) < MAX_STRANGERS
            ):
                self._strangers.add(name)
                log.info("unknown lock in range", name=name, address=device.address)
            return
        adapter = adapter_of(device)
        if adapter is None or adapter not in self._scanners:
            return  # a scanner that is being stopped, or another program's device
        self._sightings.setdefault(bike, {})[adapter] = Sighting(
            device, advertisement.rssi, self._clock(), adapter
        )
        if (arrived := self._arrived.get(bike)) is not None:
            arrived.set()
