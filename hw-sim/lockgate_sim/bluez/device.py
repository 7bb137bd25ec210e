"""``org.bluez.Device1``: one lock as the adapter knows it, and the link the adapter holds to it.

A device object appears below the adapter when discovery first hears the lock and stays until the
lock goes out of range or is removed (then calls on it meet UnknownObject, see :mod:`.objects`).
``Connect`` and ``Disconnect`` go to the :class:`~lockgate_sim.bluez.station.Station`, which owns
the adapter's connection slots; once a link is up the device exports the lock's GATT tree
(:mod:`.gatt_service`) and carries the GATT operations of its characteristics to the lock's
firmware, and the firmware's effects (indications, a dropped link, a battery change) back onto the
bus as PropertiesChanged.
"""

import asyncio
import contextlib
import logging
from collections import deque
from typing import Protocol

from dbus_fast.annotations import DBusBool, DBusDict, DBusInt16, DBusObjectPath, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from lockgate.protocol import gatt
from lockgate.protocol.gatt import Channel
from lockgate_sim.bluez.dbus_types import READ, DBusManufacturerData, DBusStrList
from lockgate_sim.bluez.errors import BluezError
from lockgate_sim.bluez.gatt_characteristic import GattCharacteristic
from lockgate_sim.bluez.gatt_descriptor import GattDescriptor
from lockgate_sim.bluez.gatt_service import LAYOUT, GattService, Role
from lockgate_sim.bluez.objects import ObjectTree
from lockgate_sim.firmware import BatteryChanged, Effect, Indication, LinkDropped, Lock
from lockgate_sim.linklayer import AirLink, Exchange, LinkSettings, RadioCounts
from lockgate_sim.timings import LockTimes


class LockClock(Protocol):
    def now(self) -> float:
        """The lock's own seconds."""
        ...

    def real(self, seconds: float) -> float:
        """Lock seconds as real seconds."""
        ...

    def loop_time(self, lock_seconds: float) -> float:
        """The event loop's time at which the lock's clock reads ``lock_seconds``."""
        ...


class DeviceHost(Protocol):
    """What a device asks of the adapter that knows it (:class:`~.radio.Radio`): the adapter's
    path, the object tree, the lock's clock, the RSSI it hears, and a link made or ended."""

    @property
    def adapter_path(self) -> str: ...

    @property
    def objects(self) -> ObjectTree: ...

    @property
    def clock(self) -> LockClock: ...

    def rssi_of(self, lock: Lock) -> int: ...

    async def connect(self, device: "Device") -> None: ...

    def disconnect(self, device: "Device") -> None: ...


log = logging.getLogger("lockgate_sim")

DEVICE_INTERFACE = "org.bluez.Device1"


def device_path(adapter_path: str, address: str) -> str:
    return f"{adapter_path}/dev_{address.replace(':', '_')}"


