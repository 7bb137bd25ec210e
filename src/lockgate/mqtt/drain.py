"""The drain: the outbox published oldest first, with a window of QoS 1 publishes in flight.

Part of the MQTT link (:mod:`lockgate.mqtt.link`), which runs one drain per connection beside the
intake. Messages are handed to paho directly, in order, and their PUBACKs come back through paho's
``on_publish`` (:mod:`lockgate.mqtt.internals` says what of aiomqtt's it relies on): aiomqtt's
``publish`` costs a task, a timer and a count of its pending calls per message, more than paho's own
packing, and a drain after an outage publishes tens of thousands (docs/mqtt-link.md). Each message
is acknowledged to the outbox after its own PUBACK, in batches (one transaction each); a PUBACK that
does not come within the timeout ends the connection, as aiomqtt's timeout did, unless the broker
was heard from meanwhile (its PUBACK is then behind the requests it sent first).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.client import MQTT_ERR_SUCCESS, CallbackOnPublish_v2
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from lockgate.contract import topics
from lockgate.mqtt.internals import last_heard, paho_of
from lockgate.store import Outbox, OutboxMessage


async def drain(
    client: aiomqtt.Client,
    outbox: Outbox,
    *,
    window: int,
    batch: int,
    timeout_s: float,
    prefix: str,
    v5: bool,
) -> None:
    """Publishes what the outbox holds and what comes into it, until cancelled (or a failure)."""
    paho = paho_of(client)
    loop = asyncio.get_running_loop()
    in_flight: dict[int, tuple[OutboxMessage, float]] = {}  # mid: message, deadline; in order
    done: list[OutboxMessage] = []
    arrived = asyncio.Event()
    room = asyncio.Event()
    # aiomqtt's own (callback API version 2), for the publishes it makes itself: the retained
    # documents at connect and the offline status at a stop.
    theirs = cast("CallbackOnPublish_v2 | None", paho.on_publish)

    def on_publish(
        paho_client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        entry = in_flight.pop(mid, None)
        if entry is None:
            if theirs is not None:
                theirs(paho_client, userdata, mid, reason, properties)
            return
        done.append(entry[0])
        arrived.set()
        room.set()

    async def acknowledge() -> None:
        while True:
            # Woken by PUBACKs, or by the deadline of the oldest publish in flight (or after a
            # timeout's length when none is: one published later is due after that).
            oldest = next(iter(in_flight.values()), None)
            try:
                async with asyncio.timeout_at(
                    oldest[1] if oldest is not None else loop.time() + timeout_s
                ):
                    await arrived.wait()
            except TimeoutError:
                if _broker_silent(in_flight, paho, loop.time(), timeout_s):
                    raise aiomqtt.MqttError(
                        f"no PUBACK within {timeout_s} s: the broker is not answering"
                    ) from None
                continue
            arrived.clear()
            acknowledged = done.copy()
            done.clear()
            await outbox.acknowledge(*acknowledged)

    paho.on_publish = on_publish
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(acknowledge(), name="lockgate.mqtt.acknowledge")
            async for message in outbox.pending(batch):
                while len(in_flight) >= window:
                    room.clear()
                    await room.wait()
                info = paho.publish(
                    topics.full(prefix, message.topic),
                    message.payload,
                    message.qos,
                    message.retain,
                    publish_properties(message, v5=v5),
                )
                if info.rc != MQTT_ERR_SUCCESS:
                    raise aiomqtt.MqttCodeError(info.rc, "could not publish")
                in_flight[info.mid] = (message, loop.time() + timeout_s)
    finally:
        paho.on_publish = theirs
        if done:  # PUBACKs that came in before the end: not to be sent again
            await outbox.acknowledge(*done)


def _broker_silent(
    in_flight: dict[int, tuple[OutboxMessage, float]],
    paho: mqtt.Client,
    now: float,
    timeout_s: float,
) -> bool:
    """Whether the oldest publish in flight is past its deadline and nothing came from the
    broker for a timeout's length: the connection is then dead.

    One past its deadline while the broker is heard from gets a new deadline: its PUBACK is
    behind what the broker sent first, requests the station reads only as fast as it answers
    them (backpressure.py), which mosquitto does not hold back for an MQTT 5 client. Ending the
    connection then would only lose its session."""
    oldest = next(iter(in_flight), None)
    if oldest is None or in_flight[oldest][1] > now:
        return False
    if not _heard_within(paho, timeout_s):
        return True
    message, _ = in_flight.pop(oldest)
    in_flight[oldest] = (message, now + timeout_s)  # to the end: the next oldest is looked at next
    return False


def _heard_within(paho: mqtt.Client, seconds: float) -> bool:
    """Whether paho read any bytes from the broker in the last ``seconds`` (its own keepalive
    clock, ``time.monotonic``)."""
    last = last_heard(paho)
    return last is not None and time.monotonic() - last < seconds


def publish_properties(message: OutboxMessage, *, v5: bool) -> Properties | None:
    """MQTT 5 correlation data and response topic of a command document, to echo."""
    correlation = message.correlation
    if not v5 or (correlation.correlation_data is None and correlation.response_topic is None):
        return None
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if correlation.correlation_data is not None:
        properties.CorrelationData = correlation.correlation_data
    if correlation.response_topic is not None:
        properties.ResponseTopic = correlation.response_topic
    return properties
