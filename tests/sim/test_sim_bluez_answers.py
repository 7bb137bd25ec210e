"""The simulator answers raw D-Bus clients as bluetoothd does: discovery per client, WriteValue's
options, StopNotify without a session, an adapter that does not exist.

Each test talks to the simulator through its own dbus-fast connections on the simulator's bus,
the way bleak (or any other BlueZ client) does, and checks the error names and texts bluetoothd
uses.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from lockgate_sim.testing import RunningSimulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ADAPTER = "/org/bluez/hci0"
ADAPTER1 = "org.bluez.Adapter1"
CHARACTERISTIC1 = "org.bluez.GattCharacteristic1"
PROPERTIES = "org.freedesktop.DBus.Properties"
SHAREE = f"{ADAPTER}/dev_FC_3C_00_2A_2A_DD"
GDIO = f"{SHAREE}/service0011/char0012"
BATTERY_LEVEL = f"{SHAREE}/service000a/char000b"
REQUEST_IV = bytes.fromhex("01000900ec48")


async def _connect(sim: RunningSimulator) -> MessageBus:
    async with asyncio.timeout(10):
        return await MessageBus(bus_address=sim.bus_address).connect()


async def _call(
    bus: MessageBus,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: list[Any] | None = None,
) -> Message:
    async with asyncio.timeout(10):
        reply = await bus.call(
            Message(
                destination="org.bluez",
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
    assert reply is not None
    return reply


async def _discovering(bus: MessageBus) -> bool:
    reply = await _call(bus, ADAPTER, PROPERTIES, "Get", "ss", [ADAPTER1, "Discovering"])
    assert reply.message_type is MessageType.METHOD_RETURN
    value = reply.body[0].value
    assert isinstance(value, bool)
    return value


async def _discovery_end(bus: MessageBus) -> asyncio.Event:
    """An event set when the adapter announces that ``Discovering`` turned false."""
    ended = asyncio.Event()

    def on_message(message: Message) -> None:
        if (
            message.message_type is MessageType.SIGNAL
            and message.member == "PropertiesChanged"
            and message.path == ADAPTER
            and message.body[0] == ADAPTER1
            and (discovering := message.body[1].get("Discovering")) is not None
            and discovering.value is False
        ):
            ended.set()

    bus.add_message_handler(on_message)
    rule = (
        f"type='signal',sender='org.bluez',path='{ADAPTER}',interface='{PROPERTIES}',"
        "member='PropertiesChanged'"
    )
    async with asyncio.timeout(10):
        reply = await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[rule],
            )
        )
    assert reply is not None
    assert reply.message_type is MessageType.METHOD_RETURN
    return ended


async def _until_set(event: asyncio.Event) -> None:
    async with asyncio.timeout(5):
        await event.wait()


@pytest.fixture
async def observer(sim: RunningSimulator) -> AsyncIterator[MessageBus]:
    """A client that only watches, so that it never holds a discovery session itself."""
    bus = await _connect(sim)
    try:
        yield bus
    finally:
        bus.disconnect()


@pytest.fixture
async def linked(sim: RunningSimulator) -> AsyncIterator[MessageBus]:
    """A client with a link up to the sharee lock (found by its own discovery, then stopped)."""
    bus = await _connect(sim)
    try:
        assert (await _call(bus, ADAPTER, ADAPTER1, "StartDiscovery")).message_type is (
            MessageType.METHOD_RETURN
        )
        async with asyncio.timeout(5):
            while True:
                reply = await _call(bus, SHAREE, "org.bluez.Device1", "Connect")
                if reply.message_type is MessageType.METHOD_RETURN:
                    break
                assert reply.error_name == "org.freedesktop.DBus.Error.UnknownObject"
                await asyncio.sleep(0.02)
        await _call(bus, ADAPTER, ADAPTER1, "StopDiscovery")
        yield bus
    finally:
        bus.disconnect()


# --- discovery, one session per client ------------------------------------------------------


async def test_discovery_lasts_while_any_client_holds_it(
    sim: RunningSimulator, observer: MessageBus
) -> None:
    first, second = await _connect(sim), await _connect(sim)
    try:
        for client in (first, second):
            reply = await _call(client, ADAPTER, ADAPTER1, "StartDiscovery")
            assert reply.message_type is MessageType.METHOD_RETURN
        assert await _discovering(observer)

        assert (await _call(first, ADAPTER, ADAPTER1, "StopDiscovery")).message_type is (
            MessageType.METHOD_RETURN
        )
        assert await _discovering(observer)  # the second client still discovers

        assert (await _call(second, ADAPTER, ADAPTER1, "StopDiscovery")).message_type is (
            MessageType.METHOD_RETURN
        )
        assert not await _discovering(observer)
        assert not (await sim.control.show()).discovering
    finally:
        first.disconnect()
        second.disconnect()


async def test_discovery_stops_when_its_last_client_leaves_the_bus(
    sim: RunningSimulator, observer: MessageBus
) -> None:
    staying, leaving = await _connect(sim), await _connect(sim)
    ended = await _discovery_end(observer)
    try:
        await _call(staying, ADAPTER, ADAPTER1, "StartDiscovery")
        await _call(leaving, ADAPTER, ADAPTER1, "StartDiscovery")
        leaving.disconnect()
        await leaving.wait_for_disconnect()  # type: ignore[no-untyped-call]
        assert await _discovering(observer)
        # The leaver's session went with it: a StopDiscovery from the one that stays ends
        # discovery (once the bus has told the simulator that the other client left).
        await _call(staying, ADAPTER, ADAPTER1, "StopDiscovery")
        await _until_set(ended)
        assert not await _discovering(observer)

        ended.clear()
        await _call(staying, ADAPTER, ADAPTER1, "StartDiscovery")
        assert await _discovering(observer)
        staying.disconnect()
        await _until_set(ended)
        assert not await _discovering(observer)
    finally:
        staying.disconnect()
        leaving.disconnect()


async def test_one_discovery_session_per_client(observer: MessageBus) -> None:
    never_started = await _call(observer, ADAPTER, ADAPTER1, "StopDiscovery")
    assert never_started.message_type is MessageType.ERROR
    assert never_started.error_name == "org.bluez.Error.Failed"
    assert never_started.body == ["No discovery started"]

    assert (await _call(observer, ADAPTER, ADAPTER1, "StartDiscovery")).message_type is (
        MessageType.METHOD_RETURN
    )
    again = await _call(observer, ADAPTER, ADAPTER1, "StartDiscovery")
    assert again.message_type is MessageType.ERROR
    assert again.error_name == "org.bluez.Error.InProgress"
    assert await _discovering(observer)


# --- WriteValue's options -------------------------------------------------------------------


def _write(value: bytes, options: dict[str, Variant]) -> tuple[str, list[Any]]:
    return "aya{sv}", [value, options]


@pytest.mark.parametrize(
    "options",
    [
        {"offset": Variant("u", 0)},
        {"offset": Variant("s", "0")},
        {"type": Variant("i", 1)},
        {"type": Variant("s", "eventually")},
    ],
    ids=["offset-uint32", "offset-string", "type-int", "type-unknown"],
)
async def test_write_options_of_the_wrong_type_are_invalid_arguments(
    sim: RunningSimulator, linked: MessageBus, options: dict[str, Variant]
) -> None:
    reply = await _call(linked, GDIO, CHARACTERISTIC1, "WriteValue", *_write(REQUEST_IV, options))
    assert reply.message_type is MessageType.ERROR
    assert reply.error_name == "org.bluez.Error.InvalidArguments"
    assert reply.body == ["Invalid arguments in method call"]
    # Refused before the lock saw it: no IV was asked for, the lock still answers a good write.
    good = await _call(
        linked,
        GDIO,
        CHARACTERISTIC1,
        "WriteValue",
        *_write(REQUEST_IV, {"offset": Variant("q", 0), "Type": Variant("s", "Request")}),
    )
    assert good.message_type is MessageType.METHOD_RETURN
    assert (await sim.control.show()).links == 1


async def test_a_write_past_the_value_is_an_invalid_offset(linked: MessageBus) -> None:
    reply = await _call(
        linked,
        GDIO,
        CHARACTERISTIC1,
        "WriteValue",
        *_write(REQUEST_IV, {"offset": Variant("q", 1), "type": Variant("s", "request")}),
    )
    assert reply.message_type is MessageType.ERROR
    assert reply.error_name == "org.bluez.Error.InvalidOffset"
    assert reply.body == ["Invalid offset"]


# --- notify sessions ------------------------------------------------------------------------


async def test_stop_notify_without_a_session_fails(linked: MessageBus) -> None:
    never = await _call(linked, BATTERY_LEVEL, CHARACTERISTIC1, "StopNotify")
    assert never.message_type is MessageType.ERROR
    assert never.error_name == "org.bluez.Error.Failed"
    assert never.body == ["No notify session started"]

    started = await _call(linked, BATTERY_LEVEL, CHARACTERISTIC1, "StartNotify")
    assert started.message_type is MessageType.METHOD_RETURN
    stopped = await _call(linked, BATTERY_LEVEL, CHARACTERISTIC1, "StopNotify")
    assert stopped.message_type is MessageType.METHOD_RETURN
    again = await _call(linked, BATTERY_LEVEL, CHARACTERISTIC1, "StopNotify")
    assert again.error_name == "org.bluez.Error.Failed"


# --- objects that do not exist --------------------------------------------------------------


@pytest.mark.parametrize(
    ("interface", "member", "signature", "body"),
    [
        (ADAPTER1, "StartDiscovery", "", []),
        (PROPERTIES, "Get", "ss", [ADAPTER1, "Discovering"]),
    ],
    ids=["method", "property"],
)
async def test_an_unknown_adapter_is_an_unknown_object(
    observer: MessageBus, interface: str, member: str, signature: str, body: list[Any]
) -> None:
    reply = await _call(observer, "/org/bluez/hci1", interface, member, signature, body)
    assert reply.message_type is MessageType.ERROR
    assert reply.error_name == "org.freedesktop.DBus.Error.UnknownObject"
    assert not await _discovering(observer)
