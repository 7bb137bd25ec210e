"""The BlueZ front: the objects bluetoothd serves on D-Bus, backed by the firmware models.

bleak's BlueZ backend (and bleak-retry-connector on top of it) talks to this module exactly as it
talks to bluetoothd on a station: ``org.bluez`` owns ``/org/bluez/hci0`` (``Adapter1``), a
``Device1`` per lock the adapter has seen, and, while a lock is connected, its GATT tree
(``GattService1``, ``GattCharacteristic1``, ``GattDescriptor1``). dbus-fast serves the
ObjectManager at ``/`` and emits InterfacesAdded / InterfacesRemoved as objects come and go.

:class:`Station` is the running world: it owns the adapter, the devices, the simulated clock and the
tasks that advertise and run the locks' timers. It turns D-Bus calls into calls on
:class:`~lockgate_sim.firmware.Lock` and the lock's effects into PropertiesChanged signals. BlueZ's
own error names are used where bluetoothd raises them, so the daemon's error handling meets the
same names in tests as on a station.
"""

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any

from dbus_fast import DBusError, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusBytes,
    DBusDict,
    DBusInt16,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt16,
)
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from lockgate.protocol import gatt
from lockgate.protocol.gatt import Channel
from lockgate_sim.firmware import (
    BatteryChanged,
    Effect,
    Indication,
    LinkDropped,
    Lock,
    LockView,
    NoFreeLink,
    RandomBytes,
)
from lockgate_sim.world import WorldConfig

log = logging.getLogger("lockgate_sim")

BLUEZ = "org.bluez"
ADAPTER_INTERFACE = "org.bluez.Adapter1"
DEVICE_INTERFACE = "org.bluez.Device1"
ADVERTISING_INTERVAL_S = 1.0
"""How often, in lock seconds, a lock in range is heard (an RSSI update) while discovering."""
MIN_REAL_INTERVAL_S = 0.02
"""The advertiser never spins faster than this, whatever the time scale."""

DBusStrList = Annotated[list[str], DBusSignature("as")]
DBusPathList = Annotated[list[str], DBusSignature("ao")]
DBusManufacturerData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]

_READ = PropertyAccess.READ


# --- BlueZ's errors -----------------------------------------------------------------------------


class BluezError(Enum):
    """The error names bluetoothd answers with, where it answers with them."""

    IN_PROGRESS = "org.bluez.Error.InProgress"
    FAILED = "org.bluez.Error.Failed"
    NOT_CONNECTED = "org.bluez.Error.NotConnected"
    NOT_PERMITTED = "org.bluez.Error.NotPermitted"
    NOT_SUPPORTED = "org.bluez.Error.NotSupported"
    INVALID_ARGUMENTS = "org.bluez.Error.InvalidArguments"
    DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
    UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"

    def __call__(self, text: str) -> DBusError:
        return DBusError(self.value, text)


CONNECTION_ABORTED = "le-connection-abort-by-local"


# --- time ---------------------------------------------------------------------------------------


class Clock:
    """Lock seconds on the event loop's clock: ``time_scale`` 0.05 runs it all 20 times faster."""

    def __init__(self, time_scale: float) -> None:
        self.time_scale = time_scale
        self._origin = asyncio.get_running_loop().time()

    def now(self) -> float:
        return (asyncio.get_running_loop().time() - self._origin) / self.time_scale

    def real(self, seconds: float) -> float:
        return seconds * self.time_scale

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(self.real(seconds))


# --- GATT ---------------------------------------------------------------------------------------


class Role(Enum):
    """What a characteristic of the lock's GATT tree is for."""

    GDIO = "GDIO"
    USDIO = "USDIO"
    BATTERY = "battery level"
    FIRMWARE = "firmware revision"


@dataclass(frozen=True, slots=True)
class _CharacteristicLayout:
    role: Role
    uuid: str
    flags: tuple[str, ...]
    handle: int


@dataclass(frozen=True, slots=True)
class _ServiceLayout:
    uuid: str
    handle: int
    characteristics: tuple[_CharacteristicLayout, ...]


