"""bleak itself, unpatched, against the simulator: scan, connect, resolve, subscribe, sessions."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from bleak import BleakClient, BleakScanner
from bleak.exc import BleakGATTProtocolError, BleakGATTProtocolErrorCode
from bleak_retry_connector import BleakNotFoundError, establish_connection
from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus

from lockgate.protocol import gatt
from lockgate.protocol.credentials import ShareeCredentials
from lockgate.protocol.session import (
    AuthorisationFailed,
    Authorised,
    BatteryRead,
    ConfigRead,
    StatusReported,
)
from lockgate.protocol.status import Status
from lockgate_sim.testing import RunningSimulator, run_simulator
from tests.sim.simkit import (
    NOBOND_NAME,
    SECOND_SHAREE,
    SHAREE_NAME,
    Link,
    nobond_credentials,
    sharee_credentials,
    world,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _statuses(events: list[Any]) -> list[Status]:
    return [e.status for e in events if isinstance(e, StatusReported)]


@pytest.mark.parametrize(
    ("name", "credentials"),
    [(SHAREE_NAME, sharee_credentials()), (NOBOND_NAME, nobond_credentials())],
    ids=["sharee", "nobond"],
)
async def test_a_whole_session_per_profile(
    sim: RunningSimulator, name: str, credentials: Any
) -> None:
    link = await Link.open(name)
    try:
        uuids = {service.uuid for service in link.client.services}
        assert {gatt.LOCK_SERVICE, gatt.BATTERY_SERVICE, gatt.DEVICE_INFORMATION_SERVICE} <= uuids
        session, events = await link.authorise(credentials)
        assert events == [Authorised()]

        await link.send(session.unlock())
        assert _statuses(await link.events(session, 2)) == [Status.UNLOCKING, Status.OPEN]
        assert (await sim.control.lock(name)).bolt == "unlocked"

        await link.send(session.read_battery())
        assert await link.events(session, 1) == [BatteryRead(87)]

        await link.send(session.lock())
        assert _statuses(await link.events(session, 2)) == [Status.LOCKING, Status.CLOSED]

        await link.send(session.read_config())
        (config,) = await link.events(session, 1)
        assert isinstance(config, ConfigRead)
        assert config.lock_state == "locked"
        assert not config.alarm
    finally:
        await link.close()
    assert (await sim.control.lock(name)).links == 0


async def test_battery_and_firmware_need_no_session(sim: RunningSimulator) -> None:
    await sim.control.set_battery(SHAREE_NAME, 42)
    link = await Link.open(SHAREE_NAME, subscribe=False)
    try:
        assert await link.client.read_gatt_char(gatt.BATTERY_LEVEL) == bytearray([42])
        assert await link.client.read_gatt_char(gatt.FIRMWARE_REVISION) == b"2.18"
        levels: asyncio.Queue[bytes] = asyncio.Queue()
        await link.client.start_notify(
            gatt.BATTERY_LEVEL, lambda _, data: levels.put_nowait(bytes(data))
        )
        await sim.control.set_battery(SHAREE_NAME, 30)
        async with asyncio.timeout(2):
            assert await levels.get() == bytes([30])
    finally:
        await link.close()


@pytest.mark.parametrize(
    ("credentials", "status"),
    [
        (ShareeCredentials(bytes(16), sharee_credentials().k_u), Status.AUTH_FAILED),
        (ShareeCredentials(sharee_credentials().k_seed, bytes(24)), Status.CRC_ERROR),
    ],
    ids=["wrong-k-seed", "wrong-k-u"],
)
async def test_wrong_credentials_fail_and_drop_the_link(
    sim: RunningSimulator, credentials: ShareeCredentials, status: Status
) -> None:
    link = await Link.open(SHAREE_NAME)
    try:
        _, events = await link.authorise(credentials)
        assert events == [AuthorisationFailed(status)]
        # The lock drops the link within a second (0.5 s of lock time, scaled).
        async with asyncio.timeout(2):
            await link.disconnected.wait()
        assert not link.client.is_connected
        assert (await sim.control.lock(SHAREE_NAME)).links == 0
    finally:
        await link.close()


async def test_a_jammed_lock_reports_blocked(sim: RunningSimulator) -> None:
    await sim.control.jam(SHAREE_NAME)
    link = await Link.open(SHAREE_NAME)
    try:
        session, _ = await link.authorise(sharee_credentials())
        await link.send(session.unlock())
        statuses = _statuses(await link.events(session, 2))
        assert statuses == [Status.UNLOCKING, Status.UNLOCKING_BLOCKED]
        assert (await sim.control.lock(SHAREE_NAME)).bolt == "locked"
        # the jam was for one motion: the next one goes through
        await link.send(session.unlock())
        assert _statuses(await link.events(session, 2)) == [Status.UNLOCKING, Status.OPEN]
    finally:
        await link.close()


async def test_closed_by_hand_while_connected_indicates_unprompted(
    sim: RunningSimulator,
) -> None:
    link = await Link.open(SECOND_SHAREE)  # starts unlocked
    try:
        session, _ = await link.authorise(sharee_credentials())
        await sim.control.close_by_hand(SECOND_SHAREE)
        assert _statuses(await link.events(session, 2)) == [Status.LOCKING, Status.CLOSED]
        assert (await sim.control.lock(SECOND_SHAREE)).bolt == "locked"
    finally:
        await link.close()


async def test_refused_connects_are_retried_by_bleak_retry_connector(
    sim: RunningSimulator,
) -> None:
    await sim.control.refuse_connects(NOBOND_NAME, 1)
    link = await Link.open(NOBOND_NAME)
    try:
        assert link.client.is_connected
        assert (await sim.control.lock(NOBOND_NAME)).refuse_connects == 0
    finally:
        await link.close()


async def test_out_of_range_drops_the_link_and_the_device(sim: RunningSimulator) -> None:
    link = await Link.open(SHAREE_NAME)
    try:
        await sim.control.out_of_range(SHAREE_NAME)
        async with asyncio.timeout(2):
            await link.disconnected.wait()
    finally:
        await link.close()
    assert await BleakScanner.find_device_by_name(SHAREE_NAME, timeout=0.5) is None
    await sim.control.back_in_range(SHAREE_NAME)
    assert await BleakScanner.find_device_by_name(SHAREE_NAME, timeout=5) is not None


# --- BlueZ's errors, at the D-Bus level ---------------------------------------------------------


async def _raw_bus(sim: RunningSimulator) -> MessageBus:
    return await MessageBus(bus_address=sim.bus_address).connect()


async def _call(bus: MessageBus, path: str, interface: str, member: str) -> Message:
    reply = await bus.call(
        Message(destination="org.bluez", path=path, interface=interface, member=member)
    )
    assert reply is not None
    return reply


def _device(address: str) -> str:
    return "/org/bluez/hci0/dev_" + address.replace(":", "_")


async def _discover(bus: MessageBus) -> None:
    """Run discovery until every lock of the world has a device object."""
    adapter = "/org/bluez/hci0"
    await _call(bus, adapter, "org.bluez.Adapter1", "StartDiscovery")
    try:
        async with asyncio.timeout(5):
            while True:
                reply = await _call(
                    bus, "/", "org.freedesktop.DBus.ObjectManager", "GetManagedObjects"
                )
                devices = [p for p in reply.body[0] if p.startswith(adapter + "/dev_")]
                if len(devices) == 3:
                    return
                await asyncio.sleep(0.02)
    finally:
        await _call(bus, adapter, "org.bluez.Adapter1", "StopDiscovery")


async def test_a_second_connect_during_one_gets_in_progress(sim: RunningSimulator) -> None:
    bus = await _raw_bus(sim)
    try:
        await _discover(bus)
        # SECOND_SHAREE takes 6000 ms (300 ms scaled) to connect
        slow = asyncio.create_task(
            _call(bus, _device("FC:3C:00:2A:2B:01"), "org.bluez.Device1", "Connect")
        )
        station = sim.station  # in-process: its adapter's attempt is visible (white-box)
        assert station is not None
        async with asyncio.timeout(5):  # until the first Connect is under way at the adapter
            while station.first._connecting is None:  # noqa: ASYNC110 - the simulator's own record
                await asyncio.sleep(0.005)
        second = await _call(bus, _device("D4:12:99:00:45:03"), "org.bluez.Device1", "Connect")
        assert second.message_type is MessageType.ERROR
        assert second.error_name == "org.bluez.Error.InProgress"
        first = await slow
        assert first.message_type is MessageType.METHOD_RETURN
        # once the first is done, the adapter takes the next
        again = await _call(bus, _device("D4:12:99:00:45:03"), "org.bluez.Device1", "Connect")
        assert again.message_type is MessageType.METHOD_RETURN
        assert (await sim.control.show()).links == 2
    finally:
        bus.disconnect()


async def test_a_full_adapter_aborts_the_connect(sim: RunningSimulator) -> None:
    await sim.control.set_slots(1)
    bus = await _raw_bus(sim)
    try:
        await _discover(bus)
        first = await _call(bus, _device("FC:3C:00:2A:2A:DD"), "org.bluez.Device1", "Connect")
        assert first.message_type is MessageType.METHOD_RETURN
        second = await _call(bus, _device("D4:12:99:00:45:03"), "org.bluez.Device1", "Connect")
        assert second.message_type is MessageType.ERROR
        assert second.error_name == "org.bluez.Error.Failed"
        assert second.body == ["le-connection-abort-by-local"]
        view = await sim.control.show()
        assert view.links == 1
        assert view.connection_slots == 1
    finally:
        bus.disconnect()


async def test_a_vanished_device_is_an_unknown_object(sim: RunningSimulator) -> None:
    bus = await _raw_bus(sim)
    try:
        await _discover(bus)
        await sim.control.out_of_range(NOBOND_NAME)
        reply = await _call(bus, _device("D4:12:99:00:45:03"), "org.bluez.Device1", "Connect")
        assert reply.message_type is MessageType.ERROR
        assert reply.error_name == "org.freedesktop.DBus.Error.UnknownObject"
    finally:
        bus.disconnect()


async def test_bleak_sees_an_unknown_object_as_device_not_found(sim: RunningSimulator) -> None:
    device = await BleakScanner.find_device_by_name(NOBOND_NAME, timeout=10)
    assert device is not None
    await sim.control.out_of_range(NOBOND_NAME)
    with pytest.raises(BleakNotFoundError):
        await establish_connection(BleakClient, device, NOBOND_NAME, max_attempts=1)


async def test_stopping_the_simulator_disconnects_its_clients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        sim = await stack.enter_async_context(run_simulator(world()))
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", sim.bus_address)
        link = await Link.open(SHAREE_NAME, subscribe=False)
        # stop with the link up: the simulator powers off as bluetoothd would
        await stack.aclose()
        async with asyncio.timeout(2):
            await link.disconnected.wait()
        assert not link.client.is_connected
        await link.close()


async def test_gatt_refusals_carry_bluez_names(sim: RunningSimulator) -> None:
    link = await Link.open(SHAREE_NAME, subscribe=False)
    try:
        with pytest.raises(BleakGATTProtocolError) as read:
            await link.client.read_gatt_char(gatt.GDIO)
        assert read.value.code is BleakGATTProtocolErrorCode.READ_NOT_PERMITTED
        with pytest.raises(BleakGATTProtocolError) as write:
            await link.client.write_gatt_char(gatt.FIRMWARE_REVISION, b"9.99", response=True)
        assert write.value.code is BleakGATTProtocolErrorCode.WRITE_NOT_PERMITTED
        with pytest.raises(BleakGATTProtocolError) as command:
            await link.client.write_gatt_char(
                gatt.GDIO, b"\x01\x00\x09\x00\xec\x48", response=False
            )
        assert command.value.code is BleakGATTProtocolErrorCode.REQUEST_NOT_SUPPORTED
    finally:
        await link.close()


async def test_remove_device_forgets_it_until_heard_again(sim: RunningSimulator) -> None:
    bus = await _raw_bus(sim)
    try:
        await _discover(bus)
        path = _device("D4:12:99:00:45:03")
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path="/org/bluez/hci0",
                interface="org.bluez.Adapter1",
                member="RemoveDevice",
                signature="o",
                body=[path],
            )
        )
        assert reply is not None
        assert reply.message_type is MessageType.METHOD_RETURN
        gone = await _call(bus, path, "org.bluez.Device1", "Connect")
        assert gone.error_name == "org.freedesktop.DBus.Error.UnknownObject"
        again = await bus.call(
            Message(
                destination="org.bluez",
                path="/org/bluez/hci0",
                interface="org.bluez.Adapter1",
                member="RemoveDevice",
                signature="o",
                body=[path],
            )
        )
        assert again is not None
        assert again.error_name == "org.bluez.Error.DoesNotExist"
        await _discover(bus)  # heard again: back
        back = await _call(bus, path, "org.bluez.Device1", "Connect")
        assert back.message_type is MessageType.METHOD_RETURN
    finally:
        bus.disconnect()


async def test_bleak_retries_an_aborted_connect_until_its_timeout(sim: RunningSimulator) -> None:
    device = await BleakScanner.find_device_by_name(SHAREE_NAME, timeout=10)
    assert device is not None
    await sim.control.set_slots(0)
    client = BleakClient(device)
    with pytest.raises(TimeoutError):
        await client.connect(timeout=0.5)
    assert (await sim.control.show()).links == 0
    await sim.control.set_slots(5)
    await client.connect(timeout=5)
    try:
        assert client.is_connected
    finally:
        await client.disconnect()
