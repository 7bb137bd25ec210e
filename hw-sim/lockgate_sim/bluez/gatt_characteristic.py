"""``org.bluez.GattCharacteristic1``: a connected lock's characteristic on the bus.

A characteristic object exists while its lock's link is up (the device exports the GATT tree of
:mod:`.gatt_service` when the link comes up). It checks each call as bluetoothd checks it (the
options' types, the offset, the characteristic's flags, whether a notify session exists) and hands
what passes to its :class:`~lockgate_sim.bluez.device.Device`, which turns it into a call on the
lock's firmware. The lock's indications come back through :meth:`GattCharacteristic.set_value`:
with notifications on, a PropertiesChanged of ``Value`` is what bleak delivers as a notification.
"""

from typing import Protocol

from dbus_fast import Variant
from dbus_fast.annotations import DBusBool, DBusBytes, DBusDict, DBusObjectPath, DBusStr, DBusUInt16
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from lockgate.protocol import gatt
from lockgate_sim.bluez.dbus_types import READ, DBusStrList
from lockgate_sim.bluez.errors import INVALID_ARGUMENTS_TEXT, BluezError
from lockgate_sim.bluez.gatt_service import CharacteristicLayout, Role


class CharacteristicHost(Protocol):
    """What a characteristic asks of its device: a read, a write, notifications on or off."""

    async def read(self, role: Role) -> bytes: ...

    async def write(self, role: Role, value: bytes) -> None: ...

    async def subscribe(self, role: Role, *, on: bool) -> None: ...


CHARACTERISTIC_INTERFACE = "org.bluez.GattCharacteristic1"
WRITE_TYPES = ("command", "request", "reliable")
"""The values bluetoothd accepts for WriteValue's ``type`` option."""


def write_options(options: dict[str, Variant]) -> tuple[int, str | None]:
    """The ``offset`` and ``type`` of WriteValue's options, checked as bluetoothd checks them.

    bluetoothd matches the keys without regard to case, wants ``offset`` as a uint16 and ``type``
    as a string naming a write it knows, ignores every other key, and answers anything else with
    InvalidArguments before it looks at the characteristic at all.
    """
    offset, kind = 0, None
    for key, variant in options.items():
        if key.lower() == "offset":
            if variant.signature != "q":
                raise BluezError.INVALID_ARGUMENTS(INVALID_ARGUMENTS_TEXT)
            offset = variant.value
        elif key.lower() == "type":
            if variant.signature != "s" or variant.value.lower() not in WRITE_TYPES:
                raise BluezError.INVALID_ARGUMENTS(INVALID_ARGUMENTS_TEXT)
            kind = variant.value.lower()
    return offset, kind


class GattCharacteristic(ServiceInterface):
    """``org.bluez.GattCharacteristic1``: reads, writes with response, indications."""

    def __init__(
        self, device: CharacteristicHost, service_path: str, layout: CharacteristicLayout
    ) -> None:
        super().__init__(CHARACTERISTIC_INTERFACE)
        self._device = device
        self._service_path = service_path
        self.layout = layout
        self.value = b""
        self.notifying = False

    def reset(self) -> None:
        """As a new link finds it: no value cached, notifications off (off the bus: no signal)."""
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
    async def read_value(self, options: DBusDict) -> DBusBytes:  # noqa: ARG002 - BlueZ's
        if "read" not in self.layout.flags:
            raise BluezError.NOT_PERMITTED("Read not permitted")
        self.value = await self._device.read(self.layout.role)
        return self.value

    @dbus_method(name="WriteValue")
    async def write_value(self, value: DBusBytes, options: DBusDict) -> None:
        offset, kind = write_options(options)
        if "write" not in self.layout.flags:
            raise BluezError.NOT_PERMITTED("Write not permitted")
        if kind == "command":
            raise BluezError.NOT_SUPPORTED("Operation is not supported")
        if len(value) > gatt.ATT_MTU - 3:
            raise BluezError.INVALID_ARGUMENTS("Invalid Length")
        # A write at an offset continues the attribute's value (a long write); the lock answers
        # an offset past the value's end with ATT's Invalid Offset, which bluetoothd reports so.
        if offset > len(self.value):
            raise BluezError.INVALID_OFFSET("Invalid offset")
        await self._device.write(self.layout.role, self.value[:offset] + bytes(value))

    @dbus_method(name="StartNotify")
    async def start_notify(self) -> None:
        if not self.layout.notifies:
            raise BluezError.NOT_SUPPORTED("Operation is not supported")
        await self._device.subscribe(self.layout.role, on=True)

    @dbus_method(name="StopNotify")
    async def stop_notify(self) -> None:
        if not self.notifying:
            raise BluezError.FAILED("No notify session started")
        await self._device.subscribe(self.layout.role, on=False)

    @dbus_property(READ, name="UUID")
    def uuid(self) -> DBusStr:
        return self.layout.uuid

    @dbus_property(READ, name="Service")
    def service(self) -> DBusObjectPath:
        return self._service_path

    @dbus_property(READ, name="Value")
    def value_property(self) -> DBusBytes:
        return self.value

    @dbus_property(READ, name="Notifying")
    def notifying_property(self) -> DBusBool:
        return self.notifying

    @dbus_property(READ, name="Flags")
    def flags(self) -> DBusStrList:
        return list(self.layout.flags)

    @dbus_property(READ, name="Handle")
    def handle(self) -> DBusUInt16:
        return self.layout.handle

    @dbus_property(READ, name="MTU")
    def mtu(self) -> DBusUInt16:
        return gatt.ATT_MTU
