"""The adapters' faults as a client of real BlueZ sees them: powered off and on, unplugged and
plugged back (perhaps as another ``hciN``), and several adapters with their own slots and RSSI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import MessageType, Variant
from pydantic import ValidationError

from lockgate_sim.control import Action
from lockgate_sim.remote import SimulatorError
from lockgate_sim.scenario import Scenario, Step
from lockgate_sim.testing import RunningSimulator, run_simulator
from lockgate_sim.world import WorldConfig
from tests.sim.probe import (
    ADAPTER1,
    DEVICE1,
    OBJECT_MANAGER,
    PROPERTIES,
    UNKNOWN_OBJECT,
    Probe,
    adapter_path,
    device_path,
)
from tests.sim.simkit import NOBOND_NAME, SECOND_SHAREE, SHAREE_NAME, Link, eventually, world

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SHAREE_ADDRESS = "FC:3C:00:2A:2A:DD"
SLOW_ADDRESS = "FC:3C:00:2A:2B:01"
NOBOND_ADDRESS = "D4:12:99:00:45:03"
SHAREE = device_path(SHAREE_ADDRESS)
NOBOND = device_path(NOBOND_ADDRESS)
SECOND_ADDRESS = "00:1A:7D:DA:71:14"
CONNECTION_ABORTED = ("org.bluez.Error.Failed", ["le-connection-abort-by-local"])
NOT_READY = ("org.bluez.Error.NotReady", ["Resource Not Ready"])


@pytest.fixture
async def probe(sim: RunningSimulator) -> AsyncIterator[Probe]:
    probe = await Probe.open(sim.bus_address)
    try:
        yield probe
    finally:
        probe.close()


def _error(reply: Any) -> tuple[str, list[Any]]:
    return reply.error_name, reply.body


def two_adapters(**locks: dict[str, Any]) -> WorldConfig:
    """The test world with a second adapter, ``hci1``, and per-lock changes."""
    document = world().model_dump(by_alias=True, exclude_none=True, mode="json")
    document["adapters"] = [{"name": "hci1", "address": SECOND_ADDRESS, "connection_slots": 2}]
    document["adapter"]["connection_slots"] = 1
    for lock in document["lock"]:
        lock.update(locks.get(lock["name"], {}))
    return WorldConfig.model_validate(document)


# --- power --------------------------------------------------------------------------------------


async def test_power_off_ends_links_and_discovery_then_says_powered_off(
    sim: RunningSimulator, probe: Probe
) -> None:
    await probe.discover_until(NOBOND)
    assert (await probe.connect(SHAREE)).message_type is MessageType.METHOD_RETURN
    start = probe.mark()

    await sim.control.adapter_power("hci0", on=False)

    link = await probe.seen(lambda s: s.changed(SHAREE, DEVICE1).get("Connected") is False, start)
    scan = await probe.seen(
        lambda s: s.changed(adapter_path(), ADAPTER1).get("Discovering") is False, start
    )
    power = await probe.seen(
        lambda s: s.changed(adapter_path(), ADAPTER1).get("Powered") is False, start
    )
    assert link < scan < power  # as bluetoothd's adapter_stop sends them
    assert probe.signals[power].changed(adapter_path(), ADAPTER1)["PowerState"] == "off"
    assert await probe.get(adapter_path(), ADAPTER1, "Powered") is False
    assert _error(await probe.connect(NOBOND)) == NOT_READY
    assert _error(await probe.call(adapter_path(), ADAPTER1, "StartDiscovery")) == NOT_READY
    assert _error(await probe.call(adapter_path(), ADAPTER1, "StopDiscovery")) == NOT_READY
    remove = await probe.call(adapter_path(), ADAPTER1, "RemoveDevice", "o", [SHAREE])
    assert _error(remove) == NOT_READY
    assert await probe.exists(SHAREE)  # the devices stay known
    view = await sim.control.adapter("hci0")
    assert (view.powered, view.links, view.discovering) == (False, 0, False)
    assert (await sim.control.lock(SHAREE_NAME)).links == 0

    start = probe.mark()
    await sim.control.adapter_power("hci0", on=True)
    await probe.seen(lambda s: s.changed(adapter_path(), ADAPTER1).get("Powered") is True, start)
    assert (await probe.connect(SHAREE)).message_type is MessageType.METHOD_RETURN
    reply = await probe.call(adapter_path(), ADAPTER1, "StartDiscovery")
    assert reply.message_type is MessageType.METHOD_RETURN


async def test_a_client_powers_the_adapter_off_and_on_as_bluetoothctl_does(
    sim: RunningSimulator, probe: Probe
) -> None:
    start = probe.mark()
    off = await probe.call(
        adapter_path(), PROPERTIES, "Set", "ssv", [ADAPTER1, "Powered", Variant("b", value=False)]
    )
    assert off.message_type is MessageType.METHOD_RETURN
    await probe.seen(lambda s: s.changed(adapter_path(), ADAPTER1).get("Powered") is False, start)
    assert not (await sim.control.adapter("hci0")).powered
    assert _error(await probe.call(adapter_path(), ADAPTER1, "StartDiscovery")) == NOT_READY
    on = await probe.call(
        adapter_path(), PROPERTIES, "Set", "ssv", [ADAPTER1, "Powered", Variant("b", value=True)]
    )
    assert on.message_type is MessageType.METHOD_RETURN
    assert (await sim.control.adapter("hci0")).powered


async def test_bleak_sees_its_link_end_when_the_adapter_powers_off(sim: RunningSimulator) -> None:
    link = await Link.open(SHAREE_NAME, subscribe=False)
    try:
        await sim.control.adapter_power("hci0", on=False)
        async with asyncio.timeout(5):
            await link.disconnected.wait()
        assert not link.client.is_connected
    finally:
        await link.close()


# --- unplugged and plugged back -----------------------------------------------------------------


async def test_an_unplugged_adapter_leaves_the_bus_and_comes_back_as_another_name(
    sim: RunningSimulator, probe: Probe
) -> None:
    await probe.discover_until(NOBOND)
    assert (await probe.connect(SHAREE)).message_type is MessageType.METHOD_RETURN
    start = probe.mark()

    await sim.control.adapter_remove("hci0")

    link = await probe.seen(lambda s: s.changed(SHAREE, DEVICE1).get("Connected") is False, start)
    sharee = await probe.seen(lambda s: s.removed(SHAREE), start)
    nobond = await probe.seen(lambda s: s.removed(NOBOND), start)
    adapter = await probe.seen(lambda s: s.removed(adapter_path()), start)
    assert link < sharee < adapter
    assert nobond < adapter  # the devices go first, then the adapter object
    reply = await probe.call(adapter_path(), ADAPTER1, "StartDiscovery")
    assert reply.error_name == UNKNOWN_OBJECT
    assert not (await sim.control.adapter("hci0")).present
    with pytest.raises(SimulatorError, match="unplugged"):
        await sim.control.adapter_power("hci0", on=True)

    start = probe.mark()
    await sim.control.adapter_add("hci0", as_name="hci1")

    added = await probe.seen(lambda s: s.added(adapter_path("hci1")) is not None, start)
    properties = probe.signals[added].added(adapter_path("hci1"))
    assert properties is not None
    assert properties[ADAPTER1]["Address"] == "00:1A:7D:DA:71:13"  # the same dongle
    assert properties[ADAPTER1]["Powered"] is True
    stored = device_path(SHAREE_ADDRESS, "hci1")
    device = await probe.seen(lambda s: s.added(stored) is not None, added)
    announced = probe.signals[device].added(stored)
    assert announced is not None
    assert announced[DEVICE1]["Adapter"] == adapter_path("hci1")
    objects = (await probe.call("/", OBJECT_MANAGER, "GetManagedObjects")).body[0]
    assert device_path(NOBOND_ADDRESS, "hci1") not in objects  # only stored devices come back
    assert adapter_path() not in objects
    assert (await probe.connect(stored)).message_type is MessageType.METHOD_RETURN
    view = await sim.control.adapter("hci1")
    assert (view.world_name, view.present, view.links) == ("hci0", True, 1)
    with pytest.raises(SimulatorError, match="plugged in"):
        await sim.control.adapter_add("hci1")


# --- several adapters ---------------------------------------------------------------------------


async def test_each_adapter_has_its_own_devices_rssi_range_and_slots() -> None:
    locked = two_adapters(
        **{
            SHAREE_NAME: {"rssi_by_adapter": {"hci1": -85}},
            NOBOND_NAME: {"out_of_range_of": ["hci1"]},
        }
    )
    async with run_simulator(locked) as sim:
        probe = await Probe.open(sim.bus_address)
        try:
            await _each_adapter_is_its_own(sim, probe)
        finally:
            probe.close()


async def _each_adapter_is_its_own(sim: RunningSimulator, probe: Probe) -> None:
    sharee0, sharee1 = SHAREE, device_path(SHAREE_ADDRESS, "hci1")
    slow0, slow1 = device_path(SLOW_ADDRESS), device_path(SLOW_ADDRESS, "hci1")
    start = probe.mark()
    await probe.discover_until(NOBOND, "hci0")
    await probe.discover_until(slow1, "hci1")
    # hci1 hears the sharee lock at its own RSSI, and the nobond lock not at all: once it has
    # heard the sharee lock a second time, a whole round has passed
    assert await probe.get(sharee0, DEVICE1, "RSSI") == -60
    assert await probe.get(sharee1, DEVICE1, "RSSI") == -85
    await probe.seen(lambda s: s.changed(sharee1, DEVICE1).get("RSSI") == -85, start)
    assert not await probe.exists(device_path(NOBOND_ADDRESS, "hci1"))

    # hci0 holds one link, hci1 two: each its own slots
    assert (await probe.connect(sharee0)).message_type is MessageType.METHOD_RETURN
    assert _error(await probe.connect(NOBOND)) == CONNECTION_ABORTED  # hci0 is full
    assert (await probe.connect(slow1)).message_type is MessageType.METHOD_RETURN
    # a lock connected through hci0 takes no second central: hci1 cannot reach it
    assert _error(await probe.connect(sharee1)) == CONNECTION_ABORTED
    view = await sim.control.show()
    assert [(a.name, a.links, a.connection_slots) for a in view.adapters] == [
        ("hci0", 1, 1),
        ("hci1", 1, 2),
    ]
    assert (await sim.control.lock(SHAREE_NAME)).connected_via == "hci0"
    assert (await sim.control.lock(SECOND_SHAREE)).connected_via == "hci1"
    assert _error(await probe.connect(slow0)) == CONNECTION_ABORTED

    # RSSI per adapter, steered
    start = probe.mark()
    await sim.control.set_rssi(NOBOND_NAME, -71, adapter="hci0")
    await probe.seen(lambda s: s.changed(NOBOND, DEVICE1).get("RSSI") == -71, start)
    nobond = await sim.control.lock(NOBOND_NAME)
    assert (nobond.rssi, nobond.rssi_by_adapter) == (-60, {"hci0": -71})
    assert nobond.out_of_range_of == ("hci1",)

    # out of hci0's range only: the link through hci0 ends, hci1 reaches the lock now
    start = probe.mark()
    await sim.control.out_of_range(SHAREE_NAME, adapter="hci0")
    await probe.seen(lambda s: s.changed(sharee0, DEVICE1).get("Connected") is False, start)
    await probe.seen(lambda s: s.removed(sharee0), start)
    assert await probe.exists(sharee1)
    assert (await probe.connect(sharee1)).message_type is MessageType.METHOD_RETURN
    assert (await sim.control.lock(SHAREE_NAME)).connected_via == "hci1"
    assert (await sim.control.lock(SHAREE_NAME)).out_of_range_of == ("hci0",)

    # back in hci0's range: heard there again by its discovery
    await sim.control.back_in_range(SHAREE_NAME, adapter="hci0")
    assert (await sim.control.lock(SHAREE_NAME)).out_of_range_of == ()


async def test_two_adapters_from_python_and_a_scenario_replug() -> None:
    scenario = Scenario(
        steps=[
            Step(at_s=1.0, action=Action.ADAPTER_REMOVE, adapter="hci1"),
            Step(at_s=5.0, action=Action.ADAPTER_ADD, adapter="hci1", as_name="hci2"),
            Step(at_s=6.0, action=Action.ADAPTER_POWER, adapter="hci2", value=0),
        ]
    )
    async with run_simulator(two_adapters(), scenario=scenario) as sim:

        async def replugged() -> bool:
            view = await sim.control.show()
            second = view.adapters[1]
            return (second.name, second.present, second.powered) == ("hci2", True, False)

        await eventually(replugged)
        probe = await Probe.open(sim.bus_address)
        try:
            assert await probe.get(adapter_path("hci2"), ADAPTER1, "Address") == SECOND_ADDRESS
            assert await probe.get(adapter_path("hci2"), ADAPTER1, "Powered") is False
            reply = await probe.call(adapter_path("hci1"), ADAPTER1, "StartDiscovery")
            assert reply.error_name == UNKNOWN_OBJECT
        finally:
            probe.close()


# --- the world file -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"lock": {"rssi_by_adapter": {"hci7": -80}}}, "names adapter 'hci7'"),
        ({"lock": {"out_of_range_of": ["hci7"]}}, "names adapter 'hci7'"),
        ({"adapter": {"time_scale": 0.5}}, "adapters.0.time_scale"),  # one clock: [adapter]'s
        ({"adapter": {"address": "00:1A:7D:DA:71:13"}}, "two adapters share the address"),
        ({"adapter": {"name": "hci0"}}, "two adapters share the name"),
        ({"adapter": {"name": "usb0"}}, "hci<digits>"),
    ],
)
def test_a_bad_second_adapter_is_refused_with_the_problem_named(
    change: dict[str, dict[str, Any]], problem: str
) -> None:
    document = two_adapters().model_dump(by_alias=True, exclude_none=True, mode="json")
    document["adapters"][0].update(change.get("adapter", {}))
    document["lock"][0].update(change.get("lock", {}))
    with pytest.raises(ValidationError, match=problem):
        WorldConfig.model_validate(document)


def test_a_world_of_one_adapter_has_one() -> None:
    one = world()
    assert one.adapters == []
    assert [adapter.name for adapter in one.all_adapters] == ["hci0"]
    assert [adapter.name for adapter in two_adapters().all_adapters] == ["hci0", "hci1"]


ROOT = Path(__file__).resolve().parents[2]


async def test_a_world_of_two_adapters_runs_as_a_child_process() -> None:
    """The world goes to the child as JSON and is read back there as it was."""
    config = WorldConfig.load(ROOT / "config" / "sim-two-adapters.toml")
    assert WorldConfig.model_validate_json(config.to_json()) == config
    async with run_simulator(config, time_scale=0.1, subprocess=True) as sim:
        shown = await sim.control.show()
        assert [a.name for a in shown.adapters] == [a.name for a in config.all_adapters]
