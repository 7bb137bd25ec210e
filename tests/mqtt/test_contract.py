"""The whole contract as a backend sees it through a real mosquitto: a paho subscriber, the link,
the engine and the real BLE driver against the simulator.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lockgate.contract.times import format_time
from tests.brokers import running_mosquitto
from tests.mqtt.backend import backend
from tests.mqtt.station import running_station

pytestmark = pytest.mark.integration


def soon(seconds: int = 60) -> str:
    return format_time(datetime.now(UTC) + timedelta(seconds=seconds))


async def test_the_contract_seen_by_a_backend(tmp_path: Path) -> None:
    async with running_mosquitto(tmp_path / "broker") as broker:
        with backend(broker) as seen:
            async with running_station(tmp_path, broker.url) as station:
                await station.link.wait_connected(30)
                lock = station.sim.world.locks[0]
                bike = station.bike(0)

                # status online and every lock document, retained
                await seen.wait_for(
                    lambda: bool(seen.on("status")) and bool(seen.on(f"locks/{bike}"))
                )
                assert seen.on("status")[-1].json()["state"] == "online"

                keys = {"K_seed": lock.k_seed, "K_u": lock.k_u}
                command_id = seen.send_command(
                    {"command": "unlock", "bike": bike, "timeout_at": soon(), "credentials": keys}
                )
                await seen.wait_for(
                    lambda: any(
                        d["state"]["value"] == "SUCCESS" for d in seen.documents(command_id)
                    )
                )
                states = [d["state"]["value"] for d in seen.documents(command_id)]
                walked = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
                assert walked == ["NOT_SENT", "SENT", "RECEIVED", "SUCCESS"]

                # bad input: an error document
                seen.send(b"not json")
                await seen.wait_for(lambda: bool(seen.errors()))
                assert seen.errors()[0]["error_message"] == "payload is not valid JSON"

                await seen.wait_for(lambda: len(seen.events()) >= 2)
                seqs = [e["seq"] for e in seen.events()]
                assert seqs == sorted(seqs)
            await seen.wait_for(lambda: seen.on("status")[-1].json()["state"] == "offline")
        print(json.dumps([m.topic for m in seen.received]))
