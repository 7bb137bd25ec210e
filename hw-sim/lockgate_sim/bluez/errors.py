"""BlueZ's error names, as bluetoothd answers D-Bus calls with them.

Every interface of the fake bluetoothd raises its errors from here, so the daemon's error handling
meets in tests exactly the names (and, where callers match on it, the text) that it meets on a
station. The names and texts are those of bluetoothd's ``src/error.c`` and of the D-Bus
specification for objects that do not exist.
"""

from enum import Enum

from dbus_fast import DBusError


class BluezError(Enum):
    """The error names bluetoothd answers with, where it answers with them."""

    IN_PROGRESS = "org.bluez.Error.InProgress"
    FAILED = "org.bluez.Error.Failed"
    NOT_CONNECTED = "org.bluez.Error.NotConnected"
    NOT_PERMITTED = "org.bluez.Error.NotPermitted"
    NOT_SUPPORTED = "org.bluez.Error.NotSupported"
    INVALID_ARGUMENTS = "org.bluez.Error.InvalidArguments"
    INVALID_OFFSET = "org.bluez.Error.InvalidOffset"
    DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"
    NOT_READY = "org.bluez.Error.NotReady"
    UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"

    def __call__(self, text: str) -> DBusError:
        return DBusError(self.value, text)


CONNECTION_ABORTED = "le-connection-abort-by-local"
"""The reason bluetoothd gives when the controller could not keep (or make) an LE link."""

INVALID_ARGUMENTS_TEXT = "Invalid arguments in method call"
"""bluetoothd's text for InvalidArguments (``btd_error_invalid_args``)."""

NOT_READY_TEXT = "Resource Not Ready"
"""bluetoothd's text for NotReady (``btd_error_not_ready``): the adapter is powered off."""