# Handles as a lock's attribute table would number them; bleak takes them from the object paths.
LAYOUT = (
    _ServiceLayout(
        gatt.BATTERY_SERVICE,
        0x000A,
        (_CharacteristicLayout(Role.BATTERY, gatt.BATTERY_LEVEL, ("read", "notify"), 0x000B),),
    ),
    _ServiceLayout(
        gatt.DEVICE_INFORMATION_SERVICE,
        0x000E,
        (_CharacteristicLayout(Role.FIRMWARE, gatt.FIRMWARE_REVISION, ("read",), 0x000F),),
    ),
    _ServiceLayout(
        gatt.LOCK_SERVICE,
        0x0011,
        (
            _CharacteristicLayout(Role.GDIO, gatt.GDIO, ("write", "indicate"), 0x0012),
            _CharacteristicLayout(Role.USDIO, gatt.USDIO, ("write", "indicate"), 0x0015),
        ),
    ),
)


class GattService(ServiceInterface):
    """``org.bluez.GattService1`` of a connected lock."""

    def __init__(self, device_path: str, uuid: str, handle: int) -> None:
        super().__init__("org.bluez.GattService1")
        self._device_path = device_path
        self._uuid = uuid
        self._handle = handle

    @dbus_property(_READ, name="UUID")
    def uuid(self) -> DBusStr:
        return self._uuid

    @dbus_property(_READ, name="Device")
    def device(self) -> DBusObjectPath:
        return self._device_path

    @dbus_property(_READ, name="Primary")
    def primary(self) -> DBusBool:
        return True

    @dbus_property(_READ, name="Includes")
    def includes(self) -> DBusPathList:
        return []

    @dbus_property(_READ, name="Handle")
    def handle(self) -> DBusUInt16:
        return self._handle


class GattCharacteristic(ServiceInterface):
    """``org.bluez.GattCharacteristic1``: reads, writes with response, indications."""

    def __init__(self, device: "Device", service_path: str, layout: _CharacteristicLayout) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self._device = device
        self._service_path = service_path
        self.layout = layout
        self.value = b""
        self.notifying = False

    def set_value(self, value: bytes) -> None:
        """A new value; with notifications on, this PropertiesChanged is the indication."""
        self.value = value
        self.emit_properties_changed({"Value": value})

    def set_notifying(self, notifying: bool) -> None:
        if notifying != self.notifying:
            self.notifying = notifying
            self.emit_properties_changed({"Notifying": notifying})

    @dbus_method(name="ReadValue")
    def read_value(self, options: DBusDict) -> DBusBytes:  # noqa: ARG002 - BlueZ's signature
        if "read" not in self.layout.flags:
            raise BluezError.NOT_PERMITTED("Read not permitted")
        self.value = self._device.read(self.layout.role)
        return self.value

    @dbus_method(name="WriteValue")
    def write_value(self, value: DBusBytes, options: DBusDict) -> None:
        if "write" not in self.layout.flags:
            raise BluezError.NOT_PERMITTED("Write not permitted")
        kind = options.get("type")
        if kind is not None and kind.value == "command":
            raise BluezError.NOT_SUPPORTED("Operation is not supported")
        if len(value) > gatt.ATT_MTU - 3:
            raise BluezError.INVALID_ARGUMENTS("Invalid Length")
        self._device.write(self.layout.role, bytes(value))

    @dbus_method(name="StartNotify")
    def start_notify(self) -> None:
        if not {"notify", "indicate"} & set(self.layout.flags):
            raise BluezError.NOT_SUPPORTED("Operation is not supported")
        self._device.subscribe(self.layout.role, on=True)

    @dbus_method(name="StopNotify")
    def stop_notify(self) -> None:
        self._device.subscribe(self.layout.role, on=False)

    @dbus_property(_READ, name="UUID")
    def uuid(self) -> DBusStr:
        return self.layout.uuid

    @dbus_property(_READ, name="Service")
    def service(self) -> DBusObjectPath:
        return self._service_path

    @dbus_property(_READ, name="Value")
    def value_property(self) -> DBusBytes:
        return self.value

    @dbus_property(_READ, name="Notifying")
    def notifying_property(self) -> DBusBool:
        return self.notifying

    @dbus_property(_READ, name="Flags")
    def flags(self) -> DBusStrList:
        return list(self.layout.flags)

    @dbus_property(_READ, name="Handle")
    def handle(self) -> DBusUInt16:
        return self.layout.handle

    @dbus_property(_READ, name="MTU")
    def mtu(self) -> DBusUInt16:
        return gatt.ATT_MTU


