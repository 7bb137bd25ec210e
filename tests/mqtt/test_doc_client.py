"""The minimal backend client of docs/mqtt-contract.md, run as written (its broker address, TLS
and bike swapped for the test's) against a station through a real mosquitto."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.brokers import Mosquitto
from tests.mqtt.station import running_station

pytestmark = pytest.mark.integration

DOC = Path(__file__).parents[2] / "docs" / "mqtt-contract.md"


def client_source(port: int, bike: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## A minimal backend client") :]
    source = section[section.index("```python\n") + 10 :]
    source = source[: source.index("```")]
    replaced = {
        'BROKER, PORT, ROOT, STATION = "broker.example", 8883, "lockgate/v1", "FR101"': (
            f'BROKER, PORT, ROOT, STATION = "127.0.0.1", {port}, "lockgate/v1", "FR101"'
        ),
        '"bike": "FR1540"': f'"bike": "{bike}"',
    }
    for old, new in replaced.items():
        assert old in source, old
        source = source.replace(old, new)
    # the test broker is plain TCP: drop the TLS call (two lines)
    start = source.index("client.tls_set(")
    end = source.index("\n", source.index("cert_reqs=", start))
    return source[:start] + source[end + 1 :]


async def test_the_documented_client_follows_a_command_to_its_end(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    broker = mosquitto
    async with running_station(tmp_path, broker.url) as station:
        await station.link.wait_connected(30)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            client_source(broker.port, station.bike(0)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(90):
            output, _ = await process.communicate()
        text = output.decode()
        assert process.returncode == 0, text
        assert "version 1: NOT_SENT" in text
        assert '"value": "SUCCESS"' in text
