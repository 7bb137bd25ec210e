"""The lockgate-sim command: start/stop hygiene, ctl, scenarios, example worlds."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from lockgate_sim.control import Action
from lockgate_sim.scenario import Scenario, Step
from lockgate_sim.testing import run_simulator
from lockgate_sim.world import WorldConfig
from tests.sim.simkit import SECOND_SHAREE, SHAREE_NAME, eventually, world

pytestmark = [pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "config" / "sim-demo.toml"
STATION = ROOT / "config" / "sim-station.toml"
SCENARIO = ROOT / "config" / "sim-scenario.toml"
TWO_ADAPTERS = ROOT / "config" / "sim-two-adapters.toml"
PREFIX = "DBUS_SYSTEM_BUS_ADDRESS="


def _command() -> list[str]:
    script = Path(sys.executable).parent / "lockgate-sim"
    return [str(script)] if script.exists() else [sys.executable, "-m", "lockgate_sim"]


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions ``text`` (the unique socket directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the parent pid is the second field after the command's closing parenthesis
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return children


@pytest.mark.timeout(120)
def test_twenty_starts_and_stops_leave_nothing_behind() -> None:
    for cycle in range(20):
        process = subprocess.Popen(
            [*_command(), "--config", str(DEMO), "--log-level", "WARNING"],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith(PREFIX), line
            socket = Path(line[len(PREFIX) :].split(",")[0].removeprefix("unix:path="))
            directory = socket.parent
            assert socket.exists()
            daemons = _processes_mentioning(str(directory))
            assert len(daemons) == 1  # the private dbus-daemon, found by its socket directory
            assert _children_of(process.pid) == daemons
            process.send_signal(signal.SIGTERM if cycle % 2 else signal.SIGINT)
            assert process.wait(timeout=15) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert _processes_mentioning(str(directory)) == []
        assert not directory.exists()


async def _ctl(address: str, *arguments: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *_command(),
        "ctl",
        "--bus",
        address,
        *arguments,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.timeout(60)
async def test_ctl_acts_on_a_running_simulator_subprocess() -> None:
    async with run_simulator(DEMO, time_scale=0.05, subprocess=True) as sim:
        assert sim.pid is not None
        assert sim.station is None
        code, out, _ = await _ctl(sim.bus_address, "close-by-hand", "ISHAREIT-2200541")
        assert (code, out.strip()) == (0, "close-by-hand ISHAREIT-2200541")
        control = sim.control

        async def locked() -> bool:
            return (await control.lock("ISHAREIT-2200541")).bolt == "locked"

        await eventually(locked)  # the bolt travels 0.3 lock seconds
        code, out, _ = await _ctl(sim.bus_address, "show")
        assert code == 0
        row = next(line for line in out.splitlines() if line.startswith("ISHAREIT-2200541"))
        assert " locked " in row
        assert (await sim.control.lock("FC:3C:00:2A:2B:01")).bolt == "locked"

        code, out, _ = await _ctl(sim.bus_address, "battery", "ILOCKIT-4500329", "12")
        assert code == 0
        assert (await sim.control.lock("ILOCKIT-4500329")).battery == 12
        code, _, err = await _ctl(sim.bus_address, "battery", "ILOCKIT-9", "12")
        assert code == 1
        assert "no lock" in err
        code, _, err = await _ctl(sim.bus_address, "battery", "ILOCKIT-4500329", "101")
        assert code == 1
        assert "0..100" in err
        code, _, err = await _ctl(sim.bus_address, "jam")
        assert code == 2
        code, _, _ = await _ctl(sim.bus_address, "jam", "ISHAREIT-2200540")
        assert code == 0
        code, out, _ = await _ctl(sim.bus_address, "show")
        row = next(line for line in out.splitlines() if line.startswith("ISHAREIT-2200540"))
        assert row.endswith("jam x1")
        code, _, _ = await _ctl(sim.bus_address, "rssi", "ILOCKIT-4500329", "-1")
        assert code == 0
        assert (await sim.control.lock("ILOCKIT-4500329")).rssi == -1
        code, _, _ = await _ctl(sim.bus_address, "slots", "2")
        assert code == 0
        assert (await sim.control.show()).connection_slots == 2


@pytest.mark.timeout(90)
async def test_ctl_steers_bluetoothd_and_the_adapters() -> None:
    async with run_simulator(TWO_ADAPTERS, time_scale=0.05, subprocess=True) as sim:
        control = sim.control
        code, out, _ = await _ctl(sim.bus_address, "show")
        assert code == 0
        lines = out.splitlines()
        assert lines[0].startswith("bluetoothd running, 0 restarts")
        assert lines[1].startswith("adapter hci0 00:1A:7D:DA:71:13: powered, 0/5 links")
        assert lines[2].startswith("adapter hci1 5C:F3:70:A1:0B:22: powered, 0/3 links")
        row = next(line for line in lines if line.startswith("ISHAREIT-2200540"))
        assert row.endswith("rssi hci1 -84")
        row = next(line for line in lines if line.startswith("ILOCKIT-4500329"))
        assert row.endswith("out of range of hci1")

        code, out, _ = await _ctl(sim.bus_address, "adapter-power", "hci1", "0")
        assert (code, out.strip()) == (0, "adapter-power hci1 0")
        assert not (await control.adapter("hci1")).powered
        code, _, _ = await _ctl(sim.bus_address, "adapter-remove", "hci1")
        assert code == 0
        code, _, err = await _ctl(sim.bus_address, "adapter-remove", "hci1")
        assert code == 1
        assert "unplugged" in err
        code, out, _ = await _ctl(sim.bus_address, "adapter-add", "hci1", "hci2")
        assert (code, out.strip()) == (0, "adapter-add hci1 hci2")
        second = (await control.show()).adapters[1]
        assert (second.name, second.present, second.powered) == ("hci2", True, True)
        code, _, _ = await _ctl(
            sim.bus_address, "--adapter", "hci2", "rssi", "ISHAREIT-2200541", "-90"
        )
        assert code == 0
        assert (await control.lock("ISHAREIT-2200541")).rssi_by_adapter == {"hci2": -90}
        code, _, err = await _ctl(sim.bus_address, "adapter-power", "hci9", "1")
        assert code == 1
        assert "no adapter" in err
        code, _, err = await _ctl(sim.bus_address, "adapter-power")
        assert code == 2
        assert "ADAPTER" in err

        code, out, _ = await _ctl(sim.bus_address, "bluez-hang", "2.5")
        assert (code, out.strip()) == (0, "bluez-hang 2.5")
        code, _, err = await _ctl(sim.bus_address, "bluez-hang")
        assert code == 1
        assert "needs seconds" in err
        code, out, _ = await _ctl(sim.bus_address, "bluez-restart")
        assert (code, out.strip()) == (0, "bluez-restart")

        async def restarted() -> bool:
            view = await control.show()
            return (view.bluez, view.bluez_restarts) == ("running", 1)

        await eventually(restarted)


async def test_every_control_action_changes_what_show_reports() -> None:
    async with run_simulator(world()) as sim:
        control = sim.control
        await control.set_rssi(SHAREE_NAME, -90)
        await control.set_motor_ms(SHAREE_NAME, 3000)
        await control.jam(SHAREE_NAME, 2)
        await control.refuse_connects(SHAREE_NAME, 3)
        await control.set_battery(SHAREE_NAME, 5)
        await control.out_of_range(SHAREE_NAME)
        lock = await control.lock(SHAREE_NAME)
        assert (lock.rssi, lock.motor_ms, lock.jams_pending) == (-90, 3000, 2)
        assert (lock.refuse_connects, lock.battery, lock.in_range) == (3, 5, False)
        await control.back_in_range(SHAREE_NAME)
        await control.power_cycle(SHAREE_NAME)
        lock = await control.lock(SHAREE_NAME)
        assert (lock.in_range, lock.jams_pending) == (True, 0)
        await control.open_by_hand(SHAREE_NAME)
        assert (await control.lock(SHAREE_NAME)).moving == "unlocked"

        async def opened() -> bool:
            return (await control.lock(SHAREE_NAME)).bolt == "unlocked"

        await eventually(opened)  # 0.3 lock seconds at time_scale 0.05 is 15 ms
        await control.drop_link(SHAREE_NAME)  # no link: nothing to drop, no error
        await control.set_alarm(SHAREE_NAME, on=True)
        await control.set_bike_moving(SHAREE_NAME, moving=True)
        await control.set_sensor_fault(SHAREE_NAME, fault=True)
        lock = await control.lock(SHAREE_NAME)
        assert (lock.alarm, lock.bike_moving, lock.sensor_fault) == (True, True, True)


async def test_a_scenario_runs_its_steps_in_time() -> None:
    scenario = Scenario(
        steps=[
            Step(at_s=12.0, action=Action.BATTERY, lock=SHAREE_NAME, value=33),
            Step(at_s=10.0, action=Action.CLOSE_BY_HAND, lock=SECOND_SHAREE),
        ]
    )
    threads_before = set(threading.enumerate())
    async with run_simulator(world(), scenario=scenario) as sim:
        assert (await sim.control.lock(SECOND_SHAREE)).bolt == "unlocked"
        assert (await sim.control.lock(SHAREE_NAME)).battery == 87
        control = sim.control

        async def done() -> bool:
            return (await control.lock(SHAREE_NAME)).battery == 33

        await eventually(done)  # 12 lock seconds at time_scale 0.05 is 0.6 s
        assert (await control.lock(SECOND_SHAREE)).bolt == "locked"
        assert sim.station is not None
        assert sim.station.clock.now() >= 12.0
    # the harness leaves no thread (a child watcher's included) and no bus directory behind
    async with asyncio.timeout(10):  # until the threads it started have ended
        while not set(threading.enumerate()) <= threads_before:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert _processes_mentioning(sim.bus_address.split(",")[0].removeprefix("unix:path=")) == []


def test_the_example_worlds_load() -> None:
    station = WorldConfig.load(STATION)
    assert len(station.locks) == 12
    assert {lock.profile for lock in station.locks} == {"sharee", "nobond"}
    assert len({lock.address for lock in station.locks}) == 12
    demo = WorldConfig.load(DEMO)
    assert 3 <= len(demo.locks) <= 4
    Scenario.load(SCENARIO).check_against(demo)
    two = WorldConfig.load(TWO_ADAPTERS)
    assert [adapter.name for adapter in two.all_adapters] == ["hci0", "hci1"]
    assert [lock.name for lock in two.locks] == [lock.name for lock in demo.locks]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"name": "ILOCKIT-2200540"}, "ISHAREIT-"),
        ({"k_seed": "[1, 2, 3]"}, "K_seed must be 16 bytes"),
        ({"auth_id": 3}, "not nobond keys"),
        ({"address": "FC:3C:00:2A:2A"}, "not a Bluetooth address"),
    ],
)
def test_a_bad_world_is_refused_with_the_problem_named(
    change: dict[str, object], problem: str
) -> None:
    document = world().model_dump(by_alias=True, exclude_none=True, mode="json")
    document["lock"][0].update(change)
    with pytest.raises(ValidationError, match=problem):
        WorldConfig.model_validate(document)


def test_a_bad_config_file_exits_2_with_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[adapter]\nconnection_slots = 0\n")
    result = subprocess.run(
        [*_command(), "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ},
    )
    assert result.returncode == 2
    assert "connection_slots" in result.stderr


async def test_an_error_in_the_block_comes_out_as_itself() -> None:
    with pytest.raises(LookupError, match="from the test"):
        async with run_simulator(world()):
            raise LookupError("from the test")


def test_joining_a_bus_that_is_not_there_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [*_command(), "--config", str(DEMO), "--bus", f"unix:path={tmp_path}/none"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "lockgate-sim:" in result.stderr
    assert "Traceback" not in result.stderr
