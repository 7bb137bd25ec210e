"""bluetoothd's own faults as a client of real BlueZ sees them: a restart, a hang.

A restart is bluetoothd's process dying and starting again: the bus daemon says ``org.bluez`` lost
its owner (bluetoothd sends no InterfacesRemoved on its way out), answers the calls it left with
NoReply, and a new owner takes the name and announces the adapter and the devices it had stored.
A hang leaves calls unanswered until it ends, then answers them as the world is then; the control
interface answers throughout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from dbus_fast import MessageType

from lockgate_sim.control import Action
from lockgate_sim.scenario import Scenario, Step
from lockgate_sim.testing import RunningSimulator, run_simulator
from tests.sim.probe import (
    ADAPTER1,
    DEVICE1,
    NO_REPLY,
    OBJECT_MANAGER,
    PROPERTIES,
    UNKNOWN_OBJECT,
    Probe,
    adapter_path,
    device_path,
)
from tests.sim.simkit import SHAREE_NAME, Link, eventually, world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SHAREE = device_path("FC:3C:00:2A:2A:DD")
SLOW = device_path("FC:3C:00:2A:2B:01")  # SECOND_SHAREE: 6000 ms to connect (300 ms scaled)
NOBOND = device_path("D4:12:99:00:45:03")


@pytest.fixture
async def probe(sim: RunningSimulator) -> AsyncIterator[Probe]:
    probe = await Probe.open(sim.bus_address)
    try:
        yield probe
    finally:
        probe.close()


async def _running(sim: RunningSimulator) -> None:
    async def back() -> bool:
        return (await sim.control.show()).bluez == "running"

    await eventually(back)


async def test_a_restart_takes_the_name_away_and_announces_the_stored_devices_anew(
    sim: RunningSimulator, probe: Probe
) -> None:
    await probe.discover_until(SLOW)
    assert (await probe.connect(SHAREE)).message_type is MessageType.METHOD_RETURN
    assert await probe.exists(NOBOND)  # discovered, never connected: bluetoothd keeps no record
    old_owner = await probe.owner()
    assert old_owner is not None
    pending = asyncio.create_task(probe.connect(SLOW))  # still connecting when bluetoothd dies
    start = probe.mark()

    await sim.control.bluez_restart()

    gone = await probe.seen(lambda s: s.owner_change == (old_owner, ""), since=start)
    taken = await probe.seen(lambda s: s.member == "NameOwnerChanged", since=gone + 1)
    new_owner = probe.signals[taken].owner_change
    assert new_owner is not None
    assert new_owner[0] == ""
    assert new_owner[1] not in ("", old_owner)
    # bluetoothd said nothing on its way out: no InterfacesRemoved, no Connected false
    assert [s.member for s in probe.signals[start:gone]] == []
    # the call it left got the bus daemon's NoReply
    left = await pending
    assert left.message_type is MessageType.ERROR
    assert left.error_name == NO_REPLY

    adapter = await probe.seen(lambda s: s.added(adapter_path()) is not None, since=taken)
    device = await probe.seen(lambda s: s.added(SHAREE) is not None, since=adapter)
    assert probe.signals[adapter].sender == new_owner[1]
    announced = probe.signals[device].added(SHAREE)
    assert announced is not None
    assert announced[DEVICE1]["Connected"] is False
    assert announced[DEVICE1]["ServicesResolved"] is False
    powered = probe.signals[adapter].added(adapter_path())
    assert powered is not None
    assert powered[ADAPTER1]["Discovering"] is False

    await _running(sim)
    objects = (await probe.call("/", OBJECT_MANAGER, "GetManagedObjects")).body[0]
    assert SHAREE in objects
    assert NOBOND not in objects  # only what bluetoothd had stored comes back
    assert SLOW not in objects  # its connect never completed
    assert not any(path.startswith(SHAREE + "/service") for path in objects)
    view = await sim.control.show()
    assert (view.bluez_restarts, view.links, view.discovering) == (1, 0, False)
    assert all(lock.links == 0 for lock in view.locks)
    # every discovery session was forgotten with the process
    stop = await probe.call(adapter_path(), ADAPTER1, "StopDiscovery")
    assert (stop.error_name, stop.body) == ("org.bluez.Error.Failed", ["No discovery started"])
    # and the new bluetoothd connects as the old one did
    assert (await probe.connect(SHAREE)).message_type is MessageType.METHOD_RETURN
    assert (await sim.control.lock(SHAREE_NAME)).links == 1


async def test_the_name_stays_unowned_for_the_restarts_down_time(
    sim: RunningSimulator, probe: Probe
) -> None:
    start = probe.mark()
    await sim.control.bluez_restart(down_s=20.0)  # 1 s at the time scale of 0.05
    # answered once bluetoothd is gone: the bus daemon owns nothing under org.bluez
    assert await probe.owner() is None
    assert (await sim.control.show()).bluez == "stopped"
    reply = await probe.call(adapter_path(), ADAPTER1, "StartDiscovery")
    assert reply.error_name == "org.freedesktop.DBus.Error.ServiceUnknown"
    with pytest.raises(Exception, match="not running"):
        await sim.control.bluez_restart()
    await probe.seen(lambda s: s.added(adapter_path()) is not None, since=start)
    assert await probe.owner() is not None
    await _running(sim)


async def test_a_bleak_link_is_gone_after_a_restart_and_bleak_connects_again(
    sim: RunningSimulator,
) -> None:
    link = await Link.open(SHAREE_NAME, subscribe=False)
    await sim.control.bluez_restart()
    await _running(sim)
    assert (await sim.control.lock(SHAREE_NAME)).links == 0
    # bleak is not told: bluetoothd said nothing on its way out, and the device it announces
    # again is one bleak already knew. Its disconnect() finds the device not connected and
    # waits for a Connected change that never comes (10 s); cancelled, it releases the client.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.5):
            await link.close()
    # bleak's own scan and connect work against the new bluetoothd
    again = await Link.open(SHAREE_NAME)
    try:
        assert again.client.is_connected
        assert (await sim.control.lock(SHAREE_NAME)).connected_via == "hci0"
    finally:
        await again.close()


async def test_a_hang_holds_every_call_until_it_ends(sim: RunningSimulator, probe: Probe) -> None:
    await probe.discover_until(NOBOND)
    await sim.control.bluez_hang(40.0)  # 2 s at the time scale of 0.05
    calls = [
        asyncio.create_task(probe.get(adapter_path(), ADAPTER1, "Powered")),
        asyncio.create_task(probe.call("/", OBJECT_MANAGER, "GetManagedObjects")),
        asyncio.create_task(probe.connect(SHAREE)),
        asyncio.create_task(probe.connect(NOBOND)),
    ]

    async def all_held() -> bool:
        return (await sim.control.show()).bluez_held == len(calls)

    await eventually(all_held)  # the control interface answers during the hang
    assert not any(call.done() for call in calls)
    view = await sim.control.show()
    assert view.bluez == "hung"
    # meanwhile the world changes: the nobond lock leaves the adapter's range
    await sim.control.out_of_range("ILOCKIT-4500329")

    powered, objects, connected, vanished = await asyncio.gather(*calls)
    assert powered is True
    assert objects.message_type is MessageType.METHOD_RETURN
    assert connected.message_type is MessageType.METHOD_RETURN
    # answered as the world is once bluetoothd answers again
    assert vanished.error_name == UNKNOWN_OBJECT
    assert (await sim.control.show()).bluez == "running"
    assert (await sim.control.lock(SHAREE_NAME)).links == 1


async def test_a_client_leaving_during_a_hang_ends_its_discovery_afterwards(
    sim: RunningSimulator, probe: Probe
) -> None:
    leaving = await Probe.open(sim.bus_address)
    reply = await leaving.call(adapter_path(), ADAPTER1, "StartDiscovery")
    assert reply.message_type is MessageType.METHOD_RETURN
    await sim.control.bluez_hang(20.0)
    start = probe.mark()
    leaving.close()
    await leaving.bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
    ended = await probe.seen(
        lambda s: s.changed(adapter_path(), ADAPTER1).get("Discovering") is False, since=start
    )
    # bluetoothd heard of the client leaving only once it answered again
    assert (await sim.control.show()).bluez == "running"
    assert ended >= start


async def test_a_restart_during_a_hang_answers_the_held_calls_with_no_reply(
    sim: RunningSimulator, probe: Probe
) -> None:
    await sim.control.bluez_hang(200.0)
    held = asyncio.create_task(
        probe.call(adapter_path(), PROPERTIES, "Get", "ss", [ADAPTER1, "Powered"])
    )

    async def holding() -> bool:
        return (await sim.control.show()).bluez_held == 1

    await eventually(holding)
    await sim.control.bluez_restart()
    assert (await held).error_name == NO_REPLY
    await _running(sim)
    assert await probe.get(adapter_path(), ADAPTER1, "Powered") is True


async def test_the_old_control_address_answers_while_bluez_runs(
    sim: RunningSimulator, probe: Probe
) -> None:
    """``busctl call org.bluez /org/lockgate/sim …`` as documented before the control interface
    had a name of its own."""
    reply = await probe.call("/org/lockgate/sim", "org.lockgate.Simulator1", "Show")
    assert reply.message_type is MessageType.METHOD_RETURN
    await sim.control.bluez_hang(20.0)
    during = await probe.call("/org/lockgate/sim", "org.lockgate.Simulator1", "Show")
    assert during.message_type is MessageType.METHOD_RETURN
    acted = await probe.call(
        "/org/lockgate/sim",
        "org.lockgate.Simulator1",
        "Act",
        "ssai",
        ["battery", SHAREE_NAME, [40]],
    )
    assert acted.message_type is MessageType.METHOD_RETURN
    assert (await sim.control.lock(SHAREE_NAME)).battery == 40


async def test_scenario_steps_restart_and_hang_bluetoothd() -> None:
    scenario = Scenario(
        steps=[
            Step(at_s=2.0, action=Action.BLUEZ_HANG, seconds=4.0),
            Step(at_s=10.0, action=Action.BLUEZ_RESTART),
        ]
    )
    async with run_simulator(world(), scenario=scenario) as sim:
        probe = await Probe.open(sim.bus_address)
        try:

            async def restarted() -> bool:
                view = await sim.control.show()
                return view.bluez_restarts == 1 and view.bluez == "running"

            await eventually(restarted)
            assert await probe.get(adapter_path(), ADAPTER1, "Powered") is True
        finally:
            probe.close()
