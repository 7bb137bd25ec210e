"""The demo's amqtt broker: serves on loopback, goes away, comes back on the same port, and holds
every client but the backend after a start until the backend has subscribed."""

from __future__ import annotations

import asyncio

import aiomqtt
import pytest

from lockgate.demo.broker import DemoBroker
from lockgate.mqtt.internals import MqttConnectError

V311 = aiomqtt.ProtocolVersion.V311


def client(broker: DemoBroker, identifier: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1", broker.port, identifier=identifier, protocol=V311, timeout=10
    )


async def round_trip(broker: DemoBroker, identifier: str, topic: str) -> bytes:
    async with client(broker, identifier) as mqtt:
        await mqtt.subscribe(topic, qos=1)
        await mqtt.publish(topic, b"hello", qos=1)
        async with asyncio.timeout(10):
            async for message in mqtt.messages:
                assert isinstance(message.payload, bytes)
                return message.payload
    raise AssertionError("no message")


async def test_it_stops_and_serves_again_on_the_same_port() -> None:
    async with DemoBroker() as broker:
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert await round_trip(broker, "a", "t/1") == b"hello"

        await broker.stop()
        assert not broker.running
        with pytest.raises(aiomqtt.MqttError):
            async with client(broker, "b"):
                pass

        await broker.start()
        assert broker.running
        assert await round_trip(broker, "c", "t/2") == b"hello"
    with pytest.raises(aiomqtt.MqttError):
        async with client(broker, "d"):
            pass


@pytest.mark.parametrize("will", [None, aiomqtt.Will("s/status", b"offline", qos=1, retain=True)])
async def test_it_refuses_mqtt_5_so_that_clients_fall_back(will: aiomqtt.Will | None) -> None:
    """With a will too, which amqtt alone misreads and then waits on until the client gives up."""
    async with DemoBroker() as broker:
        with pytest.raises(MqttConnectError, match="132"):
            async with aiomqtt.Client(
                "127.0.0.1",
                broker.port,
                protocol=aiomqtt.ProtocolVersion.V5,
                will=will,
                timeout=60,
            ):
                pass
        assert await round_trip(broker, "after", "t/3") == b"hello"


async def until_held(broker: DemoBroker, identifier: str) -> None:
    """Until the broker has read the client's CONNECT and holds it."""
    async with asyncio.timeout(10):
        while identifier not in broker.held:  # noqa: ASYNC110 - polls the broker's record
            await asyncio.sleep(0.01)


async def test_after_a_start_others_wait_until_the_backend_subscribed() -> None:
    async with DemoBroker(first="backend") as broker:
        station = asyncio.create_task(round_trip(broker, "station", "t/held"))
        async with client(broker, "backend") as backend:
            await backend.subscribe("t/#", qos=1)
            await until_held(broker, "station")
            assert not station.done()  # held at CONNECT
            broker.open_to_all()
            assert await asyncio.wait_for(station, 10) == b"hello"
            async with asyncio.timeout(10):
                async for message in backend.messages:
                    assert str(message.topic) == "t/held"
                    break

        # Every start holds them again.
        await broker.stop()
        await broker.start()
        held = asyncio.create_task(round_trip(broker, "station", "t/again"))
        await until_held(broker, "station")
        assert not held.done()
        broker.open_to_all()
        assert await asyncio.wait_for(held, 10) == b"hello"
