"""The demo's backend through the real amqtt broker: what a station publishes becomes the
picture the view draws; its requests reach ``commands``; it rides out a broker restart."""

from __future__ import annotations

import asyncio
import json

import aiomqtt
import pytest

from lockgate.demo.backend import Backend, BackendOfflineError
from lockgate.demo.broker import DemoBroker
from lockgate.demo.world import STATION
from lockgate.model import CommandState, LockState, StationState
from tests.demo.documents import ROOT, command, lock, lock_event, status


def station_client(broker: DemoBroker) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        identifier="test-station",
        protocol=aiomqtt.ProtocolVersion.V311,
        timeout=10,
    )


async def test_the_picture_holds_the_latest_of_every_document() -> None:
    async with (
        DemoBroker() as broker,
        Backend("127.0.0.1", broker.port, STATION) as backend,
    ):
        assert await backend.wait_for(lambda p: p.connected, 10)
        async with station_client(broker) as station:
            await station.publish(f"{ROOT}/status", status(outbox_depth=4).to_bytes(), qos=1)
            await station.publish(
                f"{ROOT}/locks/FR1540", lock("FR1540", LockState.UNLOCKED).to_bytes(), qos=1
            )
            for seq in (1, 2):
                event = lock_event("FR1540", seq, LockState.UNLOCKED)
                await station.publish(f"{ROOT}/events", event.to_bytes(), qos=1)
            late = command("c1", 2, CommandState.SENT)
            await station.publish(
                f"{ROOT}/commands/c1", command("c1", 3, CommandState.SUCCESS).to_bytes(), qos=1
            )
            await station.publish(f"{ROOT}/commands/c1", late.to_bytes(), qos=1)
            await station.publish(f"{ROOT}/events", b"{not json", qos=1)
            await station.publish(f"{ROOT}/commands", b'{"id": "mine"}', qos=1)  # a request

        assert await backend.wait_for(lambda p: len(p.unreadable) == 1, 10)
        picture = backend.picture
        assert picture.status is not None
        assert (picture.status.state, picture.status.outbox_depth) == (StationState.ONLINE, 4)
        assert picture.locks["FR1540"].lock_state is LockState.UNLOCKED
        assert [e.seq for e in picture.events] == [1, 2]
        # At least once: the late, older version does not undo the final state.
        assert picture.commands["c1"].state.value is CommandState.SUCCESS
        assert picture.unreadable[0].startswith("events/")
        assert "mine" not in picture.commands


async def test_its_requests_reach_the_commands_topic_again_until_their_receipt() -> None:
    async with (
        DemoBroker() as broker,
        Backend("127.0.0.1", broker.port, STATION) as backend,
        station_client(broker) as station,
    ):
        await station.subscribe(f"{ROOT}/commands", qos=1)
        assert await backend.wait_for(lambda p: p.connected, 10)
        sending = asyncio.create_task(
            backend.send(
                "unlock", "FR1541", timeout_s=60, user_id="u-1", credentials={"K_seed": "[1]"}
            )
        )
        payloads: list[bytes] = []
        async with asyncio.timeout(30):
            async for message in station.messages:
                assert isinstance(message.payload, bytes)
                payloads.append(message.payload)
                if len(payloads) == 2:
                    break
        # No receipt yet: the same request went out again, unchanged.
        assert payloads[0] == payloads[1]
        request = json.loads(payloads[0])
        receipt = command(request["id"], 1, CommandState.NOT_SENT)
        await station.publish(f"{ROOT}/commands/{request['id']}", receipt.to_bytes(), qos=1)
        assert await asyncio.wait_for(sending, 30) == request["id"]
        assert (request["command"], request["bike"], request["user_id"]) == (
            "unlock",
            "FR1541",
            "u-1",
        )
        assert request["credentials"] == {"K_seed": "[1]"}
        assert request["timeout_at"].endswith("Z")


async def test_it_reconnects_when_the_broker_comes_back() -> None:
    async with (
        DemoBroker(first="lockgate-demo-backend") as broker,
        Backend("127.0.0.1", broker.port, STATION, on_subscribed=broker.open_to_all) as backend,
    ):
        assert await backend.wait_for(lambda p: p.connected, 10)
        await broker.stop()
        assert await backend.wait_for(lambda p: not p.connected, 10)
        with pytest.raises(BackendOfflineError):
            await backend.send("book", "FR1540", user_id="u-1")

        await broker.start()
        backend.reconnect_now()
        # The station is let in only once the backend subscribed again: nothing it delivers
        # right after the outage is lost.
        async with station_client(broker) as station:
            event = lock_event("FR1541", 7, LockState.LOCKED, replayed=True)
            await station.publish(f"{ROOT}/events", event.to_bytes(), qos=1)
        assert await backend.wait_for(lambda p: any(e.replayed for e in p.events), 10)
        assert backend.picture.connected
