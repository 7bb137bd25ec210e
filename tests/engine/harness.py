"""One station for the engine's tests: the real engine on a real SQLite file, the radio modelled.

Shared by the engine's tests (through conftest's fixtures) and by the crash test's worker process.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from joserfc import jws
from joserfc.jwk import OKPKey

from lockgate.contract.envelope import BackendKeys, CommandGate, public_jwk
from lockgate.contract.signing import seal_credentials
from lockgate.contract.station import RegisteredLock, Station
from lockgate.contract.times import format_time, parse_time
from lockgate.engine import Engine, Submission, utc_now
from lockgate.model import Cause, Profile
from lockgate.protocol.credentials import (
    NobondCredentials,
    ShareeCredentials,
    signed_byte_string,
)
from lockgate.radio import StateObserved
from lockgate.store import CommandRecord, StationKey, Store
from tests.engine.radio_model import ModelLock, ModelRadio

K_SEED = bytes.fromhex("7ae255ebd1473619c4cb4e31b654483f")
K_U = bytes.fromhex("e606f9b052b98b3918a520d45090a0becd96649d00000000")
PHONE_ID = bytes.fromhex("0011223344556677")
LTK = bytes.fromhex("a1" * 16 + "5c" * 16)
SHAREE = ShareeCredentials(K_SEED, K_U)
NOBOND = NobondCredentials(3, PHONE_ID, LTK)
SHAREE_JSON = {"K_seed": signed_byte_string(K_SEED), "K_u": signed_byte_string(K_U)}
NOBOND_JSON = {"auth_id": 3, "phone_id": PHONE_ID.hex(), "ltk": LTK.hex()}
STATION_KEY = StationKey.from_bytes(bytes(range(32)))
# Signed and sealed requests: the backend's signing key, and the station's sealing key.
BACKEND_KEY = OKPKey.generate_key("Ed25519", private=True)
SEALING_KEY = OKPKey.generate_key("X25519", private=True)
GATE = CommandGate(
    BackendKeys.of([OKPKey.import_key(BACKEND_KEY.as_dict(private=False))]), SEALING_KEY
)

STATION = Station(
    id="FR101",
    latitude="47.976634",
    longitude="7.825490",
    boot_id="boot-1",
    locks=(
        RegisteredLock(
            "FR1540", "ISHAREIT-2200540", "00000000-0000-0000-0000-fc3c002a2add", Profile.SHAREE
        ),
        RegisteredLock(
            "FR1541", "ISHAREIT-2200541", "00000000-0000-0000-0000-fc3c002a2ade", Profile.SHAREE
        ),
        RegisteredLock(
            "FR1542", "ILOCKIT-4500329", "00000000-0000-0000-0000-d41299004503", Profile.NOBOND
        ),
    ),
)


def model_locks() -> list[ModelLock]:
    return [
        ModelLock("FR1540", SHAREE),
        ModelLock("FR1541", SHAREE),
        ModelLock("FR1542", NOBOND),
    ]


class Harness:
    """One station: a real store file, the real engine, the modelled radio."""

    def __init__(
        self,
        path: Path,
        radio: ModelRadio,
        *,
        clock: Callable[[], datetime] = utc_now,
        clock_synced: Callable[[], bool] | None = None,
        max_outbox: int = 100_000,
        boot_id: str = "boot-1",
        gate: CommandGate = GATE,
        max_size_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.radio = radio
        self.clock = clock
        self.station = Station(
            STATION.id, STATION.latitude, STATION.longitude, STATION.locks, boot_id
        )
        self.store = Store(
            path,
            station=self.station,
            key=STATION_KEY,
            max_outbox=max_outbox,
            max_size_bytes=max_size_bytes,
            clock_synced=clock_synced,
        )
        self.gate = gate
        self.engine = Engine(
            store=self.store,
            radio=radio,
            station=self.station,
            clock=clock,
            gate=gate,
            clock_synced=clock_synced,
        )

    async def start(self, *, recover: bool = True) -> Harness:
        await self.store.open()
        await self.engine.__aenter__()
        if recover:
            await self.engine.recover()
            # What the service does at start: every lock read once (the driver reports it).
            for lock in self.radio.locks.values():
                await self.engine.observe(
                    StateObserved(lock.bike, lock.state, Cause.STARTUP, self.clock())
                )
        return self

    async def close(self) -> None:
        await self.engine.__aexit__(None, None, None)
        await self.store.close()

    async def send(self, **fields: Any) -> Submission:
        fields.setdefault("id", uuid.uuid4().hex)
        for name, value in list(fields.items()):
            if isinstance(value, datetime):
                fields[name] = format_time(value)
        return await self.engine.submit(json.dumps(fields).encode())

    def token(
        self,
        fields: dict[str, Any],
        *,
        key: OKPKey = BACKEND_KEY,
        kid: str | None = None,
        **claims: Any,
    ) -> bytes:
        """The request signed as a backend signs it, written here with joserfc's own calls:
        ``aud``, ``jti`` and ``exp`` from the request unless ``claims`` says otherwise."""
        body = {
            name: format_time(v) if isinstance(v, datetime) else v for name, v in fields.items()
        }
        body.setdefault("id", uuid.uuid4().hex)
        body.setdefault("timeout_at", format_time(self.later(60)))
        exp = math.ceil(parse_time(body["timeout_at"]).timestamp())
        body |= {"aud": self.station.id, "jti": body["id"], "exp": exp} | claims
        header = {"alg": "Ed25519", "kid": kid or key.thumbprint()}
        return jws.serialize_compact(header, json.dumps(body), key, algorithms=["Ed25519"]).encode()

    def sealed(self, credentials: dict[str, Any], key: OKPKey = SEALING_KEY) -> str:
        """Credentials sealed to ``key`` (the station's own unless told), as a backend would."""
        return seal_credentials(credentials, public_jwk(key))

    async def run(self, **fields: Any) -> CommandRecord:
        """Sends one command and waits until everything queued has ended; its record."""
        submission = await self.send(**fields)
        await self.engine.wait_idle(5)
        assert submission.command_id is not None
        record = await self.store.command(submission.command_id)
        assert record is not None
        return record

    async def messages(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (row.topic, json.loads(row.payload))
            for row in await self.store.queued(after=0, limit=1_000_000)
        ]

    async def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        return [
            doc
            for topic, doc in await self.messages()
            if topic == "events" and (type_ is None or doc["type"] == type_)
        ]

    async def documents(self, command_id: str) -> list[dict[str, Any]]:
        return [doc for topic, doc in await self.messages() if topic == f"commands/{command_id}"]

    async def lock_document(self, bike: str) -> dict[str, Any]:
        for row in await self.store.unacknowledged_retained():
            if row.topic == f"locks/{bike}":
                loaded: dict[str, Any] = json.loads(row.payload)
                return loaded
        raise AssertionError(f"no lock document for {bike}")

    async def radio_moved(self, bike: str, count: int = 1) -> None:
        """Until the modelled lock's motor has started ``count`` times."""
        async with asyncio.timeout(5):
            while sum(1 for m in self.radio.motions if m.bike == bike) < count:  # noqa: ASYNC110 - polls a record
                await asyncio.sleep(0.005)

    def later(self, seconds: float) -> datetime:
        return self.clock() + timedelta(seconds=seconds)
