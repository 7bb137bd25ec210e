"""The station's radio as ``lockgate run`` meets it: bluetoothd restarting under a running daemon,
and an adapter gone for longer than the station waits.

The daemon is a subprocess pointed at mosquitto and at the simulator; the backend is plain aiomqtt.
What the operator and the backend see is checked: the retained status's ``ble``, the ``radio``
events, the WARNING lines, and a command that succeeds once the radio is back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lockgate.service.exits import Exit
from tests.e2e.backend import command
from tests.e2e.station import Daemon, bike_of, keys_of, sharee, world
from tests.e2e.test_daemon import site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROBE = "probe_interval_s = 0.5\nprobe_timeout_s = 1.0"


def log_lines(daemon: Daemon) -> list[dict[str, object]]:
    return [json.loads(line) for line in daemon.output().splitlines() if line.startswith("{")]


async def test_bluez_restart_under_a_running_daemon(tmp_path: Path) -> None:
    locks = [sharee(1), sharee(2)]
    async with site(tmp_path, world(*locks)) as station:
        sim, peer, daemon, notify = station.sim, station.backend, station.daemon, station.notify
        await daemon.start()
        try:
            await notify.wait_for("READY=1")
            status = await peer.wait_for(lambda: peer.latest("status"))
            assert status["ble"]["state"] == "up"
            (adapter,) = status["ble"]["adapters"]
            assert (adapter["adapter"], adapter["name"], adapter["state"]) == ("hci0", "hci0", "up")

            await sim.control.bluez_restart(down_s=20.0)  # 2 s here
            down = await peer.wait_for(
                lambda: next(iter(peer.events(type="radio", radio_state="down")), None)
            )
            assert down["bike"] is None
            assert down["adapter"] == "hci0"
            assert "bluetoothd" in down["reason"]
            up = await peer.wait_for(
                lambda: next(iter(peer.events(type="radio", radio_state="up")), None)
            )
            assert up["down_s"] > 0
            # The retained status said so meanwhile, and says up again now.
            states = [d["ble"]["state"] for d in peer.documents("status")]
            assert "down" in states
            await peer.wait_for(lambda: (s := peer.latest("status")) and s["ble"]["state"] == "up")

            lock = locks[0]
            final = await peer.run(command(bike_of(lock), "unlock", credentials=keys_of(lock)))
            assert final["state"]["value"] == "SUCCESS", final
            assert (await sim.control.lock(lock.name)).motor_opened == 1

            warnings = [
                line["event"] for line in log_lines(daemon) if line.get("level") == "warning"
            ]
            assert "adapter down" in warnings
            assert "radio down: commands wait for it" in warnings
            assert await daemon.terminate() == Exit.OK
        finally:
            await daemon.close()


async def test_a_radio_gone_too_long_ends_the_daemon_for_a_restart(tmp_path: Path) -> None:
    ble = f"radio_lost_exit_s = 2.0\n{PROBE}"
    async with site(tmp_path, world(sharee(3)), ble=ble) as station:
        sim, peer, daemon = station.sim, station.backend, station.daemon
        await daemon.start()
        try:
            await peer.wait_for(lambda: (s := peer.latest("status")) and s["state"] == "online")
            await sim.control.adapter_remove("hci0")
            assert await daemon.wait(timeout_s=60) == Exit.UNAVAILABLE
            (last,) = [
                line for line in log_lines(daemon) if line.get("event", "").startswith("radio lost")
            ]
            assert last["level"] == "error"
            assert last["exit_code"] == Exit.UNAVAILABLE
            # A clean stop: the station said offline before it went.
            await peer.wait_for(lambda: (s := peer.latest("status")) and s["state"] == "offline")
        finally:
            await daemon.close()
