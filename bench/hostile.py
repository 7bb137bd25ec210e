"""Hostile input through the broker: many malformed or hostile requests, the daemon stays up.

Everything is real, as in bench/gateway.py: mosquitto, the simulator (three locks), ``lockgate
run`` as a child process. A paho publisher (not lockgate code) sends ``--count`` requests to the
station's ``commands`` topic at QoS 1, cycling through kinds of bad input: bytes that are not
JSON, JSON that is not an object, deep nesting, a payload over the size limit, missing and
mistyped fields, an unknown command, an unknown bike, a ``timeout_at`` in the past or unreadable,
an id that is too long, an id used again with other content, credentials of the wrong shape.
None of them may move a lock. At the end a probe (an unlock of a bike that is not there, with an
id of its own) is published: the daemon takes requests in order, so its answer means every
request before it was handled. Measured: requests per second from the first publish to the
probe's answer, the daemon's CPU per request and its memory before and after. Checked: the daemon
is still running and answers, and no lock's motor moved (the simulator's counters).

    .venv/bin/python bench/hostile.py [--count 5000]      # --count 1000000 for the full run
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gateway

from tests.e2e.backend import command
from tests.e2e.station import STATION, bike_of, keys_of

PROBE = "hostile-probe"


def _deadline(seconds: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _kinds(bike: str, keys: dict[str, object]) -> list[Callable[[int], bytes]]:
    """Makers of one bad request each, given a running number."""

    def body(n: int, **fields: Any) -> bytes:
        base: dict[str, Any] = {
            "id": f"h{n}",
            "command": "unlock",
            "bike": bike,
            "timeout_at": _deadline(60),
        }
        return json.dumps(base | fields).encode()

    return [
        lambda n: b"{not json " + str(n).encode(),
        lambda n: bytes((n * 7 + i) % 256 for i in range(64)),  # binary garbage
        lambda _n: b"[1, 2, 3]",
        lambda _n: b"[" * 5000 + b"]" * 5000,  # deep nesting
        lambda _n: b'{"id": "big", "pad": "' + b"x" * 20_000 + b'"}',  # over the size limit
        lambda _n: json.dumps({"command": "unlock", "bike": bike}).encode(),  # no id
        lambda n: body(n, command=42),
        lambda n: body(n, command="self-destruct"),
        lambda n: body(n, bike="B0000000"),  # not a bike of this station
        lambda n: body(n, timeout_at="never"),
        lambda n: body(n, timeout_at=_deadline(-60)),  # already past
        lambda n: body(n, id="x" * 5000),
        lambda n: body(n, id="../../etc/passwd"),
        lambda n: body(n, credentials={"K_seed": "zz", "K_u": 12}),  # keys of the wrong shape
        lambda n: body(n, credentials="AAAA.BBBB.CCCC.DDDD.EEEE"),  # a JWE that is not one
        lambda n: body(n % 50, command="lock", extra=n),  # an id used again, other content
        lambda n: body(n, command="lock", credentials=keys, timeout_at=_deadline(-1)),
    ]


BROKER_INFLIGHT = 20


def requests(count: int, bike: str, keys: dict[str, object]) -> Iterator[bytes]:
    kinds = _kinds(bike, keys)
    for n in range(count):
        yield kinds[n % len(kinds)](n)


def _publish_all(port: int, payloads: Iterator[bytes], topic: str, done: threading.Event) -> None:
    """Publishes every payload at QoS 1 from a thread of its own (paho's loop in another)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"hostile-{uuid.uuid4().hex[:8]}")
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(10_000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for payload in payloads:
            while True:
                info = client.publish(topic, payload, qos=1)
                if info.rc == paho.MQTT_ERR_SUCCESS:
                    break
                time.sleep(0.005)  # paho's queue is full: let the broker catch up
        info.wait_for_publish(timeout=600)
    finally:
        client.loop_stop()
        client.disconnect()
        done.set()


async def run(count: int) -> dict[str, Any]:
    world_locks = gateway.locks(3)
    target = world_locks[0]
    with tempfile.TemporaryDirectory(prefix="lockgate-hostile-") as scratch:
        # The broker as a station's would be: mosquitto's default max_inflight_messages (20),
        # not the tests' unlimited one (docs/station.md).
        async with gateway.site(
            Path(scratch),
            world_locks,
            backend_topics=(f"commands/{PROBE}", "status"),
            broker_inflight=BROKER_INFLIGHT,
        ) as s:
            await s.start()
            before = {k.name: await s.sim.control.lock(k.name) for k in world_locks}
            rss_before = gateway.rss_mb(s.daemon.pid)
            cpu_before = gateway.cpu_s(s.daemon.pid)
            published = threading.Event()
            topic = f"lockgate/v1/{STATION}/commands"
            started = time.monotonic()
            publisher = threading.Thread(
                target=_publish_all,
                args=(s.broker.port, requests(count, bike_of(target), keys_of(target)), topic),
                kwargs={"done": published},
                daemon=True,
            )
            publisher.start()
            while not published.is_set():  # noqa: ASYNC110 - a thread's event, not the loop's
                await asyncio.sleep(0.5)
            publish_s = time.monotonic() - started
            probe = command("B0000000", "unlock") | {"id": PROBE}
            await s.backend.publish(json.dumps(probe))
            answer = await s.backend.wait_for(
                lambda: s.backend.latest(f"commands/{PROBE}"), timeout_s=3600
            )
            handled_s = time.monotonic() - started
            cpu = gateway.cpu_s(s.daemon.pid) - cpu_before
            after = {k.name: await s.sim.control.lock(k.name) for k in world_locks}
            moved = [
                name
                for name, view in after.items()
                if (view.motor_opened, view.motor_closed, view.commanded_open)
                != (
                    before[name].motor_opened,
                    before[name].motor_closed,
                    before[name].commanded_open,
                )
            ]
            result = {
                "requests": count,
                "publish_s": publish_s,
                "handled_s": handled_s,
                "rate": count / handled_s,
                "cpu_per_request_ms": cpu * 1000 / count,
                "rss_before_mb": rss_before,
                "rss_after_mb": gateway.rss_mb(s.daemon.pid),
                "daemon_running": s.daemon.running,
                # Each a connection lost, and with it the requests the broker held for it.
                "link_drops": s.daemon.log.read_bytes().count(b'"mqtt link down"'),
                "probe_answer": answer.get("error_code"),
                "locks_moved": moved,
                "load": gateway.load_average(),
            }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=5000, help="requests (1000000: full)")
    parser.add_argument("--output", type=Path, default=None)
    arguments = parser.parse_args()
    result = asyncio.run(run(arguments.count))
    result |= {"machine": gateway.machine(), "commit": gateway.commit()}
    result["date"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    gateway.RESULTS.mkdir(exist_ok=True)
    output = arguments.output or gateway.RESULTS / f"hostile-{datetime.now(UTC):%Y%m%dT%H%M}.json"
    output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    ok = result["daemon_running"] and not result["locks_moved"]
    print(
        f"| {result['requests']} hostile requests | {result['rate']:.0f} requests/s, "
        f"{result['cpu_per_request_ms']:.2f} ms CPU each | daemon "
        f"{'up' if result['daemon_running'] else 'DOWN'}, locks moved: "
        f"{', '.join(result['locks_moved']) or 'none'}, link drops: {result['link_drops']}, "
        f"RSS {result['rss_before_mb']:.0f} → {result['rss_after_mb']:.0f} MB | {result['load']} |"
    )
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
