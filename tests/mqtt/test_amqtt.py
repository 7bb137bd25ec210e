"""A 3.1.1-only broker (amqtt, the demo's embedded broker): in ``auto`` mode the link falls back
from MQTT 5 to 3.1.1 and the contract works the same, without MQTT 5 properties."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.mqtt import MqttProtocol
from tests.brokers import running_amqtt
from tests.mqtt.backend import backend
from tests.mqtt.station import running_station
from tests.mqtt.test_contract import soon, walk

pytestmark = pytest.mark.integration


async def test_auto_falls_back_to_3_1_1(tmp_path: Path) -> None:
    async with running_amqtt() as broker, backend(broker, v5=False) as seen:
        async with running_station(tmp_path, broker.url, connect_timeout_s=3) as station:
            await station.link.wait_connected(30)
            assert station.link.state.protocol is MqttProtocol.V311
            await seen.wait_for(lambda: bool(seen.on("status")))
            command_id = seen.send_command(
                {"command": "book", "bike": station.bike(0), "user_id": "u-1"}
            )
            await seen.wait_for(lambda: len(seen.documents(command_id)) >= 2)
            assert walk(seen.documents(command_id)) == ["NOT_SENT", "SUCCESS"]
            seen.send(b"[]")
            await seen.wait_for(lambda: bool(seen.errors()))
            assert soon()
        await seen.wait_for(lambda: seen.on("status")[-1].json()["state"] == "offline")
