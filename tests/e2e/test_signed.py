"""Signed requests and sealed credentials end to end: ``lockgate run`` with ``require_signed``.

The backend (aiomqtt) fetches the station's sealing key from the retained ``status`` document, as a
backend would, and signs and seals with joserfc calls written here, so that a mistake shared by the
station's verifier and lockgate's own signing helpers would show; one command goes through those
helpers too (the documented backend code). Every forgery and mismatch is refused with its own code
while the simulator's motor counters stay still. A second subscriber, on ``#`` and started before
the daemon, records everything the broker carried; no key byte is in it, in any form.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from joserfc import jwe, jws
from joserfc.jwk import OKPKey

from lockgate.contract.signing import seal_credentials, sign_request
from lockgate.store.command_keys import create_backend_keypair, create_station_jwk
from lockgate_sim.testing import RunningSimulator, run_simulator
from lockgate_sim.world import LockConfig, WorldConfig
from tests.brokers import free_port, running_mosquitto
from tests.e2e.backend import Backend, backend, command, deadline
from tests.e2e.station import (
    STATION,
    Daemon,
    NotifySocket,
    bike_of,
    keys_of,
    nobond,
    notify_socket,
    sharee,
    world,
    write_config,
)
from tests.e2e.test_secrets import secrets_of
from tests.keyforms import forms

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


# --- a backend's JOSE, written with joserfc's own calls ---------------------------------------


def claims_of(body: dict[str, Any], *, station: str = STATION) -> dict[str, Any]:
    """The request with the claims that bind it: this station, its id, its timeout_at."""
    timeout_at = datetime.fromisoformat(body["timeout_at"].replace("Z", "+00:00"))
    return body | {"aud": station, "jti": body["id"], "exp": math.ceil(timeout_at.timestamp())}


def sign(claims: dict[str, Any], key: OKPKey, *, kid: str | None = None) -> bytes:
    header = {"alg": "Ed25519", "kid": kid or key.thumbprint()}
    token = jws.serialize_compact(header, json.dumps(claims), key, algorithms=["Ed25519"])
    return token.encode("ascii")


def seal(credentials: dict[str, Any], station_jwk: dict[str, Any]) -> str:
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "kid": station_jwk["kid"]}
    key = OKPKey.import_key(station_jwk)
    return jwe.encrypt_compact(
        header, json.dumps(credentials), key, algorithms=["ECDH-ES", "A256GCM"]
    )


def unb64(segment: bytes) -> bytes:
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def with_claims(token: bytes, **change: Any) -> bytes:
    """The token's payload changed and re-encoded, its header and signature kept (a forgery)."""
    header, payload, signature = token.split(b".")
    claims = json.loads(unb64(payload)) | change
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    return b".".join((header, forged, signature))


# --- the site ---------------------------------------------------------------------------------


@dataclass
class Capture:
    """Everything the broker carried, as a subscriber on ``#`` that is not lockgate code sees it."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)

    def payloads(self) -> bytes:
        return b"\n".join(topic.encode() + b" " + payload for topic, payload in self.messages)


@contextlib.asynccontextmanager
async def capturing(port: int) -> AsyncIterator[Capture]:
    capture = Capture()
    async with aiomqtt.Client("127.0.0.1", port, identifier=f"tap-{uuid.uuid4().hex[:8]}") as tap:
        await tap.subscribe("#", qos=1)

        async def receive() -> None:
            async for message in tap.messages:
                assert isinstance(message.payload, bytes)
                capture.messages.append((str(message.topic), message.payload))

        task = asyncio.create_task(receive(), name="tap-receive")
        try:
            yield capture
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class Site:
    sim: RunningSimulator
    daemon: Daemon
    backend: Backend
    notify: NotifySocket
    capture: Capture
    folder: Path
    signing_key: OKPKey

    @property
    def world(self) -> WorldConfig:
        return self.sim.world

    async def sealing_key(self) -> dict[str, Any]:
        """The station's public key, from its retained status document."""
        status = await self.backend.wait_for(lambda: self.backend.latest("status"))
        key = status["sealing_key"]
        assert isinstance(key, dict)
        return key

    async def answer(self, token: bytes, command_id: str) -> tuple[str, dict[str, Any]]:
        """Publish a token; the first answer to it: on ``commands/{id}`` or on ``errors``."""
        before = len(self.backend.messages())

        def answered() -> tuple[str, dict[str, Any]] | None:
            for message in self.backend.messages()[before:]:
                if message.topic == f"commands/{command_id}":
                    return message.topic, message.json()
                if message.topic == "errors" and message.json()["correlation_id"] == command_id:
                    return message.topic, message.json()
            return None

        await self.backend.publish(token)
        return await self.backend.wait_for(answered)


