"""BluezWatch against a bluetoothd reduced to what the watch reads, on a private bus: the
``org.bluez`` name, ``GetManagedObjects`` and ``InterfacesAdded``.

A bluetoothd that starts takes its name before its adapters are registered (they come as the
kernel reports them), so the watch's first look at the objects can be answered with a snapshot
older than an ``InterfacesAdded`` the watch has already heard. The snapshot must not undo it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from dbus_fast import Message, MessageType, NameFlag, RequestNameReply, Variant
from dbus_fast.aio import MessageBus

from lockgate.ble.bluez import ADAPTER, BLUEZ, BluezView, BluezWatch
from lockgate_sim.bus import PrivateBus

pytestmark = pytest.mark.integration

OBJECT_MANAGER = "org.freedesktop.DBus.ObjectManager"
HCI0 = "/org/bluez/hci0"
HCI0_PROPERTIES = {
    "Address": Variant("s", "00:1A:7D:DA:71:13"),
    "Powered": Variant("b", True),  # noqa: FBT003 - the D-Bus value
}


class LateAdapterBluetoothd:
    """A bluetoothd whose adapter registers while it answers the first ``GetManagedObjects``:
    the answer is the tree as it was (no adapter), the adapter's ``InterfacesAdded`` goes out
    just before it. Later calls see the adapter."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.objects: dict[str, dict[str, dict[str, Variant]]] = {}
        self.calls = 0
        self.called = asyncio.Event()

    def handle(self, message: Message) -> Message | None:
        if message.message_type is not MessageType.METHOD_CALL:
            return None
        if (message.interface, message.member) != (OBJECT_MANAGER, "GetManagedObjects"):
            return None
        snapshot = dict(self.objects)
        if HCI0 not in self.objects:
            self.objects[HCI0] = {ADAPTER: HCI0_PROPERTIES}
            self.bus.send(
                Message.new_signal(
                    "/", OBJECT_MANAGER, "InterfacesAdded", "oa{sa{sv}}", [HCI0, self.objects[HCI0]]
                )
            )
        self.calls += 1
        self.called.set()
        return Message.new_method_return(message, "a{oa{sa{sv}}}", [snapshot])


@contextlib.asynccontextmanager
async def bluetoothd(address: str) -> AsyncIterator[LateAdapterBluetoothd]:
    bus = await MessageBus(bus_address=address).connect()
    daemon = LateAdapterBluetoothd(bus)
    bus.add_message_handler(daemon.handle)
    try:
        reply = await bus.request_name(BLUEZ, NameFlag.DO_NOT_QUEUE)
        assert reply is RequestNameReply.PRIMARY_OWNER
        yield daemon
    finally:
        bus.disconnect()


async def test_an_adapter_added_while_the_objects_are_read_stays() -> None:
    views: list[BluezView] = []
    async with PrivateBus() as bus:
        watch = BluezWatch(
            on_change=views.append,
            probe_interval_s=0.05,
            probe_timeout_s=2.0,
            bus_address=bus.address,
        )
        await watch.start(timeout_s=5.0)
        try:
            assert not watch.view.present  # no bluetoothd yet
            async with bluetoothd(bus.address) as daemon:
                # The watch's own look at the objects, then two of its probes: by the time the
                # second probe is asked, the watch has taken in the first answer.
                async with asyncio.timeout(10):
                    while daemon.calls < 3:
                        daemon.called.clear()
                        await daemon.called.wait()
                view = watch.view
                assert view.usable
                assert "hci0" in view.adapters, [sorted(v.adapters) for v in views]
                assert view.adapters["hci0"].powered
        finally:
            await watch.stop()
