"""BluezWatch against the simulator's bus: what it believes of BlueZ, and what it ignores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from dbus_fast import Message, MessageType, NameFlag, RequestNameReply, Variant
from dbus_fast.aio import MessageBus

from lockgate.ble.bluez import ADAPTER, BLUEZ, BluezView, BluezWatch
from lockgate_sim.bus import PrivateBus
from lockgate_sim.testing import run_simulator
from tests.ble.conftest import world

pytestmark = pytest.mark.integration


class Views(list[BluezView]):
    """Every view the watch reported, and a wake-up for each."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __call__(self, view: BluezView) -> None:
        self.append(view)
        self.changed.set()


async def until(
    seen: Views, check: Callable[[BluezView], bool], timeout_s: float = 10.0
) -> BluezView:
    async with asyncio.timeout(timeout_s):
        while not (seen and check(seen[-1])):
            seen.changed.clear()
            await seen.changed.wait()
    return seen[-1]


async def test_it_follows_bluez_and_ignores_another_programs_adapter() -> None:
    seen = Views()
    async with run_simulator(world(locks=1), time_scale=0.1) as sim:
        watch = BluezWatch(
            on_change=seen,
            probe_interval_s=0.2,
            probe_timeout_s=2.0,
            bus_address=sim.bus_address,
        )
        view = await watch.start(5.0)
        try:
            assert view.usable
            assert set(view.adapters) == {"hci0"}
            assert view.adapters["hci0"].powered
            # Another program on the bus announces an "adapter" of its own: not BlueZ's.
            intruder = await MessageBus(bus_address=sim.bus_address).connect()
            try:
                signal = Message.new_signal(
                    "/", "org.freedesktop.DBus.ObjectManager", "InterfacesAdded"
                )
                signal.signature = "oa{sa{sv}}"
                signal.body = [
                    "/org/bluez/hci7",
                    {
                        ADAPTER: {
                            "Address": Variant("s", "AA:BB:CC:DD:EE:FF"),
                            "Powered": Variant("b", True),  # noqa: FBT003 - a D-Bus boolean,
                        }
                    },
                ]
                await intruder.send(signal)
                # A round trip through the bus: the signal has been delivered by then.
                reply = await intruder.call(
                    Message(
                        destination="org.freedesktop.DBus",
                        path="/org/freedesktop/DBus",
                        interface="org.freedesktop.DBus",
                        member="GetId",
                    )
                )
                assert reply.message_type is MessageType.METHOD_RETURN
                # The bus daemon routed that signal before it answered; BlueZ's next signal (the
                # adapter powered off) reaches the watch after it, so by then it was looked at.
                await sim.control.adapter_power("hci0", on=False)
                off = await until(seen, lambda v: not v.adapters["hci0"].powered)
                assert set(off.adapters) == {"hci0"}
                assert off.usable
                await sim.control.adapter_power("hci0", on=True)
                await until(seen, lambda v: v.adapters["hci0"].powered)
            finally:
                intruder.disconnect()
            # bluetoothd restarts: gone, then a new generation with its adapter again.
            generation = watch.view.generation
            await sim.control.bluez_restart(down_s=5.0)
            await until(seen, lambda v: not v.present)
            back = await until(seen, lambda v: v.present and v.adapters.get("hci0") is not None)
            assert back.generation == generation + 1
            # Hung: not answering, then answering again.
            await sim.control.bluez_hang(40.0)  # 4 s here
            hung = await until(seen, lambda v: not v.answering)
            assert "did not answer" in hung.reason
            await until(seen, lambda v: v.answering, timeout_s=15)
        finally:
            with contextlib.suppress(Exception):
                await watch.stop()


