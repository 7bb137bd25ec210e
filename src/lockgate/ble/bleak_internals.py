"""The one place the driver reaches into bleak's private state, pinned (pyproject.toml) and checked
by ``tests/ble/test_bleak_internals.py``, which names what moved when a new bleak changes it.

bleak keeps one ``BlueZManager`` per event loop: a cache of every BlueZ object and property, fed by
signals, which its clients and scanners read. It resets that cache only when its D-Bus connection
dies, not when bluetoothd restarts on a living bus: after a restart its clients still believe
their links connected (no ``Connected`` false ever comes) and every write fails. The driver, when
the ``org.bluez`` name changes hands, ends the manager's bus connection itself: bleak then does what
it does for a lost bus (every client told it is disconnected, the cache dropped) and joins again on
its next use, with the new bluetoothd's objects.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bleak.backends.bluezdbus import manager as _manager

from lockgate.errors import LockgateError

PINNED = "3.1.0"
"""The bleak release this module was written against (pyproject.toml pins it)."""


class InternalsMovedError(LockgateError):
    """bleak no longer has what this module relies on; the message names it."""


def _instances() -> dict[asyncio.AbstractEventLoop, Any]:
    instances = getattr(_manager, "_global_instances", None)
    if not isinstance(instances, dict):
        raise InternalsMovedError(
            "bleak.backends.bluezdbus.manager._global_instances (one BlueZManager per event loop)"
            " is gone or no longer a dict"
        )
    return instances


def check() -> None:
    """Raise :class:`InternalsMovedError` naming the first thing that moved."""
    _instances()
    manager_type = getattr(_manager, "BlueZManager", None)
    if manager_type is None:
        raise InternalsMovedError("bleak.backends.bluezdbus.manager.BlueZManager is gone")
    for name in ("_handle_bus_disconnect", "async_init"):
        if not callable(getattr(manager_type, name, None)):
            raise InternalsMovedError(f"BlueZManager.{name} is gone")
    probe = manager_type()
    if not hasattr(probe, "_bus"):
        raise InternalsMovedError("BlueZManager._bus (its D-Bus connection) is gone")


def forget_bluez() -> bool:
    """End the running loop's bleak manager's D-Bus connection, so that bleak treats every link
    as lost and reads BlueZ afresh on its next use; False if it had none open."""
    manager = _instances().get(asyncio.get_running_loop())
    if manager is None:
        return False
    bus = getattr(manager, "_bus", None)
    if bus is None or not getattr(bus, "connected", False):
        return False
    bus.disconnect()
    return True
