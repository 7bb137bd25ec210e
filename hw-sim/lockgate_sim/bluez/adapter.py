"""``org.bluez.Adapter1``: one Bluetooth adapter, its power, discovery and device removal.

The adapter object is the first thing bleak looks for (it reads ``Roles`` and fails without it).
Discovery is kept as bluetoothd keeps it: one session per client, by the caller's unique bus
name (:attr:`~lockgate_sim.bluez.objects.ObjectTree.caller`). A client may hold one session;
``Discovering`` is true while any session is open, and a session ends when its client calls
StopDiscovery or leaves the bus, or the adapter powers off (then StartDiscovery answers
NotReady until it is on again). While discovering, the adapter's
:class:`~lockgate_sim.bluez.radio.Radio` hears the locks in its range.
"""

import logging
from typing import Protocol

from dbus_fast.annotations import DBusBool, DBusDict, DBusObjectPath, DBusStr
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

from lockgate_sim.bluez.dbus_types import READ, DBusStrList
from lockgate_sim.bluez.errors import NOT_READY_TEXT, BluezError
from lockgate_sim.bluez.objects import ObjectTree


class AdapterHost(Protocol):
    """What the adapter asks of the radio behind it (:class:`~.radio.Radio`): who is calling,
    whether it is powered, advertising, and forgetting a device."""

    @property
    def objects(self) -> ObjectTree: ...

    @property
    def powered(self) -> bool: ...

    def set_powered(self, powered: bool) -> None: ...

    def discovery_started(self) -> None: ...

    def remove_device(self, path: str) -> bool: ...


log = logging.getLogger("lockgate_sim")

ADAPTER_INTERFACE = "org.bluez.Adapter1"


class Adapter(ServiceInterface):
    """``org.bluez.Adapter1``: discovery and device removal."""

    def __init__(self, station: AdapterHost, address: str, name: str) -> None:
        super().__init__(ADAPTER_INTERFACE)
        self._station = station
        self._address = address
        self._name = name
        self._discovery_clients: set[str] = set()

    @property
    def discovering(self) -> bool:
        return bool(self._discovery_clients)

    @property
    def discovery_clients(self) -> frozenset[str]:
        """The unique bus names of the clients holding a discovery session."""
        return frozenset(self._discovery_clients)

    def client_left(self, client: str) -> None:
        """A client left the bus: its discovery session ends with it."""
        if client in self._discovery_clients:
            log.info("discovery client %s left the bus", client)
            self._end_session(client)

    def _end_session(self, client: str) -> None:
        self._discovery_clients.discard(client)
        if not self._discovery_clients:
            self.emit_properties_changed({"Discovering": False})
            log.info("%s: discovery stopped", self._name)

    def end_discovery(self) -> None:
        """Every discovery session ends at once (the adapter powered off)."""
        if self._discovery_clients:
            self._discovery_clients.clear()
            self.emit_properties_changed({"Discovering": False})
            log.info("%s: discovery stopped", self._name)

    def powered_changed(self, powered: bool) -> None:
        self.emit_properties_changed({"Powered": powered, "PowerState": "on" if powered else "off"})

    @dbus_method(name="StartDiscovery")
    def start_discovery(self) -> None:
        client = self._station.objects.caller
        if not self._station.powered:
            raise BluezError.NOT_READY(NOT_READY_TEXT)
        if client in self._discovery_clients:
            raise BluezError.IN_PROGRESS("Operation already in progress")
        self._discovery_clients.add(client)
        if len(self._discovery_clients) == 1:
            self.emit_properties_changed({"Discovering": True})
            log.info("%s: discovery started", self._name)
        self._station.discovery_started()

    @dbus_method(name="StopDiscovery")
    def stop_discovery(self) -> None:
        client = self._station.objects.caller
        if not self._station.powered:
            raise BluezError.NOT_READY(NOT_READY_TEXT)
        if client not in self._discovery_clients:
            raise BluezError.FAILED("No discovery started")
        self._end_session(client)

    @dbus_method(name="SetDiscoveryFilter")
    def set_discovery_filter(self, properties: DBusDict) -> None:  # noqa: ARG002
        if not self._station.powered:
            raise BluezError.NOT_READY(NOT_READY_TEXT)
        # Every simulated lock is an LE device that advertises the lock service: no filter
        # that bleak sets would hide one, so the filter is accepted and has no effect.

    @dbus_method(name="GetDiscoveryFilters")
    def get_discovery_filters(self) -> DBusStrList:
        return ["UUIDs", "RSSI", "Pathloss", "Transport", "DuplicateData", "Discoverable"]

    @dbus_method(name="RemoveDevice")
    def remove_device(self, device: DBusObjectPath) -> None:
        if not self._station.powered:
            raise BluezError.NOT_READY(NOT_READY_TEXT)
        if not self._station.remove_device(device):
            raise BluezError.DOES_NOT_EXIST("Does Not Exist")

    @dbus_property(READ, name="Address")
    def address(self) -> DBusStr:
        return self._address

    @dbus_property(READ, name="AddressType")
    def address_type(self) -> DBusStr:
        return "public"

    @dbus_property(READ, name="Name")
    def adapter_name(self) -> DBusStr:
        return self._name

    @dbus_property(READ, name="Alias")
    def alias(self) -> DBusStr:
        return self._name

    @dbus_property(name="Powered")
    def powered(self) -> DBusBool:
        return self._station.powered

    @powered.setter
    def powered_setter(self, powered: DBusBool) -> None:
        """``bluetoothctl power off`` sets it: the same as ``adapter-power``."""
        self._station.set_powered(powered)

    @dbus_property(READ, name="PowerState")
    def power_state(self) -> DBusStr:
        return "on" if self._station.powered else "off"

    @dbus_property(READ, name="Discoverable")
    def discoverable(self) -> DBusBool:
        return False

    @dbus_property(READ, name="Pairable")
    def pairable(self) -> DBusBool:
        return False

    @dbus_property(READ, name="Discovering")
    def discovering_property(self) -> DBusBool:
        return self.discovering

    @dbus_property(READ, name="Roles")
    def roles(self) -> DBusStrList:
        return ["central", "peripheral"]

    @dbus_property(READ, name="UUIDs")
    def uuids(self) -> DBusStrList:
        return []
