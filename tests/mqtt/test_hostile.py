"""10,000 malformed or hostile requests through a real broker: the link stays up, every request is
answered (on ``commands/{id}`` when it had a usable id, else on ``errors``), and no lock moves."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import running_mosquitto
from tests.mqtt.backend import backend
from tests.mqtt.station import running_station
from tests.mqtt.test_contract import soon

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

COUNT = 10_000


def hostile(rng: random.Random, bikes: list[str], count: int) -> list[tuple[bytes, str | None]]:
    """``count`` requests, each with the id it should be answered under (None: no usable id)."""
    made: list[tuple[bytes, str | None]] = []
    used: list[tuple[str, bytes]] = []

    def with_id(body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        made.append((payload, body["id"]))
        used.append((body["id"], payload))

    for n in range(count):
        kind = n % 10
        new_id = f"h{n}-{rng.getrandbits(32):08x}"
        bike = rng.choice(bikes)
        if kind == 0:  # not JSON, not even UTF-8
            made.append((rng.randbytes(rng.randint(1, 300)), None))
        elif kind == 1:  # JSON, not an object
            made.append((json.dumps(rng.choice([[1, 2], 3, "id", None, True, []])).encode(), None))
        elif kind == 2:  # over the limit (a usable id inside is not read)
            size = rng.choice([16_385, 40_000, 1_000_000])
            made.append((json.dumps({"id": new_id, "pad": "x" * size}).encode(), None))
        elif kind == 3:  # nested deeper than any parser should follow
            depth = rng.randint(2_000, 5_000)
            made.append(
                (
                    b'{"id": "'
                    + new_id.encode()
                    + b'", "a": '
                    + b"[" * depth
                    + b"]" * depth
                    + b"}",
                    None,
                )
            )
        elif kind == 4:  # ids that break their rule
            bad = rng.choice(["", "x" * 65, "with space", "ü", "a/b", "#", 17, None, ["a"]])
            made.append((json.dumps({"id": bad, "command": "unlock", "bike": bike}).encode(), None))
        elif kind == 5:  # an unknown command, or a bike of another station
            if rng.random() < 0.5:
                with_id(
                    {"id": new_id, "command": rng.choice(["fly", "UNLOCK", "", 3]), "bike": bike}
                )
            else:
                with_id({"id": new_id, "command": "unlock", "bike": "NOT-HERE"})
        elif kind == 6:  # fields of the wrong type
            field, value = rng.choice(
                [
                    ("bike", 5),
                    ("timeout_at", 7),
                    ("timeout_at", "tomorrow"),
                    ("user_id", []),
                    ("end_rental", "yes"),
                    ("credentials", "K"),
                    ("power_cycle", 1),
                    ("spare", 1),
                ]
            )
            with_id({"id": new_id, "command": "lock", "bike": bike, field: value})
        elif kind == 7:  # keys of the wrong length or form
            credentials = rng.choice(
                [
                    {"K_seed": "[1, 2, 3]", "K_u": "[1]"},
                    {"K_seed": list(range(15)), "K_u": list(range(24))},
                    {"K_seed": list(range(16)), "K_u": list(range(23))},
                    {"auth_id": 300, "phone_id": "00", "ltk": "ab"},
                    {"auth_id": 1, "phone_id": "zz" * 8, "ltk": "00" * 31},
                ]
            )
            with_id(
                {
                    "id": new_id,
                    "command": "unlock",
                    "bike": bike,
                    "credentials": credentials,
                    "timeout_at": soon(600),
                }
            )
        elif kind == 8 and used:  # a known id with another body
            known, _ = rng.choice(used)
            made.append(
                (
                    json.dumps(
                        {"id": known, "command": "sync-device", "bike": bike, "nonce": n}
                    ).encode(),
                    known,
                )
            )
        else:  # a well-formed motion without any key: refused before the radio
            with_id(
                {
                    "id": new_id,
                    "command": rng.choice(["unlock", "lock", "force-unlock"]),
                    "bike": bike,
                    "timeout_at": soon(600),
                }
            )
    return made


async def test_hostile_requests(tmp_path: Path) -> None:
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        backend(broker) as seen,
        running_station(tmp_path, broker.url) as station,
    ):
        await station.link.wait_connected(30)
        since = station.link.state.since
        bikes = [station.bike(0), station.bike(1)]
        requests = hostile(random.Random(20261123), bikes, COUNT)
        for payload, _ in requests:
            seen.send(payload)

        usable = {answer for _, answer in requests if answer is not None}
        unusable = sum(1 for _, answer in requests if answer is None)

        def answered() -> bool:
            ids = {
                m.topic.removeprefix("commands/")
                for m in seen.received
                if m.topic.startswith("commands/")
            }
            errors = seen.errors()
            ids |= {e["correlation_id"] for e in errors}
            others = sum(1 for e in errors if e["correlation_id"] not in usable)
            return usable <= ids and others >= unusable

        await seen.wait_for(answered, 600)
        conflicts = [e for e in seen.errors() if e["status_code"] == 409]
        assert len(conflicts) == sum(1 for p, a in requests if a and b"nonce" in p)
        for bike_index in range(2):
            view = await station.sim.control.lock(station.sim.world.locks[bike_index].name)
            assert (view.motor_opened, view.motor_closed) == (0, 0)
            assert (view.commanded_open, view.commanded_close) == (0, 0)
        state = station.link.state
        assert state.connected
        assert state.since == since, "the link went down"
        assert state.last_error is None