class Device(ServiceInterface):
    """``org.bluez.Device1`` of one lock, and the link the adapter holds to it."""

    def __init__(
        self,
        station: DeviceHost,
        lock: Lock,
        *,
        times: LockTimes | None = None,
        wake: asyncio.Event | None = None,
        link_settings: LinkSettings | None = None,
        counts: RadioCounts | None = None,
    ) -> None:
        """``times``, ``wake``, ``link_settings`` and ``counts`` are the lock's, shared by its
        device on every adapter."""
        super().__init__(DEVICE_INTERFACE)
        self.station = station
        self.lock = lock
        self.path = device_path(station.adapter_path, lock.address)
        self.exported = False
        self.connected = False
        self.services_resolved = False
        self.link: int | None = None
        self.characteristics: dict[Role, GattCharacteristic] = {}
        self.wake = asyncio.Event() if wake is None else wake
        self.abort_connect = asyncio.Event()
        self.abort_reason = ""
        """Why a pending Connect was aborted: bluetoothd's answer to it."""
        self.times = LockTimes() if times is None else times
        self.link_settings = LinkSettings() if link_settings is None else link_settings
        self.counts = RadioCounts() if counts is None else counts
        self.air: AirLink | None = None
        """The link's connection events and ATT queues (:mod:`lockgate_sim.linklayer`)."""
        self.link_down = asyncio.Event()
        """Set when the link ends: a GATT call waiting for its connection event gives up."""
        self._indications: deque[tuple[float, int, Indication]] = deque()
        self._pump: asyncio.TimerHandle | None = None
        self._gatt_objects: list[tuple[str, ServiceInterface]] = []
        self._tree: list[tuple[str, ServiceInterface]] = []

    def __repr__(self) -> str:
        return f"Device({self.lock.name}, connected={self.connected})"

    # --- D-Bus --------------------------------------------------------------------------------

    @dbus_method(name="Connect")
    async def connect(self) -> None:
        await self.station.connect(self)

    @dbus_method(name="Disconnect")
    async def disconnect(self) -> None:
        self.station.disconnect(self)
        if self.lock.disconnect_ms:
            # The link is down at once; the answer comes when bluetoothd would give it.
            await asyncio.sleep(self.station.clock.real(self.lock.disconnect_ms / 1000))

    @dbus_property(READ, name="Address")
    def address(self) -> DBusStr:
        return self.lock.address

    @dbus_property(READ, name="AddressType")
    def address_type(self) -> DBusStr:
        return "public"

    # Never a Python attribute called ``name``: ServiceInterface keeps the interface's name there.
    @dbus_property(READ, name="Name")
    def device_name(self) -> DBusStr:
        return self.lock.name

    @dbus_property(READ, name="Alias")
    def alias(self) -> DBusStr:
        return self.lock.name

    @dbus_property(READ, name="Adapter")
    def adapter(self) -> DBusObjectPath:
        return self.station.adapter_path

    @dbus_property(READ, name="RSSI")
    def rssi(self) -> DBusInt16:
        return self.station.rssi_of(self.lock)

    @dbus_property(READ, name="Connected")
    def connected_property(self) -> DBusBool:
        return self.connected

    @dbus_property(READ, name="ServicesResolved")
    def services_resolved_property(self) -> DBusBool:
        return self.services_resolved

    @dbus_property(READ, name="UUIDs")
    def uuids(self) -> DBusStrList:
        return [gatt.LOCK_SERVICE]

    @dbus_property(READ, name="ManufacturerData")
    def manufacturer_data(self) -> DBusManufacturerData:
        return {}

    @dbus_property(READ, name="ServiceData")
    def service_data(self) -> DBusDict:
        return {}

    @dbus_property(READ, name="Paired")
    def paired(self) -> DBusBool:
        return False

    @dbus_property(READ, name="Bonded")
    def bonded(self) -> DBusBool:
        return False

    @dbus_property(READ, name="Trusted")
    def trusted(self) -> DBusBool:
        return False

    @dbus_property(READ, name="Blocked")
    def blocked(self) -> DBusBool:
        return False

    @dbus_property(READ, name="LegacyPairing")
    def legacy_pairing(self) -> DBusBool:
        return False

    # --- the link -----------------------------------------------------------------------------

    def set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self.emit_properties_changed({"Connected": connected})

    def set_services_resolved(self, resolved: bool) -> None:
        if resolved != self.services_resolved:
            self.services_resolved = resolved
            self.emit_properties_changed({"ServicesResolved": resolved})

    def attach(self, link: int, anchor: float | None = None) -> AirLink:
        """The link is up: Connected, and the GATT tree exported (before ServicesResolved).

        Its connection events count from ``anchor`` (lock seconds; now by default)."""
        self.link = link
        self.link_down = asyncio.Event()
        self.air = AirLink(
            self.link_settings,
            self.station.clock.now() if anchor is None else anchor,
            self.counts,
        )
        self.set_connected(True)
        for path, interface in self._gatt_tree():
            if isinstance(interface, GattCharacteristic):
                interface.reset()
                self.characteristics[interface.layout.role] = interface
            self.station.objects.export(path, interface)
            self._gatt_objects.append((path, interface))
        return self.air

    def _gatt_tree(self) -> list[tuple[str, ServiceInterface]]:
        """The lock's GATT objects, parents first; built once and exported anew for each link.

        Building a dbus-fast interface inspects its class, which costs more than the export
        itself: the objects are kept between links and only their state is reset.
        """
        if self._tree:
            return self._tree
        for service in LAYOUT:
            service_path = f"{self.path}/service{service.handle:04x}"
            self._tree.append((service_path, GattService(self.path, service.uuid, service.handle)))
            for layout in service.characteristics:
                char_path = f"{service_path}/char{layout.handle:04x}"
                characteristic = GattCharacteristic(self, service_path, layout)
                self._tree.append((char_path, characteristic))
                if layout.notifies:
                    descriptor = GattDescriptor(char_path, characteristic)
                    self._tree.append((f"{char_path}/desc{layout.handle + 2:04x}", descriptor))
        return self._tree

    def detach(self, reason: str) -> None:
        """The link is gone: services unresolved, GATT tree removed, Connected false."""
        if self.link is None and not self.connected:
            return
        if self.link is not None:
            self.lock.disconnect(self.link)
            log.info("%s: link %s ended (%s)", self.lock.name, self.link, reason)
        self.link = None
        self.end_air()
        self.set_services_resolved(False)
        for path, interface in reversed(self._gatt_objects):
            self.station.objects.unexport(path, interface)
        self._gatt_objects.clear()
        self.characteristics.clear()
        self.set_connected(False)

    def end_air(self) -> None:
        """The link's connection events are over: its queued indications go with it."""
        if self.air is not None:
            self.air.end(self.station.clock.now())
        self.link_down.set()
        self._indications.clear()
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None

    def go_silent(self) -> None:
        """The lock went out of range: nothing more crosses the link, which the central sees
        end only when the supervision timeout has passed (:meth:`detach` then)."""
        if self.air is not None:
            self.air.silent = True
        if self.link is not None:
            self.lock.disconnect(self.link)
        self._indications.clear()

    # --- GATT operations ----------------------------------------------------------------------

    def _require_link(self) -> int:
        if self.link is None:
            raise BluezError.NOT_CONNECTED("Not connected")
        return self.link

    async def exchange(self, kind: Exchange, count: int = 1) -> tuple[int, float]:
        """Wait for ``count`` ATT round trips of ``kind`` on the link (its connection events):
        the link's id and the lock time the last answer went out, or NotConnected if the link
        ended meanwhile (a lock gone out of range: once the supervision timeout has passed)."""
        link = self._require_link()
        air = self.air
        assert air is not None
        clock = self.station.clock
        done = air.request(clock.now(), kind, count)
        down = self.link_down
        if air.silent or done > clock.now():  # an instant radio answers without a wait
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(None if air.silent else clock.loop_time(done)):
                    await down.wait()
        if air.silent and not down.is_set():
            await down.wait()
        if self.link != link:
            raise BluezError.NOT_CONNECTED("Not connected")
        return link, min(done, clock.now())

    async def read(self, role: Role) -> bytes:
        await self.exchange(Exchange.READ)
        if role is Role.BATTERY:
            return bytes((self.lock.battery,))
        if role is Role.FIRMWARE:
            return self.lock.firmware.encode()
        raise BluezError.NOT_PERMITTED("Read not permitted")

    async def write(self, role: Role, value: bytes) -> None:
        """A write with response: the lock takes it in the connection event its response goes
        out in."""
        link, answered = await self.exchange(Exchange.WRITE)
        channel = Channel.GDIO if role is Role.GDIO else Channel.USDIO
        deadline = self.lock.next_deadline()
        # At the event its answer goes out in, not whenever the event loop woke after it.
        effects = self.lock.write(link, channel, value, answered)
        # The write's reply goes out first, its indications after: as on the air. (This
        # coroutine's end schedules the reply with call_soon: one hop more puts the
        # indications behind it.)
        loop = asyncio.get_running_loop()
        loop.call_soon(loop.call_soon, self.apply, effects)
        # Most chunks only fill the lock's buffer: the timers need waking only when a write set
        # a new deadline (a motion started, a link to drop), not once per chunk.
        if self.lock.next_deadline() != deadline:
            self.wake.set()

    async def subscribe(self, role: Role, *, on: bool) -> None:
        """StartNotify or StopNotify: a write to the characteristic's CCCD, where its notify
        state changes."""
        characteristic = self.characteristics.get(role)
        link = self._require_link()
        if characteristic is not None and characteristic.notifying != on:
            link, _ = await self.exchange(Exchange.CCCD)
        characteristic = self.characteristics[role]
        characteristic.set_notifying(on)
        if role in (Role.GDIO, Role.USDIO):
            self.lock.set_indications(link, Channel(role.value), on=on)

    def apply(self, effects: list[Effect]) -> None:
        """Make the lock's effects visible on the bus."""
        for effect in effects:
            if isinstance(effect, Indication):
                self._indicate(effect)
            elif isinstance(effect, LinkDropped):
                if effect.link == self.link and not (self.air is not None and self.air.silent):
                    self.detach(effect.reason)
            elif isinstance(effect, BatteryChanged):
                battery = self.characteristics.get(Role.BATTERY)
                if battery is not None and battery.notifying:
                    battery.set_value(bytes((effect.percent,)))

    def _indicate(self, effect: Indication) -> None:
        """An indication goes out in the link's next free connection event: at once with an
        instant radio, else queued behind the ones not yet confirmed."""
        characteristic = self.characteristics.get(Role(effect.channel.value))
        air = self.air
        if effect.link != self.link or characteristic is None or not characteristic.notifying:
            return
        if air is None or air.silent:
            return
        clock = self.station.clock
        due = air.indicate(clock.now())
        if air.interval <= 0 and not self._indications:
            characteristic.set_value(effect.chunk)
            return
        self._indications.append((due, effect.link, effect))
        if self._pump is None:
            self._arm()

    def _arm(self) -> None:
        due = self._indications[0][0]
        loop = asyncio.get_running_loop()
        self._pump = loop.call_at(self.station.clock.loop_time(due), self._deliver)

    def _deliver(self) -> None:
        """Deliver the indications whose connection event has come, in order."""
        self._pump = None
        now = self.station.clock.now()
        first = True  # armed for the first: due, whatever hair the loop's clock stands before it
        while self._indications and (first or self._indications[0][0] <= now):
            first = False
            _, link, effect = self._indications.popleft()
            characteristic = self.characteristics.get(Role(effect.channel.value))
            if link == self.link and characteristic is not None and characteristic.notifying:
                characteristic.set_value(effect.chunk)
        if self._indications:
            self._arm()
