"""D-Bus type annotations the simulator's BlueZ interfaces share.

dbus-fast derives each method's and property's D-Bus signature from its annotations; the few
container types bluetoothd uses that dbus-fast has no ready name for are spelled here once.
"""

from typing import Annotated

from dbus_fast import Variant
from dbus_fast.annotations import DBusSignature
from dbus_fast.constants import PropertyAccess

DBusStrList = Annotated[list[str], DBusSignature("as")]
DBusPathList = Annotated[list[str], DBusSignature("ao")]
DBusManufacturerData = Annotated[dict[int, Variant], DBusSignature("a{qv}")]

READ = PropertyAccess.READ
