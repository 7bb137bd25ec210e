"""A flood of requests, published faster than the station answers them: the link stops reading its
socket while a few wait, so the rest wait at the broker and not in the station's memory; every
request is still answered exactly once, and the connection stays up through the pauses. Plain and
over TLS (where decrypted bytes can wait inside the TLS layer, unseen by the event loop)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.brokers import Mosquitto, running_mosquitto
from tests.mqtt.backend import Backend, backend
from tests.mqtt.station import Gateway, running_station

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(600)]

COUNT = 5_000
LIMIT = 8
WINDOW = 16
# Short: pings must still be answered while the socket is not read.
GATED = {"max_waiting_requests": LIMIT, "window": WINDOW, "keepalive_s": 5}


async def flood(seen: Backend, station: Gateway) -> None:
    await station.link.wait_connected(30)
    since = station.link.state.since
    ids = [f"flood-{n}" for n in range(COUNT)]
    for command_id in ids:  # each refused: a bike of another station
        request = {"id": command_id, "command": "unlock", "bike": "NOT-HERE"}
        seen.send(json.dumps(request).encode())

    def answers() -> Counter[str]:
        return Counter(
            m.topic.removeprefix("commands/")
            for m in seen.received
            if m.topic.startswith("commands/flood-")
        )

    await seen.wait_for(lambda: len(answers()) == COUNT, 500)
    await seen.wait_for(lambda: station.link.state.requests_waiting == 0, 10)
    answered = answers()
    assert set(answered) == set(ids)
    assert set(answered.values()) == {1}, "a request answered more than once"
    documents = [m.json() for m in seen.received if m.topic.startswith("commands/flood-")]
    assert {d["state"]["value"] for d in documents} == {"ERROR"}
    # The flood outran the intake (the gate was needed), and what waited stayed bounded: a read
    # takes at most one packet per message in flight beyond the limit.
    peak = station.link.requests_waiting_peak
    assert LIMIT <= peak <= LIMIT + WINDOW + 1
    state = station.link.state
    assert state.connected
    assert state.since == since, "the link went down"
    assert state.last_error is None


async def test_a_flood_waits_at_the_broker_and_each_request_is_answered_once(
    tmp_path: Path,
) -> None:
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        backend(broker) as seen,
        running_station(tmp_path, broker.url, **GATED) as station,
    ):
        await flood(seen, station)


async def test_a_flood_over_tls(tmp_path: Path, mosquitto_tls: Mosquitto) -> None:
    broker = mosquitto_tls
    assert broker.tls is not None
    authority = broker.tls.authority
    station_cert = authority.issue("FR101")
    backend_cert = authority.issue("backend")
    async with (
        backend(broker, cert=(str(backend_cert.cert_file), str(backend_cert.key_file))) as seen,
        running_station(
            tmp_path,
            broker.url.replace("127.0.0.1", "localhost"),  # the name the certificate gives
            ca_file=authority.ca_file,
            cert_file=station_cert.cert_file,
            key_file=station_cert.key_file,
            **GATED,
        ) as station,
    ):
        await flood(seen, station)