class GattDescriptor(ServiceInterface):
    """The Client Characteristic Configuration descriptor of an indicating characteristic."""

    def __init__(self, characteristic_path: str, characteristic: GattCharacteristic) -> None:
        super().__init__("org.bluez.GattDescriptor1")
        self._characteristic_path = characteristic_path
        self._characteristic = characteristic

    def _cccd(self) -> bytes:
        if not self._characteristic.notifying:
            return b"\x00\x00"
        return b"\x02\x00" if "indicate" in self._characteristic.layout.flags else b"\x01\x00"

    @dbus_method(name="ReadValue")
    def read_value(self, options: DBusDict) -> DBusBytes:  # noqa: ARG002 - BlueZ's signature
        return self._cccd()

    @dbus_method(name="WriteValue")
    def write_value(self, value: DBusBytes, options: DBusDict) -> None:  # noqa: ARG002
        # BlueZ refuses direct CCCD writes: clients must use StartNotify.
        raise BluezError.NOT_PERMITTED("Write not permitted")

    @dbus_property(_READ, name="UUID")
    def uuid(self) -> DBusStr:
        return gatt.CLIENT_CHARACTERISTIC_CONFIGURATION

    @dbus_property(_READ, name="Characteristic")
    def characteristic(self) -> DBusObjectPath:
        return self._characteristic_path

    @dbus_property(_READ, name="Value")
    def value(self) -> DBusBytes:
        return self._cccd()

    @dbus_property(_READ, name="Flags")
    def flags(self) -> DBusStrList:
        return ["read", "write"]


# --- the device ---------------------------------------------------------------------------------


def device_path(adapter_path: str, address: str) -> str:
    return f"{adapter_path}/dev_{address.replace(':', '_')}"


