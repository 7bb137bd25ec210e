"""A backend as integrators write one: a paho client (not lockgate code) on its own thread.

It subscribes to everything under ``{root}/{station}/``, keeps every message it receives in order,
and sends requests on ``commands``. Tests read what it saw; nothing here knows the link's insides.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.brokers import HOST, Amqtt, Mosquitto


@dataclass(frozen=True)
class Received:
    topic: str  # after the station's prefix
    payload: bytes
    retain: bool
    correlation_data: bytes | None = None

    def json(self) -> Any:
        return json.loads(self.payload)


class Backend:
    def __init__(self, client: paho.Client, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._lock = threading.Lock()
        self._received: list[Received] = []
        client.on_message = self._on_message

    def _on_message(self, _client: Any, _userdata: Any, message: paho.MQTTMessage) -> None:
        properties = getattr(message, "properties", None)
        with self._lock:
            self._received.append(
                Received(
                    message.topic.removeprefix(self.prefix),
                    bytes(message.payload),
                    bool(message.retain),
                    getattr(properties, "CorrelationData", None),
                )
            )

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def on(self, topic: str) -> list[Received]:
        return [m for m in self.received if m.topic == topic]

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on("events")]

    def documents(self, command_id: str) -> list[dict[str, Any]]:
        return [m.json() for m in self.on(f"commands/{command_id}")]

    def errors(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on("errors")]

    def send(self, payload: bytes, *, correlation_data: bytes | None = None) -> None:
        properties = None
        if correlation_data is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation_data
            properties.ResponseTopic = "backend/replies"
        self.client.publish(self.prefix + "commands", payload, qos=1, properties=properties)

    def send_command(self, command: dict[str, Any]) -> str:
        body = {"id": uuid.uuid4().hex} | command
        self.send(json.dumps(body).encode())
        return str(body["id"])

    async def wait_for(self, check: Callable[[], bool], timeout_s: float = 30) -> None:
        """A wait limit, not a timing assertion."""
        async with asyncio.timeout(timeout_s):
            while not check():  # noqa: ASYNC110 - the paho thread signals nothing to the loop
                await asyncio.sleep(0.02)


@asynccontextmanager
async def backend(
    broker: Mosquitto | Amqtt,
    prefix: str = "lockgate/v1/FR101/",
    *,
    ca_file: str | None = None,
    cert: tuple[str, str] | None = None,
    username: str | None = None,
    password: str | None = None,
    persistent: bool = False,
    v5: bool = True,
) -> AsyncIterator[Backend]:
    """A subscribed backend. ``persistent``: a session that outlives its connection (with a
    broker that keeps sessions, messages published while it was away are delivered later)."""
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2,
        client_id=f"backend-{uuid.uuid4().hex[:8]}",
        protocol=paho.MQTTv5 if v5 else paho.MQTTv311,
        clean_session=None if v5 else not persistent,
    )
    client.reconnect_delay_set(min_delay=1, max_delay=1)
    if broker.tls is not None:
        client.tls_set(
            ca_certs=ca_file or str(broker.tls.authority.ca_file),
            certfile=cert[0] if cert else None,
            keyfile=cert[1] if cert else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    if username is not None:
        client.username_pw_set(username, password)
    seen = Backend(client, prefix)
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    # (Re)subscribing at every connection: a broker without the session forgot the subscription.
    client.on_connect = lambda *_: client.subscribe(prefix + "#", qos=1)
    properties = None
    if persistent:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
    if v5:
        client.connect(HOST, broker.port, clean_start=not persistent, properties=properties)
    else:
        client.connect(HOST, broker.port)
    client.loop_start()
    try:
        # waited for without blocking the loop: the broker may run in it (amqtt)
        await seen.wait_for(subscribed.is_set, 10)
        yield seen
    finally:
        client.disconnect()
        client.loop_stop()