@contextlib.asynccontextmanager
async def site(folder: Path, sim_world: WorldConfig) -> AsyncIterator[Site]:
    signing_key = create_backend_keypair(folder / "backend.jwk", folder / "backend.pub.jwk")
    async with (
        running_mosquitto(folder / "broker") as broker,
        capturing(broker.port) as capture,
        run_simulator(sim_world, time_scale=0.1, subprocess=True) as sim,
        notify_socket(folder) as notify,
        backend(broker.port, station=STATION) as peer,
    ):
        config = write_config(
            folder,
            broker_port=broker.port,
            bus_address=sim.bus_address,
            sim=sim.world,
            commands="\n".join(
                [
                    "require_signed = true",
                    f'backend_keys = ["{folder / "backend.pub.jwk"}"]',
                ]
            ),
        )
        daemon = Daemon(config, folder / "daemon.log", environ={"NOTIFY_SOCKET": str(notify.path)})
        try:
            yield Site(sim, daemon, peer, notify, capture, folder, signing_key)
        finally:
            await daemon.close()


async def motors(s: Site) -> dict[str, tuple[int, int, int, int]]:
    counters = {}
    for lock in s.world.locks:
        view = await s.sim.control.lock(lock.name)
        counters[lock.name] = (
            view.motor_opened,
            view.motor_closed,
            view.commanded_open,
            view.commanded_close,
        )
    return counters


def private_bytes(jwk_file: Path) -> bytes:
    return unb64(json.loads(jwk_file.read_text())["d"].encode())


# --- the tests --------------------------------------------------------------------------------


async def test_a_signed_and_sealed_unlock_runs_and_the_broker_never_carries_a_key(
    tmp_path: Path,
) -> None:
    locks = [sharee(31), nobond(32)]
    async with site(tmp_path, world(*locks)) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        station_jwk = await s.sealing_key()
        assert set(station_jwk) == {"kty", "crv", "x", "kid"}
        assert station_jwk["kid"] == OKPKey.import_key(station_jwk).thumbprint()

        # Signed and sealed with joserfc, written here.
        open_lock = locks[0]
        body = command(bike_of(open_lock), "unlock", user_id="u-31")
        body["credentials"] = seal(keys_of(open_lock), station_jwk)
        token = sign(claims_of(body), s.signing_key)
        topic, receipt = await s.answer(token, body["id"])
        assert (topic, receipt["state"]["value"]) == (f"commands/{body['id']}", "NOT_SENT")
        final = await s.backend.final(body["id"])
        assert final["state"]["value"] == "SUCCESS", final
        assert (await s.sim.control.lock(open_lock.name)).bolt == "unlocked"

        # The same token again (a replay, or a backend re-sending): its stored document, no move.
        before = await motors(s)
        topic, again = await s.answer(token, body["id"])
        assert (topic, again["state"]["value"], again["version"]) == (
            f"commands/{body['id']}",
            "SUCCESS",
            final["version"],
        )

        # Signed and sealed with lockgate's helpers (the documented backend code).
        other = locks[1]
        request = command(bike_of(other), "unlock")
        request["credentials"] = seal_credentials(keys_of(other), station_jwk)
        helper_token = sign_request(
            request, key=s.signing_key, station=STATION, now=datetime.now(UTC)
        )
        await s.backend.publish(helper_token)
        done = await s.backend.final(request["id"])
        assert done["state"]["value"] == "SUCCESS", done
        assert (await motors(s))[open_lock.name] == before[open_lock.name]
        assert await s.daemon.terminate() == 0

    (tmp_path / "capture.txt").write_bytes(s.capture.payloads())
    carried = s.capture.payloads()
    assert token in carried
    assert helper_token in carried
    assert any(topic.endswith("/status") for topic, _ in s.capture.messages)
    secrets: dict[str, bytes] = {
        "station's sealing key": private_bytes(tmp_path / "station.jwk"),
        "backend's signing key": private_bytes(tmp_path / "backend.jwk"),
        "store key": bytes.fromhex((tmp_path / "store.key").read_text().strip()),
    }
    for lock in locks:
        secrets |= {f"{lock.name} {k}": v for k, v in secrets_of(keys_of(lock)).items()}
    output = s.daemon.output().encode()
    assert b'"signed commands only"' in output
    assert b"open: unsigned commands accepted" not in output
    found = [
        name
        for name, secret in secrets.items()
        for form in forms(secret)
        if form in carried or form in output
    ]
    assert found == []