async def test_an_adapter_announced_while_its_snapshot_is_on_the_way_is_kept() -> None:
    """A bluetoothd that answers GetManagedObjects before its adapter is registered, and announces
    the adapter at once after (the reply and the signal arrive together): the older, empty
    snapshot must not undo the adapter the signal brought."""
    adapter = {"Address": Variant("s", "00:1A:7D:DA:71:13"), "Powered": Variant("b", True)}  # noqa: FBT003
    seen = Views()
    async with PrivateBus() as private:
        bluetoothd = await MessageBus(bus_address=private.address).connect()

        def answer(message: Message) -> bool:
            if message.member != "GetManagedObjects":
                return False
            reply = Message.new_method_return(message, "a{oa{sa{sv}}}", [{}])
            added = Message.new_signal("/", "org.freedesktop.DBus.ObjectManager", "InterfacesAdded")
            added.signature = "oa{sa{sv}}"
            added.body = ["/org/bluez/hci0", {ADAPTER: adapter}]
            bluetoothd.send(reply)  # written together: the watch reads both at once
            bluetoothd.send(added)
            return True

        bluetoothd.add_message_handler(answer)
        try:
            watch = BluezWatch(on_change=seen, probe_timeout_s=2.0, bus_address=private.address)
            await watch.start(5.0)
            try:
                await bluetoothd.request_name("org.bluez")
                view = await until(seen, lambda v: v.present and "hci0" in v.adapters)
                assert view.usable
                # Whatever came after, the adapter stays: the last view still has it.
                await asyncio.sleep(0)
                assert "hci0" in watch.view.adapters
            finally:
                await watch.stop()
        finally:
            bluetoothd.disconnect()


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


async def test_an_adapter_added_just_before_the_objects_are_answered_stays() -> None:
    """The adapter's InterfacesAdded goes out just before the older snapshot that lacks it."""
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


class CountingBluetoothd:
    """A bluetoothd of one adapter that answers ``GetManagedObjects`` and ``Get`` of the
    adapter's properties, counting each; its adapter may change with no signal (one lost)."""

    def __init__(self) -> None:
        self.powered = True
        self.trees = 0
        self.gets = 0
        self.asked = asyncio.Event()

    def handle(self, message: Message) -> Message | None:
        if message.message_type is not MessageType.METHOD_CALL:
            return None
        properties = {**HCI0_PROPERTIES, "Powered": Variant("b", self.powered)}
        if (message.interface, message.member) == (OBJECT_MANAGER, "GetManagedObjects"):
            self.trees += 1
            self.asked.set()
            return Message.new_method_return(
                message, "a{oa{sa{sv}}}", [{HCI0: {ADAPTER: properties}}]
            )
        if (
            message.member == "Get"
            and message.path == HCI0
            and message.body == [ADAPTER, "Powered"]
        ):
            self.gets += 1
            self.asked.set()
            return Message.new_method_return(message, "v", [properties["Powered"]])
        return None


async def test_a_probe_asks_one_property_and_reads_the_tree_only_on_suspicion() -> None:
    """Probing reads the adapter's Powered, not bluetoothd's whole tree (every device in it):
    while the answer agrees with the view no tree is read; an answer that disagrees (a signal
    was lost) reads the tree, which mends the view."""
    daemon = CountingBluetoothd()
    async with PrivateBus() as bus:
        owner = await MessageBus(bus_address=bus.address).connect()
        owner.add_message_handler(daemon.handle)
        try:
            await owner.request_name(BLUEZ, NameFlag.DO_NOT_QUEUE)
            watch = BluezWatch(
                on_change=lambda _view: None,
                probe_interval_s=0.05,
                probe_timeout_s=2.0,
                bus_address=bus.address,
            )
            await watch.start(timeout_s=5.0)
            try:
                assert watch.view.adapters["hci0"].powered
                trees = daemon.trees
                async with asyncio.timeout(10):
                    while daemon.gets < 5:
                        daemon.asked.clear()
                        await daemon.asked.wait()
                assert daemon.trees == trees, "no tree read while the answers agree"
                daemon.powered = False  # and no PropertiesChanged: a lost signal
                async with asyncio.timeout(10):
                    while watch.view.adapters["hci0"].powered:
                        daemon.asked.clear()
                        await daemon.asked.wait()
                assert daemon.trees == trees + 1
            finally:
                await watch.stop()
        finally:
            owner.disconnect()
