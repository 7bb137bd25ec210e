"""``org.bluez.GattDescriptor1``: the Client Characteristic Configuration of a characteristic.

Only characteristics that notify or indicate have one (the device exports it below the
characteristic when the link comes up). Its value mirrors the characteristic's notify state;
bluetoothd refuses writes to it, since clients turn notifications on with StartNotify.
"""

from dbus_fast.annotations import DBusBytes, DBusDict, DBusObjectPath, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from lockgate.protocol import gatt
from lockgate_sim.bluez.dbus_types import READ, DBusStrList
from lockgate_sim.bluez.errors import BluezError
from lockgate_sim.bluez.gatt_characteristic import GattCharacteristic

DESCRIPTOR_INTERFACE = "org.bluez.GattDescriptor1"


class GattDescriptor(ServiceInterface):
    """The Client Characteristic Configuration descriptor of an indicating characteristic."""

    def __init__(self, characteristic_path: str, characteristic: GattCharacteristic) -> None:
        super().__init__(DESCRIPTOR_INTERFACE)
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

    @dbus_property(READ, name="UUID")
    def uuid(self) -> DBusStr:
        return gatt.CLIENT_CHARACTERISTIC_CONFIGURATION

    @dbus_property(READ, name="Characteristic")
    def characteristic(self) -> DBusObjectPath:
        return self._characteristic_path

    @dbus_property(READ, name="Value")
    def value(self) -> DBusBytes:
        return self._cccd()

    @dbus_property(READ, name="Flags")
    def flags(self) -> DBusStrList:
        return ["read", "write"]
