"""BluezWatch against the simulator's bus: what it believes of BlueZ, and what it ignores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from lockgate.ble.bluez import ADAPTER, BluezView, BluezWatch
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
