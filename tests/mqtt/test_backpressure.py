"""A flood of requests, published faster than the station answers them: the link stops reading its
socket while a few wait, so the rest wait at the broker and not in the station's memory; every
request is still answered exactly once, and the connection stays up through the pauses."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.brokers import running_mosquitto
from tests.mqtt.backend import backend
from tests.mqtt.station import running_station

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

COUNT = 5_000
LIMIT = 8
WINDOW = 16


async def test_a_flood_waits_at_the_broker_and_each_request_is_answered_once(
    tmp_path: Path,
) -> None:
    async with (
        running_mosquitto(tmp_path / "broker") as broker,
        backend(broker) as seen,
        # A short keepalive: pings must still be answered while the socket is not read.
        running_station(
            tmp_path, broker.url, max_waiting_requests=LIMIT, window=WINDOW, keepalive_s=5
        ) as station,
    ):
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
        # The flood outran the intake (the gate was needed), and what waited stayed bounded: a
        # read takes at most one packet per message in flight beyond the limit.
        peak = station.link.requests_waiting_peak
        assert LIMIT <= peak <= LIMIT + WINDOW + 1
        state = station.link.state
        assert state.connected
        assert state.since == since, "the link went down"
        assert state.last_error is None
