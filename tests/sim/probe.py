"""A raw D-Bus client of the simulator's bus that calls BlueZ and records what a client sees.

The fault tests look at the bus the way any client of real BlueZ looks at it: the bus daemon's
``NameOwnerChanged`` for ``org.bluez``, the ObjectManager's InterfacesAdded / InterfacesRemoved
and PropertiesChanged below ``/org/bluez``, in the order they came. They wait for what they
assert (:meth:`Probe.seen`), never for a fixed time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

DBUS = "org.freedesktop.DBus"
BLUEZ = "org.bluez"
ADAPTER1 = "org.bluez.Adapter1"
DEVICE1 = "org.bluez.Device1"
PROPERTIES = "org.freedesktop.DBus.Properties"
OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
NO_REPLY = "org.freedesktop.DBus.Error.NoReply"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"

_RULES = (
    f"type='signal',sender='{DBUS}',member='NameOwnerChanged',arg0='{BLUEZ}'",
    f"type='signal',interface='{OBJECT_MANAGER}',path='/'",
    f"type='signal',interface='{PROPERTIES}',path_namespace='/org/bluez'",
)


def adapter_path(name: str = "hci0") -> str:
    return f"/org/bluez/{name}"


def device_path(address: str, adapter: str = "hci0") -> str:
    return f"{adapter_path(adapter)}/dev_{address.replace(':', '_')}"


@dataclass(frozen=True, slots=True)
class Signal:
    """One signal as the probe received it."""

    member: str
    sender: str
    path: str
    body: list[Any]

    @property
    def owner_change(self) -> tuple[str, str] | None:
        """``(old, new)`` owners of ``org.bluez`` for a NameOwnerChanged, else None."""
        if self.member != "NameOwnerChanged":
            return None
        return self.body[1], self.body[2]

    def added(self, path: str) -> dict[str, Any] | None:
        """The interfaces and properties of ``path`` if this is its InterfacesAdded."""
        if self.member == "InterfacesAdded" and self.body[0] == path:
            return {
                interface: {key: variant.value for key, variant in properties.items()}
                for interface, properties in self.body[1].items()
            }
        return None

    def removed(self, path: str) -> bool:
        return self.member == "InterfacesRemoved" and self.body[0] == path

    def changed(self, path: str, interface: str) -> dict[str, Any]:
        """The properties of ``interface`` that this PropertiesChanged on ``path`` changed."""
        if self.member != "PropertiesChanged" or self.path != path or self.body[0] != interface:
            return {}
        return {key: variant.value for key, variant in self.body[1].items()}


class Probe:
    """One client connection: calls, and every signal a BlueZ client would watch."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.signals: list[Signal] = []
        self._arrived = asyncio.Event()

    @classmethod
    async def open(cls, address: str) -> Probe:
        async with asyncio.timeout(10):
            bus = await MessageBus(bus_address=address).connect()
        probe = cls(bus)
        bus.add_message_handler(probe._on_message)
        for rule in _RULES:
            reply = await probe.call(
                "/org/freedesktop/DBus", DBUS, "AddMatch", "s", [rule], destination=DBUS
            )
            assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        return probe

    def _on_message(self, message: Message) -> None:
        if message.message_type is MessageType.SIGNAL:
            self.signals.append(
                Signal(message.member or "", message.sender or "", message.path or "", message.body)
            )
            self._arrived.set()

    async def call(
        self,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
        *,
        destination: str = BLUEZ,
        within_s: float = 10.0,
    ) -> Message:
        async with asyncio.timeout(within_s):
            reply = await self.bus.call(
                Message(
                    destination=destination,
                    path=path,
                    interface=interface,
                    member=member,
                    signature=signature,
                    body=body or [],
                )
            )
        assert reply is not None
        return reply

    async def get(self, path: str, interface: str, name: str) -> Any:
        reply = await self.call(path, PROPERTIES, "Get", "ss", [interface, name])
        assert reply.message_type is MessageType.METHOD_RETURN, (reply.error_name, reply.body)
        return reply.body[0].value

    async def owner(self) -> str | None:
        """The unique name owning ``org.bluez`` now, or None."""
        reply = await self.call(
            "/org/freedesktop/DBus", DBUS, "GetNameOwner", "s", [BLUEZ], destination=DBUS
        )
        return reply.body[0] if reply.message_type is MessageType.METHOD_RETURN else None

    async def seen(
        self, check: Callable[[Signal], bool], since: int = 0, within_s: float = 5.0
    ) -> int:
        """Wait until a signal that passes ``check`` has come (at or after index ``since``);
        its index in :attr:`signals`."""
        async with asyncio.timeout(within_s):
            start = since
            while True:
                for index in range(start, len(self.signals)):
                    if check(self.signals[index]):
                        return index
                start = len(self.signals)
                self._arrived.clear()
                await self._arrived.wait()

    def mark(self) -> int:
        """Where the signals from now on start (to look only at what comes after)."""
        return len(self.signals)

    async def discover_until(self, path: str, adapter: str = "hci0") -> None:
        """Start discovery on ``adapter`` (this client's session) and wait for ``path``."""
        reply = await self.call(adapter_path(adapter), ADAPTER1, "StartDiscovery")
        assert reply.message_type is MessageType.METHOD_RETURN, reply.body
        async with asyncio.timeout(5):
            while not await self.exists(path):  # noqa: ASYNC110 - across the bus: poll it
                await asyncio.sleep(0.01)

    async def exists(self, path: str) -> bool:
        reply = await self.call("/", OBJECT_MANAGER, "GetManagedObjects")
        return path in reply.body[0]

    async def connect(self, path: str) -> Message:
        return await self.call(path, DEVICE1, "Connect")

    def close(self) -> None:
        self.bus.disconnect()