class Device(ServiceInterface):
    """``org.bluez.Device1`` of one lock, and the link the adapter holds to it."""

    def __init__(self, station: "Station", lock: Lock) -> None:
        super().__init__(DEVICE_INTERFACE)
        self.station = station
        self.lock = lock
        self.path = device_path(station.adapter_path, lock.address)
        self.exported = False
        self.connected = False
        self.services_resolved = False
        self.link: int | None = None
        self.characteristics: dict[Role, GattCharacteristic] = {}
        self.wake = asyncio.Event()
        self.abort_connect = asyncio.Event()
        self._gatt_objects: list[tuple[str, ServiceInterface]] = []

    def __repr__(self) -> str:
        return f"Device({self.lock.name}, connected={self.connected})"

    # --- D-Bus --------------------------------------------------------------------------------

    @dbus_method(name="Connect")
    async def connect(self) -> None:
        await self.station.connect(self)

    @dbus_method(name="Disconnect")
    def disconnect(self) -> None:
        self.station.disconnect(self)

    @dbus_property(_READ, name="Address")
    def address(self) -> DBusStr:
        return self.lock.address

    @dbus_property(_READ, name="AddressType")
    def address_type(self) -> DBusStr:
        return "public"

    # Never a Python attribute called ``name``: ServiceInterface keeps the interface's name there.
    @dbus_property(_READ, name="Name")
    def device_name(self) -> DBusStr:
        return self.lock.name

    @dbus_property(_READ, name="Alias")
    def alias(self) -> DBusStr:
        return self.lock.name

    @dbus_property(_READ, name="Adapter")
    def adapter(self) -> DBusObjectPath:
        return self.station.adapter_path

    @dbus_property(_READ, name="RSSI")
    def rssi(self) -> DBusInt16:
        return self.lock.rssi

    @dbus_property(_READ, name="Connected")
    def connected_property(self) -> DBusBool:
        return self.connected

    @dbus_property(_READ, name="ServicesResolved")
    def services_resolved_property(self) -> DBusBool:
        return self.services_resolved

    @dbus_property(_READ, name="UUIDs")
    def uuids(self) -> DBusStrList:
        return [gatt.LOCK_SERVICE]

    @dbus_property(_READ, name="ManufacturerData")
    def manufacturer_data(self) -> DBusManufacturerData:
        return {}

    @dbus_property(_READ, name="ServiceData")
    def service_data(self) -> DBusDict:
        return {}

    @dbus_property(_READ, name="Paired")
    def paired(self) -> DBusBool:
        return False

    @dbus_property(_READ, name="Bonded")
    def bonded(self) -> DBusBool:
        return False

    @dbus_property(_READ, name="Trusted")
    def trusted(self) -> DBusBool:
        return False

    @dbus_property(_READ, name="Blocked")
    def blocked(self) -> DBusBool:
        return False

    @dbus_property(_READ, name="LegacyPairing")
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

    def attach(self, link: int) -> None:
        """The link is up: Connected, and the GATT tree exported (before ServicesResolved)."""
        self.link = link
        self.set_connected(True)
        for service in LAYOUT:
            service_path = f"{self.path}/service{service.handle:04x}"
            self._export(service_path, GattService(self.path, service.uuid, service.handle))
            for layout in service.characteristics:
                char_path = f"{service_path}/char{layout.handle:04x}"
                characteristic = GattCharacteristic(self, service_path, layout)
                self.characteristics[layout.role] = characteristic
                self._export(char_path, characteristic)
                if {"notify", "indicate"} & set(layout.flags):
                    descriptor = GattDescriptor(char_path, characteristic)
                    self._export(f"{char_path}/desc{layout.handle + 2:04x}", descriptor)

    def _export(self, path: str, interface: ServiceInterface) -> None:
        self.station.export(path, interface)
        self._gatt_objects.append((path, interface))

    def detach(self, reason: str) -> None:
        """The link is gone: services unresolved, GATT tree removed, Connected false."""
        if self.link is None and not self.connected:
            return
        if self.link is not None:
            self.lock.disconnect(self.link)
            log.info("%s: link %s ended (%s)", self.lock.name, self.link, reason)
        self.link = None
        self.set_services_resolved(False)
        for path, interface in reversed(self._gatt_objects):
            self.station.unexport(path, interface)
        self._gatt_objects.clear()
        self.characteristics.clear()
        self.set_connected(False)

    # --- GATT operations ----------------------------------------------------------------------

    def _require_link(self) -> int:
        if self.link is None:
            raise BluezError.NOT_CONNECTED("Not connected")
        return self.link

    def read(self, role: Role) -> bytes:
        self._require_link()
        if role is Role.BATTERY:
            return bytes((self.lock.battery,))
        if role is Role.FIRMWARE:
            return self.lock.firmware.encode()
        raise BluezError.NOT_PERMITTED("Read not permitted")

    def write(self, role: Role, value: bytes) -> None:
        link = self._require_link()
        channel = Channel.GDIO if role is Role.GDIO else Channel.USDIO
        effects = self.lock.write(link, channel, value, self.station.clock.now())
        # The write's reply goes out first, its indications after: as on the air.
        asyncio.get_running_loop().call_soon(self.apply, effects)
        self.wake.set()

    def subscribe(self, role: Role, *, on: bool) -> None:
        link = self._require_link()
        characteristic = self.characteristics[role]
        characteristic.set_notifying(on)
        if role in (Role.GDIO, Role.USDIO):
            self.lock.set_indications(link, Channel(role.value), on=on)

    def apply(self, effects: list[Effect]) -> None:
        """Make the lock's effects visible on the bus."""
        for effect in effects:
            if isinstance(effect, Indication):
                characteristic = self.characteristics.get(Role(effect.channel.value))
                if effect.link == self.link and characteristic and characteristic.notifying:
                    characteristic.set_value(effect.chunk)
            elif isinstance(effect, LinkDropped):
                if effect.link == self.link:
                    self.detach(effect.reason)
            elif isinstance(effect, BatteryChanged):
                battery = self.characteristics.get(Role.BATTERY)
                if battery is not None and battery.notifying:
                    battery.set_value(bytes((effect.percent,)))


# --- the adapter --------------------------------------------------------------------------------