async def test_every_forgery_and_mismatch_is_refused_and_moves_nothing(tmp_path: Path) -> None:
    locks: list[LockConfig] = [sharee(41), nobond(42)]
    async with site(tmp_path, world(*locks)) as s:
        await s.daemon.start()
        await s.notify.wait_for("READY=1")
        station_jwk = await s.sealing_key()
        key = s.signing_key
        kid = key.thumbprint()
        forger = OKPKey.generate_key("Ed25519", private=True)
        stranger_station = OKPKey.generate_key("X25519", private=True)
        before = await motors(s)
        lock = locks[0]

        def unlock(**fields: Any) -> dict[str, Any]:
            body = command(bike_of(lock), "unlock", user_id="u-41") | fields
            body.setdefault("credentials", seal(keys_of(lock), station_jwk))
            return body

        genuine = unlock()
        genuine_token = sign(claims_of(genuine), key)  # made, never sent as it is
        foreign = unlock()
        # Sealed with this station's kid, but to another key: it does not open.
        unopenable = jwe.encrypt_compact(
            {"alg": "ECDH-ES", "enc": "A256GCM", "kid": station_jwk["kid"]},
            json.dumps(keys_of(lock)),
            OKPKey.import_key(stranger_station.as_dict(private=False)),
            algorithms=["ECDH-ES", "A256GCM"],
        )
        expired = unlock(timeout_at="2026-01-01T00:00:00.000Z")
        mismatched = unlock()
        listed_aud = unlock()
        sealed_wrong = unlock(credentials=unopenable)
        forged = unlock()
        unknown = unlock()
        plain = unlock(credentials=keys_of(lock))
        replayed_id = uuid.uuid4().hex
        cases: list[tuple[str, bytes, str, str, str]] = [
            (
                "bad signature",
                sign(claims_of(forged), forger, kid=kid),
                forged["id"],
                "ERRORS.BAD_SIGNATURE",
                f"the signature does not verify with key {kid}",
            ),
            (
                "unknown kid",
                sign(claims_of(unknown), forger),
                unknown["id"],
                "ERRORS.UNKNOWN_KEY",
                f"kid: {forger.thumbprint()} is not a backend key of this station",
            ),
            (
                "wrong aud (a list)",
                sign(claims_of(listed_aud) | {"aud": [STATION]}, key),
                listed_aud["id"],
                "ERRORS.WRONG_AUDIENCE",
                "aud: (not shown) is not this station",
            ),
            (
                "signed for another station",
                sign(claims_of(foreign, station="FR202"), key),
                foreign["id"],
                "ERRORS.WRONG_AUDIENCE",
                "aud: FR202 is not this station",
            ),
            (
                "expired",
                sign(claims_of(expired), key),
                expired["id"],
                "ERRORS.EXPIRED",
                "exp: passed at 2026-01-01T00:00:00.000Z",
            ),
            (
                "jti not the request's id",
                sign(claims_of(mismatched) | {"jti": uuid.uuid4().hex}, key),
                mismatched["id"],
                "ERRORS.ID_MISMATCH",
                "jti: not the request's id",
            ),
            (
                "sealed object that does not open",
                sign(claims_of(sealed_wrong), key),
                sealed_wrong["id"],
                "ERRORS.SEALED_UNREADABLE",
                "credentials: the sealed object does not open with this station's key",
            ),
            (
                "replayed with a new id",
                with_claims(genuine_token, id=replayed_id, jti=replayed_id),
                replayed_id,
                "ERRORS.BAD_SIGNATURE",
                f"the signature does not verify with key {kid}",
            ),
            (
                "tampered body",
                with_claims(genuine_token, bike=bike_of(locks[1])),
                genuine["id"],
                "ERRORS.BAD_SIGNATURE",
                f"the signature does not verify with key {kid}",
            ),
            (
                "unsigned",
                json.dumps(plain).encode(),
                plain["id"],
                "ERRORS.UNSIGNED",
                "this station accepts signed requests only: send the request as a compact JWS",
            ),
        ]
        answers = {}
        for name, token, command_id, code, reason in cases:
            topic, document = await s.answer(token, command_id)
            if topic == "errors":
                answers[name] = (topic, document["error_code"], document["error_message"])
            else:
                assert document["state"]["value"] == "ERROR"
                assert document["version"] == 1
                answers[name] = ("commands", document["error_code"], document["state"]["reason"])
            assert answers[name][1:] == (code, reason), name
        # Refused before the signature holds: on errors, nothing stored under the id; after: the
        # command's own document.
        assert {name: where for name, (where, _, _) in answers.items()} == {
            "bad signature": "errors",
            "unknown kid": "errors",
            "wrong aud (a list)": "commands",
            "signed for another station": "commands",
            "expired": "commands",
            "jti not the request's id": "commands",
            "sealed object that does not open": "commands",
            "replayed with a new id": "errors",
            "tampered body": "errors",
            "unsigned": "errors",
        }
        assert s.daemon.running
        assert await motors(s) == before
        assert [(await s.sim.control.lock(x.name)).bolt for x in locks] == ["locked", "locked"]
        assert s.backend.events(type="booking") == []  # no refusal reached the booking table
        # The forged id is still the backend's to use: the genuine request runs under it.
        await s.backend.publish(sign(claims_of(genuine | {"timeout_at": deadline()}), key))
        final = await s.backend.final(genuine["id"])
        assert final["state"]["value"] == "SUCCESS", final
        assert await s.daemon.terminate() == 0


