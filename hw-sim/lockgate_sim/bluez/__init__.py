"""The BlueZ front: the objects bluetoothd serves on D-Bus, backed by the firmware models.

bleak's BlueZ backend (and bleak-retry-connector on top of it) talks to this package exactly as it
talks to bluetoothd on a station: ``org.bluez`` owns ``/org/bluez/hci0`` (:mod:`.adapter`,
``Adapter1``; one per adapter of the world, each a :mod:`.radio`), a ``Device1`` per lock the
adapter has seen (:mod:`.device`), and, while a lock is
connected, its GATT tree (:mod:`.gatt_service`, :mod:`.gatt_characteristic`,
:mod:`.gatt_descriptor`). :mod:`.objects` is the root: the registry of what is exported, the
UnknownObject answer for anything else below ``/org/bluez``, and the clients calling and leaving.
:mod:`.station` is the world behind it all; :mod:`.errors` holds bluetoothd's error names. The
firmware (:mod:`lockgate_sim.firmware`) knows nothing of D-Bus; the control interface and the
scenarios act through :class:`Station`.
"""

from lockgate_sim.bluez.adapter import Adapter
from lockgate_sim.bluez.device import Device, device_path
from lockgate_sim.bluez.errors import CONNECTION_ABORTED, BluezError
from lockgate_sim.bluez.gatt_characteristic import GattCharacteristic
from lockgate_sim.bluez.gatt_descriptor import GattDescriptor
from lockgate_sim.bluez.gatt_service import LAYOUT, GattService, Role
from lockgate_sim.bluez.objects import BLUEZ, ObjectTree
from lockgate_sim.bluez.radio import Radio
from lockgate_sim.bluez.station import (
    AdapterView,
    NameTakenError,
    RefusedError,
    Station,
    StationView,
    UnknownAdapterError,
    UnknownLockError,
)
from lockgate_sim.bluez.units import Clock, LockUnit

__all__ = [
    "BLUEZ",
    "CONNECTION_ABORTED",
    "LAYOUT",
    "Adapter",
    "AdapterView",
    "BluezError",
    "Clock",
    "Device",
    "GattCharacteristic",
    "GattDescriptor",
    "GattService",
    "LockUnit",
    "NameTakenError",
    "ObjectTree",
    "Radio",
    "RefusedError",
    "Role",
    "Station",
    "StationView",
    "UnknownAdapterError",
    "UnknownLockError",
    "device_path",
]
