"""The backend client library (lockgate.client) against mosquitto and ``lockgate run``.

The station is the real daemon as a subprocess on the simulator (tests/e2e's harness); the tests'
own backend (tests/e2e/backend.py, plain aiomqtt) watches the broker beside the client, so that what
the client claims is held against what was published: how often a request went out, which
documents the station published for it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from lockgate.client import (
    BrokerLostError,
    CommandRefusedError,
    Event,
    NoAnswerError,
    StationClient,
    request,
)
from tests.brokers import running_mosquitto
from tests.e2e.station import ROOT, STATION, bike_of, keys_of, nobond, sharee, world
from tests.e2e.test_daemon import site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_a_request_the_station_was_not_there_for_is_sent_again(tmp_path: Path) -> None:
    """The station is down when the request goes out (no one takes it: no receipt); the client
    sends the same bytes again until the station, started meanwhile, answers; it runs once."""
    lock = sharee(1)
    bike = bike_of(lock)
    async with site(tmp_path, world(lock)) as s:
        url = f"mqtt://127.0.0.1:{s.broker.port}"
        async with StationClient(url, STATION, resend_s=0.3, wait_s=90) as client:
            body = request("unlock", bike, user_id="u-1", credentials=keys_of(lock))
            seen: list[dict[str, Any]] = []
            sending = asyncio.create_task(client.send(body, on_document=seen.append))
            await s.backend.wait_for(lambda: len(s.backend.messages("commands")) >= 3)
            await s.daemon.start()
            final = await sending
        assert final["state"]["value"] == "SUCCESS"
        sent = s.backend.messages("commands")
        assert len(sent) >= 3
        assert len({m.payload for m in sent}) == 1  # the same bytes every time
        published = s.backend.documents(f"commands/{body['id']}")
        # Taken once: a copy that came later was a repeat, answered with the stored document
        # again (the same version, the same content); the versions run 1..n without a gap.
        by_version = {json.dumps(d, sort_keys=True): d["version"] for d in published}
        assert sorted(by_version.values()) == list(range(1, final["version"] + 1))
        assert published[-1] == final
        assert seen[-1] == final
        assert seen[0]["state"]["value"] == "NOT_SENT"
        assert (await s.sim.control.lock(lock.name)).bolt == "unlocked"


async def test_a_station_killed_mid_command_is_followed_to_the_end(tmp_path: Path) -> None:
    """The station dies (SIGKILL) once the unlock went to the lock and is started again: the same
    ``send`` goes on waiting, and returns the end the restarted station settled."""
    lock = sharee(2, motor_ms=4000)
    bike = bike_of(lock)
    async with site(tmp_path, world(lock)) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        url = f"mqtt://127.0.0.1:{s.broker.port}"
        async with StationClient(url, STATION) as client:
            first = await client.wait_status(online=True)
            # Provisioned, so the restarted station can read the lock to settle the command.
            provisioned = await client.provision(bike, keys_of(lock))
            assert provisioned["state"]["value"] == "SUCCESS"
            sent = asyncio.Event()

            def watch(document: dict[str, Any]) -> None:
                if document["state"]["value"] in ("SENT", "RECEIVED"):
                    sent.set()

            body = request("unlock", bike, user_id="u-2", timeout_s=120)
            sending = asyncio.create_task(client.send(body, on_document=watch))
            async with asyncio.timeout(60):
                await sent.wait()
            await s.daemon.kill()
            await client.wait_status(online=False)  # the will
            await s.daemon.start()
            try:
                final = await sending
            except CommandRefusedError as refused:  # the read after the restart did not show it
                final = refused.document
            second = await client.wait_status(online=True)
        assert second["boot_id"] != first["boot_id"]
        published = s.backend.documents(f"commands/{body['id']}")
        assert published[-1] == final
        assert final["state"]["value"] in ("SUCCESS", "ERROR")
        if final["state"]["value"] == "ERROR":
            assert final["error_code"] == "ERRORS.INTERRUPTED"
        else:
            assert (await s.sim.control.lock(lock.name)).bolt == "unlocked"


async def test_refusals_are_typed_errors_with_their_document(tmp_path: Path) -> None:
    lock = nobond(3)
    bike = bike_of(lock)
    async with site(tmp_path, world(lock)) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        async with StationClient(f"mqtt://127.0.0.1:{s.broker.port}", STATION) as client:
            # The lock refuses the keys: the command's ERROR document.
            wrong = dict(keys_of(lock), ltk="00" * 32)
            with pytest.raises(CommandRefusedError) as refused:
                await client.unlock(bike, credentials=wrong)
            assert refused.value.error_code == "ERRORS.AUTH_FAILED"
            assert refused.value.document["state"]["value"] == "ERROR"
            assert refused.value.document == s.backend.latest(
                f"commands/{refused.value.command_id}"
            )
            # A bike the station does not know: refused at once, version 1.
            with pytest.raises(CommandRefusedError) as unknown:
                await client.book("B0000000", user_id="u-3")
            assert unknown.value.error_code == "ERRORS.NOT_FOUND"
            assert unknown.value.document["version"] == 1
            # The same id with other content: the error document on ``errors``.
            body = request("book", bike, user_id="u-3")
            booked = await client.send(body)
            assert booked["state"]["value"] == "SUCCESS"
            with pytest.raises(CommandRefusedError) as conflict:
                await client.send(dict(body, user_id="u-4"))
            assert conflict.value.error_code == "ERRORS.CONFLICT"
            assert conflict.value.command_id == body["id"]
            assert "error_message" in conflict.value.document
            # The same request again is a repeat: its stored end, nothing runs twice.
            assert await client.send(body) == booked
            assert client.lock_document(bike) is not None


async def test_no_station_and_no_broker_are_no_answer(tmp_path: Path) -> None:
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        StationClient(broker.url, STATION, wait_s=1.0, resend_s=0.2) as client,
    ):
        with pytest.raises(NoAnswerError, match="did not answer"):
            await client.book("B1", user_id="u-1")
        with pytest.raises(NoAnswerError, match="no status"):
            await client.wait_status()
        events = client.events()
        await broker.stop()
        with pytest.raises(BrokerLostError):
            await anext(events)
    with pytest.raises(NoAnswerError, match="cannot reach the broker"):
        async with StationClient(broker.url, STATION):
            pass


def event(seq: int, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "station": STATION,
        "seq": seq,
        "type": "battery",
        "battery": 50,
    }


async def test_the_event_stream_reports_gaps_and_drops_duplicates(tmp_path: Path) -> None:
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        StationClient(broker.url, STATION) as client,
    ):
        stream = client.events()
        repeated = event(2)
        published = [event(1), repeated, repeated, event(5), event(3), event(6)]
        async with aiomqtt.Client("127.0.0.1", broker.port) as station:
            for document in published:
                await station.publish(f"{ROOT}/{STATION}/events", json.dumps(document), qos=1)
        seen: list[Event] = []
        async with asyncio.timeout(30):
            async for item in stream:
                seen.append(item)
                if item.seq == 6:
                    break
        stream.close()
    assert [item.seq for item in seen] == [1, 2, 5, 3, 6]
    assert [list(item.missed) for item in seen] == [[], [], [3, 4], [], []]