@pytest.mark.parametrize("problem", ["station key open to others", "private key as backend key"])
async def test_a_key_problem_stops_the_start_with_its_exit_code(
    tmp_path: Path, problem: str
) -> None:
    station_key = create_station_jwk(tmp_path / "station.jwk")
    backend_key = create_backend_keypair(tmp_path / "backend.jwk", tmp_path / "backend.pub.jwk")
    if problem == "station key open to others":
        (tmp_path / "station.jwk").chmod(0o644)
        listed, expected = (
            tmp_path / "backend.pub.jwk",
            "readable by others (mode 0o644): chmod 600",
        )
    else:
        listed, expected = tmp_path / "backend.jwk", "holds a private key"
    config = write_config(
        tmp_path,
        broker_port=free_port(),  # never reached: the keys are read first
        bus_address=f"unix:path={tmp_path / 'no-bus'}",
        sim=world(sharee(51)),
        commands=f'require_signed = true\nbackend_keys = ["{listed}"]',
    )
    daemon = Daemon(config, tmp_path / "daemon.log")
    await daemon.start()
    assert await daemon.wait() == 77
    output = daemon.output()
    refused = [line for line in output.splitlines() if "command keys unusable" in line]
    assert len(refused) == 1, output
    assert expected in refused[0]
    found = [
        form
        for key in (station_key, backend_key)
        for form in forms(unb64(str(key.as_dict(private=True)["d"]).encode()))
        if form in output.encode()
    ]
    assert found == []


async def test_the_key_passed_as_a_systemd_credential_is_the_one_published(tmp_path: Path) -> None:
    """Provisioned with ``lockgate keys station``, passed as the credential ``station.jwk``: the
    station publishes that key's public half, and makes no key file of its own."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    made = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lockgate",
        "keys",
        "station",
        "--out",
        str(credentials / "station.jwk"),
        stdout=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, _ = await made.communicate()
    assert made.returncode == 0
    printed = json.loads(stdout)
    assert "d" not in printed
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        run_simulator(world(sharee(61)), time_scale=0.1, subprocess=True) as sim,
        notify_socket(tmp_path) as notify,
        backend(broker.port, station=STATION) as peer,
    ):
        config = write_config(
            tmp_path, broker_port=broker.port, bus_address=sim.bus_address, sim=sim.world
        )
        daemon = Daemon(
            config,
            tmp_path / "daemon.log",
            environ={"NOTIFY_SOCKET": str(notify.path), "CREDENTIALS_DIRECTORY": str(credentials)},
        )
        try:
            await daemon.start()
            await notify.wait_for("READY=1")
            status = await peer.wait_for(lambda: peer.latest("status"))
            assert status["sealing_key"] == printed
            assert await daemon.terminate() == 0
        finally:
            await daemon.close()
    assert not (tmp_path / "station.jwk").exists()