class Adapter(ServiceInterface):
    """``org.bluez.Adapter1``: discovery and device removal."""

    def __init__(self, station: "Station", address: str, name: str) -> None:
        super().__init__(ADAPTER_INTERFACE)
        self._station = station
        self._address = address
        self._name = name
        self.discovery_sessions = 0

    @property
    def discovering(self) -> bool:
        return self.discovery_sessions > 0

    @dbus_method(name="StartDiscovery")
    def start_discovery(self) -> None:
        was = self.discovering
        self.discovery_sessions += 1
        if not was:
            self.emit_properties_changed({"Discovering": True})
            log.info("discovery started")
        asyncio.get_running_loop().call_soon(self._station.advertise)

    @dbus_method(name="StopDiscovery")
    def stop_discovery(self) -> None:
        if self.discovery_sessions == 0:
            raise BluezError.FAILED("No discovery started")
        self.discovery_sessions -= 1
        if self.discovery_sessions == 0:
            self.emit_properties_changed({"Discovering": False})
            log.info("discovery stopped")

    @dbus_method(name="SetDiscoveryFilter")
    def set_discovery_filter(self, properties: DBusDict) -> None:  # noqa: ARG002
        # Every simulated lock is an LE device that advertises the lock service: no filter
        # that bleak sets would hide one, so the filter is accepted and has no effect.
        return

    @dbus_method(name="GetDiscoveryFilters")
    def get_discovery_filters(self) -> DBusStrList:
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable"]

    @dbus_method(name="RemoveDevice")
    def remove_device(self, device: DBusObjectPath) -> None:
        if not self._station.remove_device(device):
            raise BluezError.DOES_NOT_EXIST("Does Not Exist")

    @dbus_property(_READ, name="Address")
    def address(self) -> DBusStr:
        return self._address

    @dbus_property(_READ, name="AddressType")
    def address_type(self) -> DBusStr:
        return "public"

    @dbus_property(_READ, name="Name")
    def adapter_name(self) -> DBusStr:
        return self._name

    @dbus_property(_READ, name="Alias")
    def alias(self) -> DBusStr:
        return self._name

    @dbus_property(_READ, name="Powered")
    def powered(self) -> DBusBool:
        return True

    @dbus_property(_READ, name="Discoverable")
    def discoverable(self) -> DBusBool:
        return False

    @dbus_property(_READ, name="Pairable")
    def pairable(self) -> DBusBool:
        return False

    @dbus_property(_READ, name="Discovering")
    def discovering_property(self) -> DBusBool:
        return self.discovering

    @dbus_property(_READ, name="Roles")
    def roles(self) -> DBusStrList:
        return ["central", "peripheral"]

    @dbus_property(_READ, name="UUIDs")
    def uuids(self) -> DBusStrList:
        return []


# --- the station --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StationView:
    """What the control interface shows of the whole world."""

    adapter: str
    connection_slots: int
    links: int
    discovering: bool
    time_scale: float
    locks: tuple[LockView, ...]
    most_links: int = 0
    """The most links the adapter held at once since the simulator started."""
    overlapping_connects: int = 0
    """Connects answered InProgress because another one was running (refusals asked for by
    ``refuse-connects`` not counted)."""


class UnknownLockError(LookupError):
    """No lock of that name or address in this world."""


