"""Which of the station's locks are in range: a scanner that maps advertisements to bikes.

One :class:`bleak.BleakScanner` runs for the daemon's lifetime. An advertisement is matched to a
configured lock by Bluetooth address (from COPRI's GUID) or else by advertised name; each match
updates the lock's :class:`Sighting` (RSSI, last seen). Ilockit locks that are not the station's are
reported once each, for field engineers, and never driven.
"""

from __future__ import annotations

import asyncio
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


class Discovery:
    """The station's view of what is in range."""

    def __init__(
        self, locks: Iterable[LockIdentity], adapter: str, clock: Callable[[], datetime]
    ) -> None:
        locks = list(locks)
        self._by_address = {lock.address.upper(): lock.bike for lock in locks}
        self._address_of = {lock.bike: lock.address.upper() for lock in locks}
        self._by_name = {lock.name: lock.bike for lock in locks}
        self._adapter = adapter
        self._clock = clock
        self._sightings: dict[str, Sighting] = {}
        self._arrived: dict[str, asyncio.Event] = {}
        self._strangers: set[str] = set()
        self._scanner: BleakScanner | None = None

    async def start(self) -> None:
        """Start scanning; :class:`AdapterError` when the adapter cannot be used at all."""
        try:
            # Links an earlier run left behind hold adapter slots and keep locks from advertising.
            for address in self._address_of.values():
                await close_stale_connections_by_address(address)
            scanner = BleakScanner(
                detection_callback=self._on_advertisement, bluez={"adapter": self._adapter}
            )
            await scanner.start()
        except asyncio.CancelledError:
            raise
        except Exception as err:
            raise adapter_failure(err, self._adapter) from err
        self._scanner = scanner

    async def stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            await scanner.stop()

    @property
    def strangers(self) -> frozenset[str]:
        """Ilockit locks in range that are not the station's, by advertised name."""
        return frozenset(self._strangers)

    def sighting(self, bike: str) -> Sighting | None:
        return self._sightings.get(bike)

    def forget(self, bike: str) -> None:
        """Drop a sighting BlueZ no longer backs (the device object went away)."""
        self._sightings.pop(bike, None)

    async def find(self, bike: str, timeout_s: float) -> BLEDevice:
        """The lock's device as last seen, waiting up to ``timeout_s`` for a first sighting.

        A lock BlueZ already knows needs no advertisement: one still connected (left by an
        earlier run of the daemon, or by another program) does not advertise at all.
        """
        sighting = self._sightings.get(bike)
        if sighting is not None:
            return sighting.device
        address = self._address_of.get(bike)
        if address is not None and (known := await get_device(address)) is not None:
            return known
        arrived = self._arrived.setdefault(bike, asyncio.Event())
        arrived.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await arrived.wait()
        except TimeoutError as err:
            raise OperationError(
                Outcome.UNREACHABLE, f"the lock was not seen in range within {timeout_s:g} s"
            ) from err
        return self._sightings[bike].device

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
        self._sightings[bike] = Sighting(device, advertisement.rssi, self._clock())
        if (arrived := self._arrived.get(bike)) is not None:
            arrived.set()
