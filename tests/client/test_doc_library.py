"""The client library's example of docs/mqtt-contract.md, run as written (its broker address and
bike swapped for the test's) against a station through a real mosquitto."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.brokers import Mosquitto
from tests.mqtt.station import running_station

pytestmark = pytest.mark.integration

DOC = Path(__file__).parents[2] / "docs" / "mqtt-contract.md"


def example(url: str, bike: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## A backend client library") :]
    source = section[section.index("```python\n") + 10 :]
    source = source[: source.index("```")]
    for old, new in (('"mqtts://broker.example:8883"', f'"{url}"'), ('"FR1540"', f'"{bike}"')):
        assert old in source, old
        source = source.replace(old, new)
    return source


async def test_the_documented_library_example_books_and_sees_the_event(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with running_station(tmp_path, mosquitto.url) as station:
        await station.link.wait_connected(30)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            example(mosquitto.url, station.bike(0)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with asyncio.timeout(90):
            output, _ = await process.communicate()
        text = output.decode()
        assert process.returncode == 0, text
        assert "station FR101" in text
        assert '"value": "SUCCESS"' in text
        assert "booking booked" in text
