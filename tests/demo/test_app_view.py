"""The demo's view, driven by textual's pilot, over a real broker and simulator: it draws what the
station publishes, and its keys act on the backend, the simulated locks and the broker. (The view
with the daemon behind it: tests/demo/test_demo_live.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
from textual.pilot import Pilot

from lockgate.demo.app import DemoApp
from lockgate.demo.backend import BACKEND_CLIENT_ID, Backend
from lockgate.demo.broker import DemoBroker
from lockgate.demo.session import Demo, DemoOptions
from lockgate.demo.station import StationProcess
from lockgate.demo.world import STATION, bike, demo_world
from lockgate.model import LockState
from lockgate_sim.testing import run_simulator
from tests.demo.documents import ROOT, lock, status


@contextlib.asynccontextmanager
async def demo_without_station(directory: Path) -> AsyncIterator[Demo]:
    async with (
        DemoBroker(first=BACKEND_CLIENT_ID) as broker,
        run_simulator(demo_world(0.1)) as sim,
        Backend("127.0.0.1", broker.port, STATION, on_subscribed=broker.open_to_all) as backend,
    ):
        yield Demo(
            directory=directory,
            broker=broker,
            sim=sim,
            backend=backend,
            station=StationProcess(directory / "station.toml", directory / "station.log"),
            options=DemoOptions(time_scale=0.1),
        )


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - a screen signals nothing: poll it
            await asyncio.sleep(0.05)


async def publish_and_unlock(app: DemoApp, pilot: Pilot[None], demo: Demo) -> None:
    async with aiomqtt.Client(
        "127.0.0.1",
        demo.broker.port,
        identifier="test-station",
        protocol=aiomqtt.ProtocolVersion.V311,
    ) as station:
        await station.subscribe(f"{ROOT}/commands", qos=1)
        await station.publish(f"{ROOT}/status", status(outbox_depth=3).to_bytes(), qos=1)
        await station.publish(
            f"{ROOT}/locks/FR1541", lock("FR1541", LockState.UNLOCKED, 92).to_bytes(), qos=1
        )
        await until(lambda: "outbox 3" in app.screen_text())
        screen = app.screen_text()
        assert "FR1541" in screen
        assert "unlocked" in screen
        assert "92 %" in screen

        # ↓ chooses FR1541; u sends its unlock, with its keys, as the backend.
        await pilot.press("down", "u")
        async with asyncio.timeout(10):
            async for message in station.messages:
                assert isinstance(message.payload, bytes)
                request = json.loads(message.payload)
                break
        assert (request["command"], request["bike"]) == ("unlock", "FR1541")
        assert request["credentials"] == bike("FR1541").credentials()


async def test_it_draws_the_station_and_its_keys_act(tmp_path: Path) -> None:
    async with demo_without_station(tmp_path) as demo:
        app = DemoApp(demo, tour=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await publish_and_unlock(app, pilot, demo)
            # h: a rider pushes FR1541's bolt shut in the simulated world.
            await pilot.press("h")
            async with asyncio.timeout(10):
                while await demo.bolt("FR1541") != "locked":  # noqa: ASYNC110 - across the bus
                    await asyncio.sleep(0.05)

            # b: the broker goes away, and the view says so.
            await pilot.press("b")
            await until(lambda: "broker DOWN" in app.screen_text())
            await until(lambda: "backend offline" in app.screen_text())
            await pilot.press("b")
            await until(lambda: "backend connected" in app.screen_text())
