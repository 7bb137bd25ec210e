"""``online`` means ready: a request a backend sends the moment it sees the station's ``online``
is taken, at every start (the station subscribes to ``commands`` before it says ``online``).

The race needs repeating: the station is started 20 times over a real mosquitto and a real
store; a paho backend publishes one request from inside its own ``on_message``, as soon as the
``online`` of each start arrives, and never again.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from lockgate.mqtt import Link, LinkSettings
from lockgate.store import Correlation, Outbox, StationKey, Store
from tests.ble.conftest import world
from tests.brokers import HOST, Mosquitto
from tests.mqtt.station import STATION, registered, status_document

pytestmark = pytest.mark.integration

STARTS = 20
PREFIX = f"lockgate/v1/{STATION}/"


class EagerBackend:
    """Sends one request on each ``online`` it sees, from paho's own thread."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.onlines = 0
        self.lock = threading.Lock()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=f"eager-{uuid.uuid4().hex[:8]}",
            protocol=paho.MQTTv5,
        )
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_connect = lambda *_: self.client.subscribe(PREFIX + "status", qos=1)

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        if message.retain:
            return  # a retained status is an earlier start's, not this one's news
        if json.loads(message.payload).get("state") != "online":
            return
        request = {"id": uuid.uuid4().hex, "name": "sync-device", "bike": "B2200500"}
        with self.lock:
            self.onlines += 1
            self.sent.append(request["id"])
        self.client.publish(PREFIX + "commands", json.dumps(request), qos=1)


async def test_a_request_sent_on_online_is_taken_at_every_start(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    station = registered(world(locks=1))
    taken: list[str] = []
    arrived = asyncio.Event()

    async def intake(payload: bytes, _correlation: Correlation) -> object:
        taken.append(json.loads(payload)["id"])
        arrived.set()
        return None

    eager = EagerBackend()
    eager.client.connect(HOST, mosquitto.port)
    eager.client.loop_start()
    try:
        async with asyncio.timeout(10):
            while not eager.subscribed.is_set():  # noqa: ASYNC110 - paho's thread signals it
                await asyncio.sleep(0.02)
        key = StationKey.from_bytes(bytes(range(32)))
        async with Store(tmp_path / "lockgate.db", station=station, key=key) as store:
            for start in range(STARTS):
                settings = LinkSettings(
                    url=mosquitto.url, station=STATION, client_id=f"lockgate-{STATION}"
                )
                link = Link(
                    settings, outbox=Outbox(store), intake=intake, status=status_document(station)
                )
                async with link:
                    async with asyncio.timeout(10):
                        while len(taken) <= start:
                            arrived.clear()
                            await arrived.wait()
                    await link.stop(flush_timeout_s=2.0)
    finally:
        eager.client.loop_stop()
        eager.client.disconnect()
    assert eager.onlines == STARTS
    assert taken == eager.sent
