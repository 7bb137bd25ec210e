"""The radio's failures, typed once, here at the edge where bleak and BlueZ raise them.

bleak and bleak-retry-connector raise a handful of exception classes whose meaning sits partly in a
D-Bus error name. :func:`connect_failure` and :func:`link_failure` turn them into one
:class:`OperationError` with an :class:`~lockgate.radio.Outcome` and a reason a person can
act on; nothing above this module looks at a bleak exception. They read the typed D-Bus error name
that bleak keeps (``BleakDBusError.dbus_error``), never an exception's message text.
"""

from __future__ import annotations

import asyncio

from bleak.exc import BleakDBusError, BleakDeviceNotFoundError, BleakError
from bleak_retry_connector import (
    BleakAbortedError,
    BleakNotFoundError,
    BleakOutOfConnectionSlotsError,
)

from lockgate.errors import LockgateError
from lockgate.radio import Outcome

BLUEZ_IN_PROGRESS = "org.bluez.Error.InProgress"
BLUEZ_FAILED = "org.bluez.Error.Failed"
BLUEZ_NOT_CONNECTED = "org.bluez.Error.NotConnected"
DBUS_UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
ABORT_BY_LOCAL = "le-connection-abort-by-local"


class OperationError(LockgateError):
    """An operation on a lock ended early, for a typed reason."""

    def __init__(self, outcome: Outcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason


class AdapterError(LockgateError):
    """The adapter cannot be used at all: BlueZ is not on the bus, the bus cannot be reached, or
    it has no adapter of that name. Raised once, at the driver's start: nothing can work."""


def adapter_failure(exc: BaseException, adapter: str) -> AdapterError:
    """Why the driver could not start scanning on ``adapter``."""
    names = {e.dbus_error for e in _dbus_errors(exc)}
    if DBUS_UNKNOWN_OBJECT in names:
        return AdapterError(f"BlueZ has no adapter {adapter}")
    if any(name.startswith("org.freedesktop.DBus.Error.") for name in names):
        listed = ", ".join(sorted(names))
        return AdapterError(f"BlueZ is not answering on the system bus ({listed})")
    if isinstance(exc, OSError | EOFError):
        return AdapterError(f"the system bus cannot be reached: {type(exc).__name__}: {exc}")
    if isinstance(exc, BleakError):
        return AdapterError(f"the adapter {adapter} cannot be used: {exc}")
    raise exc


def _dbus_errors(exc: BaseException) -> list[BleakDBusError]:
    """Every BleakDBusError in the cause/context chain of ``exc``, outermost first."""
    found: list[BleakDBusError] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, BleakDBusError):
            found.append(current)
        current = current.__cause__ or current.__context__
    return found


def connect_failure(exc: BaseException, *, aborts: int = 0) -> OperationError:
    """Why a connection attempt (bleak-retry-connector's establish_connection) failed.

    ``aborts`` counts the links the adapter opened and at once aborted during the attempt (BlueZ's
    ``le-connection-abort-by-local``, which bleak retries silently until its timeout).
    """
    names = {e.dbus_error for e in _dbus_errors(exc)}
    details = {e.dbus_error_details for e in _dbus_errors(exc)}
    if BLUEZ_IN_PROGRESS in names:
        return OperationError(
            Outcome.BUSY,
            "BlueZ kept answering InProgress: another connection attempt held the "
            "adapter (is another program using it?)",
        )
    if isinstance(exc, BleakOutOfConnectionSlotsError) or ABORT_BY_LOCAL in details or aborts:
        return OperationError(
            Outcome.NO_SLOT,
            "the adapter aborted the connection (le-connection-abort-by-local): it has no free "
            "connection slot, or the radio is disturbed; fewer links or another adapter may help",
        )
    if DBUS_UNKNOWN_OBJECT in names or isinstance(
        exc, BleakNotFoundError | BleakDeviceNotFoundError
    ):
        return OperationError(
            Outcome.UNREACHABLE, "the lock is not in range (BlueZ does not know it or lost it)"
        )
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return OperationError(Outcome.UNREACHABLE, "no connection to the lock in time")
    if isinstance(exc, BleakAbortedError):
        return OperationError(Outcome.UNREACHABLE, "the connection attempts were aborted")
    if isinstance(exc, EOFError | BrokenPipeError | ConnectionError):
        return OperationError(Outcome.UNREACHABLE, "the D-Bus connection to BlueZ broke")
    if isinstance(exc, BleakError):
        return OperationError(Outcome.UNREACHABLE, f"could not connect: {type(exc).__name__}")
    raise exc


def link_failure(exc: BaseException, doing: str) -> OperationError:
    """Why a GATT step (subscribe, write, read) on an open link failed."""
    names = {e.dbus_error for e in _dbus_errors(exc)}
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return OperationError(Outcome.TIMED_OUT, f"no answer from the lock while {doing}")
    if BLUEZ_NOT_CONNECTED in names or DBUS_UNKNOWN_OBJECT in names:
        return OperationError(Outcome.LINK_LOST, f"the link dropped while {doing}")
    if isinstance(exc, BleakError | EOFError | BrokenPipeError | ConnectionError):
        return OperationError(Outcome.LINK_LOST, f"the link failed while {doing}")
    raise exc