class Station:
    """The simulated station: one adapter, its locks, their clock and their tasks."""

    def __init__(
        self, bus: MessageBus, world: WorldConfig, random_bytes: RandomBytes = os.urandom
    ) -> None:
        self.bus = bus
        self.world = world
        self.adapter_path = f"/org/bluez/{world.adapter.name}"
        self.adapter = Adapter(self, world.adapter.address, world.adapter.name)
        self.clock = Clock(world.adapter.time_scale)
        self.connection_slots = world.adapter.connection_slots
        self.devices = [Device(self, lock.build(random_bytes)) for lock in world.locks]
        self._by_path = {device.path: device for device in self.devices}
        self._exported: set[str] = set()
        self._connecting: Device | None = None
        self.most_links = 0
        self.overlapping_connects = 0
        self._calls: set[asyncio.Task[object]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # --- objects on the bus -------------------------------------------------------------------

    def export(self, path: str, interface: ServiceInterface) -> None:
        self.bus.export(path, interface)
        self._exported.add(path)

    def unexport(self, path: str, interface: ServiceInterface) -> None:
        self.bus.unexport(path, interface)
        self._exported.discard(path)

    def _unknown_object(self, message: Message) -> Message | None:
        """bluetoothd answers calls on a device it has forgotten with UnknownObject."""
        path = message.path or ""
        if (
            message.message_type is MessageType.METHOD_CALL
            and path.startswith(self.adapter_path + "/")
            and path not in self._exported
        ):
            return Message.new_error(
                message, BluezError.UNKNOWN_OBJECT.value, f"Method on unknown object {path}"
            )
        return None

    # --- connections --------------------------------------------------------------------------

    def links_in_use(self) -> int:
        return sum(device.link is not None for device in self.devices)

    async def connect(self, device: Device) -> None:
        """``Device1.Connect``: one attempt per adapter at a time, ``connect_ms`` to resolve."""
        if device.connected and device.services_resolved:
            return
        lock = device.lock
        if self._connecting is not None:
            self.overlapping_connects += 1
            raise BluezError.IN_PROGRESS("In Progress")
        if lock.refuse_connects > 0:
            lock.refuse_connects -= 1
            log.info("%s: Connect refused (InProgress), %s more", lock.name, lock.refuse_connects)
            raise BluezError.IN_PROGRESS("In Progress")
        task = asyncio.current_task()
        assert task is not None
        self._calls.add(task)
        self._connecting = device
        device.abort_connect.clear()
        try:
            await self._connect(device)
        finally:
            self._connecting = None
            self._calls.discard(task)

    async def _connect(self, device: Device) -> None:
        lock = device.lock
        half = lock.connect_ms / 2000
        if await self._aborted(device, half):
            raise BluezError.FAILED("Operation aborted")
        if not lock.in_range or not device.exported:
            raise BluezError.FAILED(CONNECTION_ABORTED)
        try:
            link = self._take_slot(lock)
        except NoFreeLink as err:
            # bluetoothd reports the link it could not keep as connected, then gone.
            log.info("%s: Connect aborted: %s", lock.name, err)
            device.set_connected(True)
            device.set_connected(False)
            raise BluezError.FAILED(CONNECTION_ABORTED) from err
        device.attach(link)
        log.info("%s: link %s up", lock.name, link)
        if await self._aborted(device, half):
            device.detach("connect cancelled")
            raise BluezError.FAILED("Operation aborted")
        device.set_services_resolved(True)

    def _take_slot(self, lock: Lock) -> int:
        if self.links_in_use() >= self.connection_slots:
            raise NoFreeLink(f"the adapter holds {self.connection_slots} links")
        link = lock.connect()
        self.most_links = max(self.most_links, self.links_in_use() + 1)
        return link

    async def _aborted(self, device: Device, seconds: float) -> bool:
        try:
            async with asyncio.timeout(self.clock.real(seconds)):
                await device.abort_connect.wait()
        except TimeoutError:
            return False
        return True

    def disconnect(self, device: Device) -> None:
        """``Device1.Disconnect``: cancels a pending Connect, ends a link; else nothing to do."""
        if self._connecting is device:
            device.abort_connect.set()
        device.detach("disconnected by the host")

    def remove_device(self, path: str) -> bool:
        device = self._by_path.get(path)
        if device is None or not device.exported:
            return False
        self.forget(device)
        return True

    def forget(self, device: Device) -> None:
        """The adapter forgets the device: link ended, object gone (UnknownObject from now)."""
        if self._connecting is device:
            device.abort_connect.set()
        device.detach("device removed")
        if device.exported:
            self.unexport(device.path, device)
            device.exported = False

    # --- advertising --------------------------------------------------------------------------

    def advertise(self) -> None:
        """One round of advertisements heard: new locks appear, known ones update their RSSI."""
        if not self.adapter.discovering:
            return
        for device in self.devices:
            if not device.lock.in_range:
                continue
            if not device.exported:
                self.export(device.path, device)
                device.exported = True
                log.info("%s: discovered at %s dBm", device.lock.name, device.lock.rssi)
            elif not device.connected:
                device.emit_properties_changed({"RSSI": device.lock.rssi})

    async def _advertiser(self) -> None:
        interval = max(MIN_REAL_INTERVAL_S, self.clock.real(ADVERTISING_INTERVAL_S))
        while True:
            await asyncio.sleep(interval)
            self.advertise()

    async def _run_timers(self, device: Device) -> None:
        """Wake the lock when its next deadline (motor, dropped link) comes."""
        while True:
            device.wake.clear()
            deadline = device.lock.next_deadline()
            timeout = (
                None if deadline is None else max(0.0, self.clock.real(deadline - self.clock.now()))
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await device.wake.wait()
            device.apply(device.lock.advance(self.clock.now()))

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Export the adapter and start the advertiser and every lock's timers."""
        self.bus.add_message_handler(self._unknown_object)
        self.export(self.adapter_path, self.adapter)
        self.spawn(self._advertiser(), "advertiser")
        for device in self.devices:
            self.spawn(self._run_timers(device), f"timers {device.lock.name}")

    def spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` as a task the station owns: :meth:`stop` cancels and awaits it.

        Not a TaskGroup around the caller's block: an error of the caller's (a failed assertion
        in a test) must come out as itself, not wrapped in an ExceptionGroup.
        """
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("simulator task %r failed", task.get_name(), exc_info=error)

    async def stop(self) -> None:
        """Cancel and await the station's tasks and the D-Bus calls still running."""
        tasks = [*self._calls, *self._tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def power_off(self) -> None:
        """As bluetoothd going down: every link ends and every object leaves the bus.

        Clients still connected see Connected turn false and the objects removed, rather than a
        bus name that silently stops answering.
        """
        for device in self.devices:
            self._act(device, device.lock.drop_links("simulator stopping"))
            self.forget(device)
        if self.adapter_path in self._exported:
            self.unexport(self.adapter_path, self.adapter)

    # --- the world's levers (control interface, scenarios) ------------------------------------

    def find(self, lock: str) -> Device:
        wanted = lock.strip().upper()
        for device in self.devices:
            if wanted in (device.lock.name.upper(), device.lock.address.upper()):
                return device
        raise UnknownLockError(f"no lock {lock!r} in this world")

    def _act(self, device: Device, effects: list[Effect]) -> None:
        device.apply(effects)
        device.wake.set()

    def close_by_hand(self, lock: str) -> None:
        device = self.find(lock)
        self._act(device, device.lock.close_by_hand(self.clock.now()))

    def open_by_hand(self, lock: str) -> None:
        device = self.find(lock)
        self._act(device, device.lock.open_by_hand(self.clock.now()))

    def jam(self, lock: str, count: int = 1) -> None:
        self.find(lock).lock.jam(count)

    def set_battery(self, lock: str, percent: int) -> None:
        device = self.find(lock)
        self._act(device, device.lock.set_battery(percent))

    def set_in_range(self, lock: str, in_range: bool) -> None:
        device = self.find(lock)
        device.lock.in_range = in_range
        if not in_range:
            self._act(device, device.lock.drop_links("out of range"))
            self.forget(device)
        else:
            self.advertise()

    def set_alarm(self, lock: str, on: bool) -> None:
        device = self.find(lock)
        self._act(device, device.lock.set_alarm(on))

    def set_bike_moving(self, lock: str, moving: bool) -> None:
        self.find(lock).lock.set_bike_moving(moving)

    def set_sensor_fault(self, lock: str, fault: bool) -> None:
        self.find(lock).lock.set_sensor_fault(fault)

    def set_rssi(self, lock: str, rssi: int) -> None:
        device = self.find(lock)
        device.lock.rssi = rssi
        if device.exported:
            device.emit_properties_changed({"RSSI": rssi})

    def drop_link(self, lock: str) -> None:
        device = self.find(lock)
        self._act(device, device.lock.drop_links("link dropped"))

    def refuse_connects(self, lock: str, count: int) -> None:
        self.find(lock).lock.refuse_connects = max(0, count)

    def set_slots(self, slots: int) -> None:
        self.connection_slots = max(0, slots)

    def set_motor_ms(self, lock: str, motor_ms: int) -> None:
        self.find(lock).lock.motor_ms = max(0, motor_ms)

    def power_cycle(self, lock: str) -> None:
        device = self.find(lock)
        self._act(device, device.lock.power_cycle())

    def view(self) -> StationView:
        return StationView(
            adapter=self.world.adapter.address,
            connection_slots=self.connection_slots,
            links=self.links_in_use(),
            discovering=self.adapter.discovering,
            time_scale=self.clock.time_scale,
            locks=tuple(device.lock.view() for device in self.devices),
            most_links=self.most_links,
            overlapping_connects=self.overlapping_connects,
        )
