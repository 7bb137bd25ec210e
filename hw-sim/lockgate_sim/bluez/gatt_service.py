"""``org.bluez.GattService1`` and the shape of a lock's GATT tree.

While a lock is connected, its device object has the lock's attribute table below it: the
services of :data:`LAYOUT`, each with its characteristics (:mod:`.gatt_characteristic`) and, for
those that indicate, a Client Characteristic Configuration descriptor (:mod:`.gatt_descriptor`).
The device (:mod:`.device`) builds the tree from :data:`LAYOUT` when the link comes up and removes
it when the link ends. A service object only describes itself: bleak reads its properties from
GetManagedObjects and finds its characteristics by their ``Service`` property.
"""

from dataclasses import dataclass
from enum import Enum

from dbus_fast.annotations import DBusBool, DBusObjectPath, DBusStr, DBusUInt16
from dbus_fast.service import ServiceInterface, dbus_property

from lockgate.protocol import gatt
from lockgate_sim.bluez.dbus_types import READ, DBusPathList
from lockgate_sim.linklayer import Characteristic, DiscoveryCost, Service, discovery_cost

SERVICE_INTERFACE = "org.bluez.GattService1"


class Role(Enum):
    """What a characteristic of the lock's GATT tree is for."""

    GDIO = "GDIO"
    USDIO = "USDIO"
    BATTERY = "battery level"
    FIRMWARE = "firmware revision"


@dataclass(frozen=True, slots=True)
class CharacteristicLayout:
    role: Role
    uuid: str
    flags: tuple[str, ...]
    handle: int

    @property
    def notifies(self) -> bool:
        return bool({"notify", "indicate"} & set(self.flags))


@dataclass(frozen=True, slots=True)
class ServiceLayout:
    uuid: str
    handle: int
    characteristics: tuple[CharacteristicLayout, ...]


# Handles as a lock's attribute table would number them; bleak takes them from the object paths.
LAYOUT = (
    ServiceLayout(
        gatt.BATTERY_SERVICE,
        0x000A,
        (CharacteristicLayout(Role.BATTERY, gatt.BATTERY_LEVEL, ("read", "notify"), 0x000B),),
    ),
    ServiceLayout(
        gatt.DEVICE_INFORMATION_SERVICE,
        0x000E,
        (CharacteristicLayout(Role.FIRMWARE, gatt.FIRMWARE_REVISION, ("read",), 0x000F),),
    ),
    ServiceLayout(
        gatt.LOCK_SERVICE,
        0x0011,
        (
            CharacteristicLayout(Role.GDIO, gatt.GDIO, ("write", "indicate"), 0x0012),
            CharacteristicLayout(Role.USDIO, gatt.USDIO, ("write", "indicate"), 0x0015),
        ),
    ),
)


GAP_AND_GATT = (
    # Generic Access (0x1800): Device Name, Appearance; Generic Attribute (0x1801): Service
    # Changed and its CCCD. Every LE device has both, in the handles before LAYOUT's (0x0001 to
    # 0x0009); bluetoothd keeps them for itself and exports neither on D-Bus.
    Service(0x0001, 0x0005, 2, (Characteristic(0x0002, 2, 0), Characteristic(0x0004, 2, 0))),
    Service(0x0006, 0x0009, 2, (Characteristic(0x0007, 2, 1),)),
)


def _uuid_bytes(uuid: str) -> int:
    """2 for a UUID of the Bluetooth base (a 16-bit one on the air), else 16."""
    return 2 if uuid.endswith("-0000-1000-8000-00805f9b34fb") else 16


def attribute_table() -> tuple[Service, ...]:
    """The lock's whole attribute table as GATT discovery meets it: GAP, GATT, then LAYOUT."""
    services = list(GAP_AND_GATT)
    for index, service in enumerate(LAYOUT):
        chars = tuple(
            Characteristic(c.handle, _uuid_bytes(c.uuid), int(c.notifies))
            for c in service.characteristics
        )
        if index + 1 < len(LAYOUT):
            end = LAYOUT[index + 1].handle - 1
        else:
            end = max(c.declaration + 1 + c.descriptors for c in chars)
        services.append(Service(service.handle, end, _uuid_bytes(service.uuid), chars))
    return tuple(services)


DISCOVERY: DiscoveryCost = discovery_cost(attribute_table())
"""What a first connect's GATT discovery of a lock costs, in round trips (25 at MTU 23)."""


class GattService(ServiceInterface):
    """``org.bluez.GattService1`` of a connected lock."""

    def __init__(self, device_path: str, uuid: str, handle: int) -> None:
        super().__init__(SERVICE_INTERFACE)
        self._device_path = device_path
        self._uuid = uuid
        self._handle = handle

    @dbus_property(READ, name="UUID")
    def uuid(self) -> DBusStr:
        return self._uuid

    @dbus_property(READ, name="Device")
    def device(self) -> DBusObjectPath:
        return self._device_path

    @dbus_property(READ, name="Primary")
    def primary(self) -> DBusBool:
        return True

    @dbus_property(READ, name="Includes")
    def includes(self) -> DBusPathList:
        return []

    @dbus_property(READ, name="Handle")
    def handle(self) -> DBusUInt16:
        return self._handle
