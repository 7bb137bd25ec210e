"""The gateway's engine with the real BLE driver, as a process to kill with SIGKILL.

Run as ``python crash_station.py CONFIG``: a zygote (tests/fault/zygote.py) that forks warm
workers, so the test can kill the station at many instants.

A worker is the daemon's core as the service wires it: the store, the BLE driver (bleak, against
the simulator's bus) whose observations feed the engine, and the engine; it recovers, then, as a
backend that re-sends until it sees a receipt, submits every request the stream has released so
far (the test releases a few more before every start) again. Its
"broker" is an append-only file: each outbox message is written and synced there, then
acknowledged, so a kill between the two publishes it twice (at least once), never zero times.
``run final`` waits for every command to end and the outbox to drain, then stops cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[2]))  # the checkout: tests.* importable


from lockgate.ble.discovery import LockIdentity
from lockgate.ble.driver import Driver
from lockgate.ble.settings import RadioSettings, StepTimeouts
from lockgate.contract.station import RegisteredLock, Station
from lockgate.engine import Engine
from lockgate.model import Profile
from lockgate.protocol.identity import address_to_guid
from lockgate.store import Outbox, StationKey, Store
from tests.fault.zygote import serve

STATION_KEY = StationKey.from_bytes(bytes(range(32)))


def station(config: dict[str, Any]) -> Station:
    return Station(
        id="FR101",
        latitude="47.976634",
        longitude="7.825490",
        boot_id=uuid.uuid4().hex,
        locks=tuple(
            RegisteredLock(
                lock["bike"],
                lock["name"],
                address_to_guid(lock["address"]),
                Profile(lock["profile"]),
            )
            for lock in config["locks"]
        ),
    )


class Broker:
    """The outbox's far end: an append-only, synced file of every message published."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("a", encoding="utf-8")

    def publish(self, topic: str, payload: bytes, *, retain: bool, kind: str | None) -> None:
        line = {"topic": topic, "retain": retain, "kind": kind, "payload": payload.decode()}
        # A line of its own even after a torn one: a SIGKILL can cut a write to a file short at a
        # page boundary (Linux stops a write between pages for a fatal signal), and the next
        # run's line must not be glued to what was cut.
        self._file.write("\n" + json.dumps(line) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())


async def publish_forever(outbox: Outbox, broker: Broker) -> None:
    await outbox.connected()
    async for message in outbox.pending():
        broker.publish(
            message.topic,
            message.payload,
            retain=message.retain,
            kind=message.kind.value if message.kind else None,
        )
        await outbox.acknowledge(message)


async def work(config: dict[str, Any], *, released: int, final: bool) -> None:
    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = config["bus"]
    here = station(config)
    identities = [
        LockIdentity(lock["bike"], lock["name"], lock["address"], Profile(lock["profile"]))
        for lock in config["locks"]
    ]
    settings = RadioSettings(
        connection_slots=2,
        connect_timeout_s=5.0,
        find_timeout_s=5.0,
        sync_interval_s=3600.0,
        steps=StepTimeouts(gatt_s=3.0, answer_s=3.0, motion_s=5.0),
    )
    broker = Broker(Path(config["published"]))
    store = Store(Path(config["db"]), station=here, key=STATION_KEY, max_outbox=1_000_000)
    outbox = Outbox(store)  # the service's, for the link; here the file "broker" drains it
    async with (
        store,
        asyncio.TaskGroup() as tasks,
        Driver(identities, settings) as driver,
        Engine(store=store, radio=driver, station=here) as engine,
    ):

        async def mirror() -> None:
            async for observation in driver.observations():
                await engine.observe(observation)

        observer = tasks.create_task(mirror(), name="observations")
        publisher = tasks.create_task(publish_forever(outbox, broker), name="publisher")
        await engine.recover()
        for request in config["requests"][:released]:
            await engine.submit(request.encode())
        await engine.wait_idle(300)
        if not final:
            await asyncio.sleep(3600)  # idle, as a daemon is, until killed
        async with asyncio.timeout(60):
            # The publisher drains it; the store has no event for an empty outbox.
            while await outbox.depth() > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        publisher.cancel()
        observer.cancel()


def start(config: dict[str, Any], final: bool) -> Coroutine[Any, Any, None]:
    released = int(Path(config["released"]).read_text())
    return work(config, released=released, final=final)


def main() -> None:
    serve(json.loads(Path(sys.argv[1]).read_text()), start)


if __name__ == "__main__":
    main()
