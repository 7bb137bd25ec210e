"""The MQTT link draining a deep outbox through a real mosquitto after a long outage.

The store's outbox is filled with ``--depth`` events (as a broker away for a day would leave it),
then the link connects to a mosquitto on a loopback port and publishes them, oldest first, each at
QoS 1 and removed from the outbox on its PUBACK. Measured: the time from CONNACK to the last
message acknowledged (outbox empty) and the rate, for each ``--window`` (QoS 1 publishes in
flight). With ``--subscriber`` a paho client subscribed to the station's topics takes every
message too (the broker then also delivers each one).

    .venv/bin/python bench/mqtt_drain.py [--depth 100000] [--window 1 16 64 256] [--subscriber]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from lockgate.contract.documents import LockStateEvent
from lockgate.contract.station import RegisteredLock, Station
from lockgate.model import LockState, Profile
from lockgate.mqtt import Link, LinkSettings
from lockgate.store import Change, Correlation, Outbox, StationKey, Store

HOST = "127.0.0.1"
LOCKS = 50
STATION = Station(
    "FR101",
    "47.976634",
    "7.825490",
    tuple(
        RegisteredLock(
            f"FR{1500 + n}",
            f"ISHAREIT-22005{n:02d}",
            f"00000000-0000-0000-0000-fc3c002a2b{n:02x}",
            Profile.SHAREE,
        )
        for n in range(LOCKS)
    ),
    "bench",
)


def _event(bike: str, state: LockState, previous: LockState) -> LockStateEvent:
    return LockStateEvent(
        event_id=str(uuid.uuid4()),
        station=STATION.id,
        boot_id=STATION.boot_id,
        seq=0,
        bike=bike,
        at=datetime.now(UTC),
        latitude=STATION.latitude,
        longitude=STATION.longitude,
        lock_state=state,
        previous=previous,
    )


async def _fill(store: Store, depth: int) -> None:
    """``depth`` lock_state events over the 50 locks, 1000 per transaction (filling is not what
    is measured)."""
    states = [LockState.UNLOCKING, LockState.UNLOCKED, LockState.LOCKING, LockState.LOCKED]
    written = 0
    while written < depth:
        count = min(1000, depth - written)
        events = tuple(
            _event(
                STATION.locks[(written + i) % LOCKS].bike,
                states[(written + i) % 4],
                states[(written + i - 1) % 4],
            )
            for i in range(count)
        )
        await store.apply(Change(events=events), at=datetime.now(UTC))
        written += count


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def _mosquitto(folder: Path) -> AsyncIterator[int]:
    port = _free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} {HOST}\nallow_anonymous true\npersistence false\n"
        "max_queued_messages 0\nmax_inflight_messages 0\n"
    )
    process = subprocess.Popen(  # noqa: ASYNC220 - started once, stopped below
        ["/usr/sbin/mosquitto", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(HOST, port)
                writer.close()
                break
            await asyncio.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def _subscriber(port: int) -> tuple[paho.Client, list[int]]:
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    received = [0]
    ready = threading.Event()

    def on_message(*_: object) -> None:
        received[0] += 1

    client.on_message = on_message
    client.on_subscribe = lambda *_: ready.set()
    client.connect(HOST, port)
    client.loop_start()
    client.subscribe(f"lockgate/v1/{STATION.id}/#", qos=1)
    ready.wait(10)
    return client, received


async def _ignore(_payload: bytes, _correlation: Correlation) -> None:
    return None


def _status(state: Literal["online", "offline"]) -> bytes:
    return f'{{"station":"{STATION.id}","state":"{state}"}}'.encode()


async def run_one(depth: int, window: int, *, subscriber: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        key = StationKey.from_bytes(bytes(range(32)))
        async with (
            Store(folder / "bench.db", station=STATION, key=key, max_outbox=depth + 1000) as store,
            _mosquitto(folder) as port,
        ):
            await _fill(store, depth)
            outbox = Outbox(store)
            listener = _subscriber(port) if subscriber else None
            settings = LinkSettings(url=f"mqtt://{HOST}:{port}", station=STATION.id, window=window)
            async with Link(settings, outbox=outbox, intake=_ignore, status=_status) as link:
                started = time.perf_counter()
                await link.wait_connected(30)
                connected = time.perf_counter()
                while await store.outbox_depth() > 0:  # noqa: ASYNC110 - polled, as a user would
                    await asyncio.sleep(0.05)
                drained = time.perf_counter() - connected
                await link.stop()
            line = (
                f"depth {depth}, window {window}{', with a subscriber' if subscriber else ''}: "
                f"connect {(connected - started) * 1000:.0f} ms, CONNACK to last PUBACK "
                f"{drained:.2f} s, {depth / drained:.0f} messages/s"
            )
            if listener is not None:
                client, received = listener
                deadline = time.monotonic() + 60
                while received[0] < depth and time.monotonic() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                client.disconnect()
                client.loop_stop()
                line += f"; the subscriber got {received[0]}"
            print(line, flush=True)


async def run(depth: int, windows: list[int], *, subscriber: bool) -> None:
    for window in windows:
        await run_one(depth, window, subscriber=subscriber)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=100_000)
    parser.add_argument("--window", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--subscriber", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.depth, args.window, subscriber=args.subscriber))


if __name__ == "__main__":
    main()
