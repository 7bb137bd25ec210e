"""The whole contract as a backend sees it through a real mosquitto: a paho subscriber (not
lockgate code), the link, the engine and the real BLE driver against the simulator.

Set ``LOCKGATE_MQTT_CAPTURE=FILE`` to write every message the backend saw to FILE (JSON lines):
the examples in docs/mqtt-contract.md come from such a run.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lockgate.contract.times import format_time
from tests.brokers import Cable, running_mosquitto
from tests.mqtt.backend import Backend, backend
from tests.mqtt.station import running_station

pytestmark = pytest.mark.integration


def soon(seconds: int = 60) -> str:
    return format_time(datetime.now(UTC) + timedelta(seconds=seconds))


def capture(seen: Backend) -> None:
    target = os.environ.get("LOCKGATE_MQTT_CAPTURE")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            for message in seen.received:
                line = {"topic": message.topic, "retain": message.retain}
                out.write(json.dumps(line | {"payload": message.payload.decode()}) + "\n")


def walk(documents: list[dict[str, object]]) -> list[object]:
    states = [d["state"]["value"] for d in documents]  # type: ignore[index]
    return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]


async def test_the_contract_seen_by_a_backend(tmp_path: Path) -> None:
    async with running_mosquitto(tmp_path / "broker") as broker:
        async with backend(broker) as seen:
            async with running_station(tmp_path, broker.url) as station:
                await station.link.wait_connected(30)
                lock = station.sim.world.locks[0]
                bike, other = station.bike(0), station.bike(1)

                # status online and every lock document, retained
                await seen.wait_for(
                    lambda: (
                        bool(seen.on("status") and seen.on(f"locks/{bike}"))
                        and bool(seen.on(f"locks/{other}"))
                    )
                )
                assert seen.on("status")[-1].json()["state"] == "online"
                async with backend(broker) as late:  # a backend that comes later gets them retained
                    await late.wait_for(lambda: len([m for m in late.received if m.retain]) >= 3)
                    retained = {m.topic: m.json() for m in late.received if m.retain}
                    assert retained["status"]["state"] == "online"
                    assert retained[f"locks/{bike}"]["bike"] == bike

                # an unlock through its lifecycle, MQTT 5 correlation data echoed
                keys = {"K_seed": lock.k_seed, "K_u": lock.k_u}
                unlock = {"id": "unlock-1", "command": "unlock", "bike": bike, "user_id": "u-6103"}
                request = unlock | {"timeout_at": soon(), "credentials": keys}
                seen.send(json.dumps(request).encode(), correlation_data=b"backend-42")
                await seen.wait_for(
                    lambda: any(
                        d["state"]["value"] == "SUCCESS" for d in seen.documents("unlock-1")
                    )
                )
                assert walk(seen.documents("unlock-1")) == [
                    "NOT_SENT",
                    "SENT",
                    "RECEIVED",
                    "SUCCESS",
                ]
                versions = [d["version"] for d in seen.documents("unlock-1")]
                assert versions == list(range(1, len(versions) + 1))
                assert {m.correlation_data for m in seen.on("commands/unlock-1")} == {b"backend-42"}

                # the same request again: its stored document again, nothing runs twice
                seen.send(json.dumps(request).encode())
                await seen.wait_for(lambda: len(seen.documents("unlock-1")) == len(versions) + 1)
                assert seen.documents("unlock-1")[-1] == seen.documents("unlock-1")[-2]
                assert (await station.sim.control.lock(lock.name)).commanded_open == 1

                # a booking, then a conflict on its id, a refusal and requests without a usable id
                booking = {"id": "book-1", "command": "book", "bike": other, "user_id": "u-7"}
                seen.send(json.dumps(booking).encode())
                seen.send(json.dumps(booking | {"user_id": "u-8"}).encode())
                seen.send(json.dumps({"id": "bad-1", "command": "fly", "bike": bike}).encode())
                seen.send(b"not json")
                seen.send(b'{"id": "no spaces allowed"}')
                seen.send(b"x" * 20_000)
                await seen.wait_for(lambda: len(seen.errors()) >= 4)
                await seen.wait_for(
                    lambda: bool(seen.documents("bad-1") and seen.documents("book-1"))
                )
                assert walk(seen.documents("book-1")) == ["NOT_SENT", "SUCCESS"]
                assert seen.documents("bad-1")[-1]["error_code"] == "ERRORS.BAD_REQUEST"
                messages = [e["error_message"] for e in seen.errors()]
                assert messages[1:] == [
                    "payload is not valid JSON",
                    "id: must be 1 to 64 of A-Z a-z 0-9 _ -",
                    "payload is larger than 16384 bytes",
                ]
                assert seen.errors()[0]["status_code"] == 409
                assert seen.errors()[0]["correlation_id"] == "book-1"

                # events: unique, seq rising by one
                await seen.wait_for(lambda: len(seen.events()) >= 3)
                seqs = [e["seq"] for e in seen.events()]
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
                assert {e["type"] for e in seen.events()} >= {"lock_state", "booking"}
                assert not any(e["replayed"] for e in seen.events())
                assert station.link.state.connected
            # a clean stop: status offline, retained
            await seen.wait_for(lambda: seen.on("status")[-1].json()["state"] == "offline")
            assert seen.on("status")[-1].retain is False  # live delivery; retained for later ones
            capture(seen)
        async with backend(broker) as late:
            await late.wait_for(lambda: bool(late.on("status")))
            assert late.on("status")[-1].json()["state"] == "offline"


async def test_the_will_says_offline_when_the_link_is_cut(tmp_path: Path) -> None:
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        Cable(broker.port) as cable,
        backend(broker) as seen,
        running_station(tmp_path, cable.url, keepalive_s=5) as station,
    ):
        await station.link.wait_connected(30)
        await seen.wait_for(lambda: bool(seen.on("status")))
        since = station.link.state.since
        cable.cut()  # no DISCONNECT: the broker publishes the will
        await seen.wait_for(
            lambda: [m.json()["state"] for m in seen.on("status")][-2:] == ["online", "offline"]
        )
        # and the link comes back by itself
        await seen.wait_for(lambda: seen.on("status")[-1].json()["state"] == "online")
        await station.link.wait_connected(30)
        assert station.link.state.since != since
        assert station.link.state.connected


async def test_a_stale_will_after_online_is_corrected(tmp_path: Path) -> None:
    """Back from a power cut before the broker saw the old session die, the station takes the
    session over and the broker publishes the old session's will after the new "online"."""
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        backend(broker) as seen,
        running_station(tmp_path, broker.url) as station,
    ):
        await station.link.wait_connected(30)
        await seen.wait_for(lambda: bool(seen.on("status")))
        online = seen.on("status")[-1].json()
        stale = dict(online, state="offline", boot_id="an-earlier-boot")
        seen.client.publish(seen.prefix + "status", json.dumps(stale), qos=1, retain=True)
        await seen.wait_for(
            lambda: [m.json()["state"] for m in seen.on("status")][-2:] == ["offline", "online"]
        )
        assert seen.on("status")[-1].json()["boot_id"] == online["boot_id"]
        async with backend(broker) as late:  # and the retained one is "online" again
            await late.wait_for(lambda: bool(late.on("status")))
            assert late.on("status")[-1].json()["state"] == "online"


async def test_a_broker_that_lost_its_retained_store_gets_them_again(tmp_path: Path) -> None:
    async with (
        running_mosquitto(tmp_path / "broker") as broker,  # no persistence: all forgotten
        running_station(tmp_path, broker.url) as station,
    ):
        await station.link.wait_connected(30)
        since = station.link.state.since
        await broker.stop()
        await broker.start()
        async with asyncio.timeout(60):  # back up: retained documents published before that
            while station.link.state.since == since or not station.link.state.connected:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        async with backend(broker) as late:
            await late.wait_for(lambda: len([m for m in late.received if m.retain]) >= 3)
            retained = {m.topic: m.json() for m in late.received if m.retain}
            assert retained["status"]["state"] == "online"
            assert {f"locks/{station.bike(0)}", f"locks/{station.bike(1)}"} <= set(retained)
