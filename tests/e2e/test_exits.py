"""How ``lockgate run`` ends when it cannot start: one line naming the cause, a documented code.

Each case is a station an operator could really have: a configuration with a mistake (EX_CONFIG,
which systemd does not restart), an adapter BlueZ does not have or no BlueZ at all (EX_UNAVAILABLE),
a store that is not a database or a station key others can read (EX_IOERR).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lockgate.service.exits import Exit
from lockgate_sim.testing import RunningSimulator, run_simulator
from tests.brokers import Mosquitto, running_mosquitto
from tests.e2e.station import Daemon, notify_socket, sharee, world, write_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
async def things(tmp_path: Path) -> AsyncIterator[tuple[Mosquitto, RunningSimulator]]:
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        run_simulator(world(sharee(31)), time_scale=0.1, subprocess=True) as sim,
    ):
        yield broker, sim


def lines(daemon: Daemon) -> list[dict[str, object]]:
    return [json.loads(line) for line in daemon.output().splitlines() if line.startswith("{")]


async def ended(daemon: Daemon) -> int:
    await daemon.start()
    return await daemon.wait(timeout_s=60)


async def test_an_invalid_configuration(
    tmp_path: Path, things: tuple[Mosquitto, RunningSimulator]
) -> None:
    broker, sim = things
    config = write_config(
        tmp_path, broker_port=broker.port, bus_address=sim.bus_address, sim=sim.world
    )
    config.write_text(config.read_text().replace("connection_slots = 3", 'connection_slots = "3"'))
    daemon = Daemon(config, tmp_path / "daemon.log")
    assert await ended(daemon) == Exit.CONFIG
    assert "ble.connection_slots" in daemon.output()
    assert not (tmp_path / "lockgate.db").exists()  # nothing started


@pytest.mark.parametrize("bus", ["adapter", "no bluez"])
async def test_no_adapter(
    tmp_path: Path, things: tuple[Mosquitto, RunningSimulator], bus: str
) -> None:
    broker, sim = things
    address = sim.bus_address if bus == "adapter" else f"unix:path={tmp_path / 'no-bus'}"
    config = write_config(
        tmp_path,
        broker_port=broker.port,
        bus_address=address,
        sim=sim.world,
        ble='adapter = "hci1"' if bus == "adapter" else "",
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    assert await ended(daemon) == Exit.UNAVAILABLE
    (refusal,) = [line for line in lines(daemon) if line.get("level") == "error"]
    assert refusal["event"] == "adapter unusable"
    assert refusal["exit_code"] == Exit.UNAVAILABLE


async def test_a_store_that_is_not_a_database(
    tmp_path: Path, things: tuple[Mosquitto, RunningSimulator]
) -> None:
    broker, sim = things
    config = write_config(
        tmp_path, broker_port=broker.port, bus_address=sim.bus_address, sim=sim.world
    )
    (tmp_path / "lockgate.db").write_bytes(os.urandom(8192))
    daemon = Daemon(config, tmp_path / "daemon.log")
    assert await ended(daemon) == Exit.IO_ERROR
    (refusal,) = [line for line in lines(daemon) if line.get("level") == "error"]
    assert refusal["event"] == "store unusable"
    assert refusal["path"] == str(tmp_path / "lockgate.db")


async def test_a_station_key_others_can_read(
    tmp_path: Path, things: tuple[Mosquitto, RunningSimulator]
) -> None:
    broker, sim = things
    config = write_config(
        tmp_path, broker_port=broker.port, bus_address=sim.bus_address, sim=sim.world
    )
    key = tmp_path / "store.key"
    key.write_text(os.urandom(32).hex())
    key.chmod(0o644)
    daemon = Daemon(config, tmp_path / "daemon.log")
    assert await ended(daemon) == Exit.IO_ERROR
    (refusal,) = [line for line in lines(daemon) if line.get("level") == "error"]
    assert refusal["event"] == "station key unusable"
    assert key.read_text() not in daemon.output()


async def test_fresh_starts_anew_and_keeps_the_unusable_files(
    tmp_path: Path, things: tuple[Mosquitto, RunningSimulator]
) -> None:
    """The operator's way out of a corrupt store: ``--fresh`` sets the files aside and starts."""
    broker, sim = things
    config = write_config(
        tmp_path, broker_port=broker.port, bus_address=sim.bus_address, sim=sim.world
    )
    garbage = os.urandom(8192)
    (tmp_path / "lockgate.db").write_bytes(garbage)
    refused = Daemon(config, tmp_path / "refused.log")
    assert await ended(refused) == Exit.IO_ERROR
    assert (tmp_path / "lockgate.db").read_bytes() == garbage  # left as found

    async with notify_socket(tmp_path) as notify:
        daemon = Daemon(
            config,
            tmp_path / "daemon.log",
            environ={"NOTIFY_SOCKET": str(notify.path)},
            arguments=("--fresh",),
        )
        await daemon.start()
        try:
            await notify.wait_for("READY=1")
        finally:
            assert await daemon.terminate() == 0
    assert garbage in set_aside(tmp_path)


def set_aside(folder: Path) -> list[bytes]:
    """The contents of the files the store renamed aside."""
    return [p.read_bytes() for p in folder.iterdir() if ".unusable-" in p.name and p.is_file()]
