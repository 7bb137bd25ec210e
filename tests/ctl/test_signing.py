"""``lockgate ctl --sign-key``: what it publishes is exactly what the station's own check opens.

test_signed_station.py runs a signed unlock through ``lockgate run``; these tests look inside: they
hold ctl's payload against :func:`lockgate.contract.envelope.open_request`, the station's check
itself, compare what it opens with the credentials given, and answer on ``commands/{id}`` as a
station does. ctl runs as a subprocess against a real mosquitto; the station's key comes from a
retained ``status`` document, as a station publishes it, or from ``--station-key``.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from lockgate.contract.envelope import Opened, open_request, public_jwk
from lockgate.store.command_keys import (
    create_backend_keypair,
    create_station_jwk,
    load_backend_keys,
)
from tests.brokers import Mosquitto, running_mosquitto
from tests.ctl.harness import ctl
from tests.e2e.backend import Backend, backend
from tests.e2e.station import ROOT, STATION, keys_of, sharee

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def publish(
    broker: Mosquitto, topic: str, document: dict[str, Any], *, retain: bool = False
) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.publish(
            f"{ROOT}/{STATION}/{topic}", json.dumps(document), qos=1, retain=retain
        )


def status(sealing_key: dict[str, str] | None) -> dict[str, Any]:
    return {
        "station": STATION,
        "state": "online",
        "boot_id": "0" * 32,
        "version": "test",
        "since": "2026-11-23T19:00:00.000Z",
        "locks": ["B2200501"],
        "outbox_depth": 0,
        "ble": {"adapter": "hci0", "slots": 5, "in_use": 0},
        "sealing_key": sealing_key,
    }


def document(request: dict[str, Any], version: int, state: str) -> dict[str, Any]:
    return {
        "id": request["id"],
        "name": request["command"],
        "station": STATION,
        "bike": request["bike"],
        "version": version,
        "state": {"value": state, "reason": None, "timeout_at": request["timeout_at"]},
        "error_code": None,
        "events": [],
    }


async def answer_as_station(
    peer: Backend, broker: Mosquitto, *, backend_public: Path, station_key: Any
) -> tuple[bytes, dict[str, Any]]:
    """The first request on ``commands``, opened by the station's check; SUCCESS is answered."""
    message = (await peer.wait_for(lambda: peer.messages("commands")))[0]
    opened = open_request(
        message.payload,
        station=STATION,
        backend_keys=load_backend_keys([backend_public]),
        station_key=station_key,
        require_signed=True,
        now=datetime.now(UTC),
    )
    assert isinstance(opened, Opened), opened
    assert opened.signed
    assert opened.sealed
    request = opened.request
    assert isinstance(request, dict)
    for version, state in enumerate(("NOT_SENT", "SENT", "RECEIVED", "SUCCESS"), start=1):
        await publish(broker, f"commands/{request['id']}", document(request, version, state))
    return message.payload, request


async def test_signed_and_sealed_with_the_key_of_the_retained_status(tmp_path: Path) -> None:
    lock = sharee(1)
    keys = keys_of(lock)
    credentials = tmp_path / "keys.json"
    credentials.write_text(json.dumps(keys))
    credentials.chmod(0o600)
    signing = tmp_path / "backend.jwk"
    public = tmp_path / "backend.pub.jwk"
    create_backend_keypair(signing, public)
    station_key = create_station_jwk(tmp_path / "station.jwk")
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        backend(broker.port, station=STATION) as peer,
    ):
        await publish(broker, "status", status(public_jwk(station_key)), retain=True)
        run = asyncio.create_task(
            ctl(
                broker,
                "unlock",
                "B2200501",
                "--user-id",
                "u-6103",
                "--timeout-s",
                "120",
                "--credentials-file",
                str(credentials),
                "--sign-key",
                str(signing),
            )
        )
        payload, request = await answer_as_station(
            peer, broker, backend_public=public, station_key=station_key
        )
        done = await run
    assert done.code == 0, done.stderr
    assert json.loads(done.stdout)["state"]["value"] == "SUCCESS"
    assert request["credentials"] == keys
    assert request["user_id"] == "u-6103"
    assert payload.count(b".") == 2  # a compact JWS, nothing around it
    for key in (str(keys["K_seed"]), str(keys["K_u"])):
        assert key.encode() not in payload
        assert key not in done.stdout + done.stderr


async def test_signed_with_the_station_key_from_a_file(tmp_path: Path) -> None:
    lock = sharee(2)
    keys = keys_of(lock)
    signing = tmp_path / "backend.pem"
    public = tmp_path / "backend.pub.pem"
    create_backend_keypair(signing, public)
    station_key = create_station_jwk(tmp_path / "station.jwk")
    station_public = tmp_path / "station.pub.jwk"
    station_public.write_text(json.dumps(public_jwk(station_key)))
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        backend(broker.port, station=STATION) as peer,
    ):
        run = asyncio.create_task(
            ctl(
                broker,
                "unlock",
                "B2200502",
                "--k-seed",
                str(keys["K_seed"]),
                "--k-u",
                str(keys["K_u"]),
                "--sign-key",
                str(signing),
                "--station-key",
                str(station_public),
            )
        )
        _, request = await answer_as_station(
            peer, broker, backend_public=public, station_key=station_key
        )
        done = await run
    assert done.code == 0, done.stderr
    assert request["credentials"] == keys


async def test_no_key_to_seal_to_is_bad_usage(tmp_path: Path) -> None:
    signing = tmp_path / "backend.jwk"
    create_backend_keypair(signing, tmp_path / "backend.pub.jwk")
    credentials = tmp_path / "keys.json"
    credentials.write_text(json.dumps(keys_of(sharee(1))))
    credentials.chmod(0o600)
    arguments = ("unlock", "B2200501", "--credentials-file", str(credentials))
    async with running_mosquitto(tmp_path / "broker") as broker:
        # A station without a key publishes sealing_key null: nothing to seal to, nothing sent.
        await publish(broker, "status", status(None), retain=True)
        keyless = await ctl(broker, *arguments, "--sign-key", str(signing))
        assert keyless.code == 2
        assert "sealing_key" in keyless.stderr
        # A private key file readable by others is refused before anything is sent.
        signing.chmod(0o644)
        open_key = await ctl(broker, *arguments, "--sign-key", str(signing))
        assert open_key.code == 2
        assert "chmod 600" in open_key.stderr
