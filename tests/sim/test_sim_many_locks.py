"""A station of hundreds of locks: the fake bluetoothd announces them without losing its bus.

bluetoothd announces each lock as it hears it, and its D-Bus library waits when the socket to
the bus daemon is full. The simulator used to announce a whole round of hundreds of locks in one
burst and lost its connection when the kernel's socket buffer filled (dbus-fast takes EAGAIN for
a broken connection); these tests hold it to the first behaviour, with a bus daemon that stalls
and with the world the gateway benchmark runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from dbus_fast import MessageType

from lockgate.protocol.session import StatusReported
from lockgate.protocol.status import Status
from lockgate_sim.bus import PrivateBus
from lockgate_sim.remote import SimulatorControl
from lockgate_sim.simulator import serve
from lockgate_sim.testing import run_simulator
from tests.sim.probe import ADAPTER1, DEVICE1, OBJECT_MANAGER, Probe, adapter_path, device_path
from tests.sim.simkit import Link, crowd, crowd_name, eventually, sharee_credentials

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

LOCKS = 200
STALL_S = 0.6
"""How long the bus daemon stops: a dozen advertising rounds at time scale 0.05."""


class Heard:
    """The addresses a bleak scan heard, and how often."""

    def __init__(self) -> None:
        self.times: dict[str, int] = {}

    def __call__(self, device: BLEDevice, _: AdvertisementData) -> None:
        self.times[device.address] = self.times.get(device.address, 0) + 1

    async def every_lock(self, within_s: float, times: int = 1) -> None:
        async def all_heard() -> bool:
            return len(self.times) == LOCKS and min(self.times.values()) >= times

        await eventually(all_heard, within_s)


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process stands still (SIGSTOP) for the block, as a starved bus daemon would."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_stalled_bus_daemon_holds_the_announcements_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with (
        PrivateBus() as bus,
        serve(bus.address, crowd(LOCKS, time_scale=0.05)) as station,
        SimulatorControl.connect(bus.address) as control,
    ):
        assert bus.pid is not None
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus.address)
        heard = Heard()
        async with BleakScanner(heard):
            await heard.every_lock(within_s=15)
            with stopped(bus.pid):
                await asyncio.sleep(STALL_S)
            before = dict(heard.times)

            async def heard_again() -> bool:
                return all(heard.times[address] > before[address] for address in before)

            await eventually(heard_again, within_s=15)
        assert station.bus.connected
        view = await control.show()
        assert len(view.locks) == LOCKS
        link = await Link.open(crowd_name(LOCKS - 1))
        try:
            session, _ = await link.authorise(sharee_credentials())
            await link.send(session.unlock())
            events = await link.events(session, 2)
            statuses = [e.status for e in events if isinstance(e, StatusReported)]
            assert statuses == [Status.UNLOCKING, Status.OPEN]
        finally:
            await link.close()


async def test_two_hundred_locks_at_time_scale_one_are_heard_and_commanded() -> None:
    """The gateway benchmark's biggest world, served by a ``lockgate-sim`` child process."""
    async with run_simulator(crowd(LOCKS, time_scale=1.0), subprocess=True) as sim:
        with sim.bleak_pointed_here():
            heard = Heard()
            async with BleakScanner(heard):
                # a few rounds of RSSI for two hundred locks, as a daemon's scanner hears them
                await heard.every_lock(within_s=15, times=3)
            for index in (0, LOCKS // 2, LOCKS - 1):
                link = await Link.open(crowd_name(index))
                try:
                    session, _ = await link.authorise(sharee_credentials())
                    await link.send(session.unlock())
                    events = await link.events(session, 2, within_s=5)
                    statuses = [e.status for e in events if isinstance(e, StatusReported)]
                    assert statuses == [Status.UNLOCKING, Status.OPEN]
                finally:
                    await link.close()
        view = await sim.control.show()
        assert [lock.bolt for lock in view.locks].count("unlocked") == 3


async def test_hundreds_of_stored_devices_come_back_after_a_restart_and_go_with_the_adapter() -> (
    None
):
    """After a restart bluetoothd announces every device it stored, and an unplugged adapter
    removes every device it knew: two hundred of each reach a client, and the fake bluetoothd
    keeps its connection (it sends them in batches the bus daemon takes, as it does its
    advertisements)."""
    async with run_simulator(crowd(LOCKS, time_scale=0.05, connect_ms=20)) as sim:
        probe = await Probe.open(sim.bus_address)
        try:
            paths = [device_path(lock.address) for lock in sim.world.locks]
            reply = await probe.call(adapter_path(), ADAPTER1, "StartDiscovery")
            assert reply.message_type is MessageType.METHOD_RETURN

            async def all_known() -> bool:
                objects = (await probe.call("/", OBJECT_MANAGER, "GetManagedObjects")).body[0]
                return all(path in objects for path in paths)

            await eventually(all_known, within_s=15)
            for path in paths:  # every lock connected once: bluetoothd stores it
                assert (await probe.connect(path)).message_type is MessageType.METHOD_RETURN
                await probe.call(path, DEVICE1, "Disconnect")

            start = probe.mark()
            await sim.control.bluez_restart()
            for path in paths:
                await probe.seen(lambda s, path=path: s.added(path) is not None, start, 15)
            assert sim.station is not None
            assert sim.station.bus.connected

            start = probe.mark()
            await sim.control.adapter_remove("hci0")
            for path in paths:
                await probe.seen(lambda s, path=path: s.removed(path), start, 15)
            await probe.seen(lambda s: s.removed(adapter_path()), start, 15)
            assert sim.station.bus.connected
            assert (await sim.control.show()).bluez == "running"
        finally:
            probe.close()
