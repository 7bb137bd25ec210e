"""The rider's wait: from the backend's command to the bolt's event and SUCCESS.

Everything is real, as in bench/gateway.py: a mosquitto on a loopback port, the simulator
(``lockgate-sim`` child process on a private dbus-daemon, time scale 1) with its link layer on
(docs/simulator.md, "The link layer"), ``lockgate run`` as a child process (``watch`` on, as on a
station) and the tests' aiomqtt backend. One station holds one sharee lock per point (connection
interval x advertising interval, each lock's own link layer), all read once at the start (so GATT
discovery is cached before anything is measured). Per point, commands one at a time on that lock,
unlock and lock alternating, each timed from the backend's publish to

- the ``lock_state`` event ``unlocked`` (``locked``) of the command's bike arriving, and
- the command's SUCCESS document arriving.

Beside each, the floor of that command: what the lock spent on it by its own clock (connect, with
its advertising wait, MTU exchange and bluetoothd's share; motor), from ``times(lock)`` deltas,
plus the protocol's round trips that cannot overlap the motor, times the connection interval:

- a fresh link (the lock's link count rose: here every unlock, the locks being closed and so not
  watched): the session of docs/protocol.md: 2 CCCD writes (a new link has indications off; the
  session's step 1 turns them on), request IV + IV, challenge request + 3 challenge chunks, the
  answer (4 writes sharee), authorised, lock control, and the final motion status: 15. The first
  motion status (``unlocking``) travels while the motor runs, so it is no part of the floor.
  The MTU exchange is bluetoothd's and is inside the measured connect; it is not counted again.
- a kept link (an open lock's watched link, taken over by the lock command): the lock keeps the
  link's authorisation until a new IV (docs/protocol.md), so the protocol needs only lock control
  and the final status: 2. The driver takes the link's authorised session up (before, it
  authorised again: 6 writes and 5 indications more); tests/ble/test_round_trips.py pins it.
- ready: the unlock of a booked bike whose lock the station kept ready (``keep_booked_ready``,
  docs/ble-driver.md): linked and authorised with its provisioned credentials before the
  command, so its floor is a kept link's: lock control and the final status (2).

Per point: first ``--commands`` commands on the bike unbooked, unlock and lock alternating
(fresh and kept; the station is run with ``keep_booked_ready`` on, which a bike that is not
booked does not feel), then half as many bookings: book, wait until the lock is kept ready,
unlock (ready), lock ending the rental (kept).

The round trips the simulator counted per command (``radio_counts`` deltas) are reported beside
the floor's. Anchor: the Home Assistant integration's 4.4 s. Goals at 30 ms / 100 ms (reported,
not asserted): p50 <= 1.10 x floor + 20 ms, p99 <= 1.20 x floor + 50 ms.

    .venv/bin/python bench/rider.py                 # 20 commands per point: about 5 minutes
    .venv/bin/python bench/rider.py --commands 40

Results: ``bench/results/rider-<date>.json`` and ``bench/results/rider.png``; a Markdown table
is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt
from gateway import RESULTS, Site, commit, load_average, machine, percentile, site

from lockgate_sim.linklayer import AttCounts
from lockgate_sim.world import LockConfig
from tests.e2e.backend import command
from tests.e2e.station import bike_of, keys_of, sharee

CONNECT_MS = 250
MOTOR_MS = 600
CONNECTION_INTERVALS_MS = (7.5, 30.0, 50.0)
ADV_INTERVALS_MS = (100.0, 500.0)
ANCHOR_MS = 4400.0
"""The Home Assistant integration's wait from the tap to the bolt open (issue 21)."""
FRESH_FLOOR_ROUND_TRIPS = 2 + 7 + 7 - 1
"""Sharee: 2 CCCD writes, 7 writes, 7 indications less the first motion status (under the motor)."""
KEPT_FLOOR_ROUND_TRIPS = 1 + 1
"""Lock control and the final motion status on a link still authorised."""
RIDER = "rider-1"
CASES = ("fresh", "kept", "ready")
"""fresh: a new link (an unlock, the lock closed and so not kept); kept: a watched open lock's
link taken over (a lock command); ready: the unlock of a booked bike kept ready."""
COUNTED = ("writes", "reads", "indications", "cccd_writes", "mtu_exchanges", "discovery")


def point_lock(index: int, interval_ms: float, adv_ms: float) -> LockConfig:
    return sharee(
        index,
        connect_ms=CONNECT_MS,
        motor_ms=MOTOR_MS,
        connection_interval_ms=interval_ms,
        adv_interval_ms=adv_ms,
    )


def delta(after: AttCounts, before: AttCounts) -> dict[str, int]:
    found = {key: getattr(after, key) - getattr(before, key) for key in COUNTED}
    found["round_trips"] = after.round_trips - before.round_trips
    found["lost_packets"] = after.lost_packets - before.lost_packets
    found["intervals"] = after.intervals - before.intervals
    # The link's connection events while the command ran: those beyond ``intervals`` carried
    # nothing of it (the gateway between two exchanges, or the lock's motor).
    found["connection_events"] = after.connection_events - before.connection_events
    return found


async def one_command(
    s: Site, lock: LockConfig, name: str, interval_ms: float, **fields: Any
) -> dict[str, Any]:
    """One command, timed: to the bolt's event, to SUCCESS; its floor and its round trips."""
    control = s.sim.control
    times, counts = await control.times(lock.name), await control.radio_counts(lock.name)
    body = command(bike_of(lock), name, credentials=keys_of(lock), **fields)
    target = "unlocked" if name == "unlock" else "locked"
    topic = f"commands/{body['id']}"
    started = time.monotonic()
    final = await s.backend.run(body, timeout_s=120)
    if final["state"]["value"] != "SUCCESS":
        raise RuntimeError(f"a benchmark command failed: {final}")
    success_at = next(
        m.at for m in s.backend.messages(topic) if m.json()["state"]["value"] == "SUCCESS"
    )

    def bolt_event() -> float | None:
        for m in s.backend.messages("events"):
            e = m.json()
            if (
                m.at >= started
                and e.get("type") == "lock_state"
                and e.get("bike") == bike_of(lock)
                and e.get("lock_state") == target
            ):
                return m.at
        return None

    event_at = await s.backend.wait_for(bolt_event, timeout_s=30)
    times_after = await control.times(lock.name)
    counts_after = await control.radio_counts(lock.name)
    fresh = counts_after.links > counts.links
    connect_ms = (times_after.connect_s_total - times.connect_s_total) * 1000
    motor_ms = (times_after.motion_s_total - times.motion_s_total) * 1000
    floor_trips = FRESH_FLOOR_ROUND_TRIPS if fresh else KEPT_FLOOR_ROUND_TRIPS
    return {
        "command": name,
        "fresh": fresh,
        "event_ms": (event_at - started) * 1000,
        "success_ms": (success_at - started) * 1000,
        "connect_ms": connect_ms,
        "motor_ms": motor_ms,
        "floor_round_trips": floor_trips,
        "floor_ms": connect_ms + motor_ms + floor_trips * interval_ms,
        "counted": delta(counts_after.total, counts.total),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(key: str) -> dict[str, float]:
        values = [r[key] for r in rows]
        return {
            "p50": statistics.median(values),
            "p99": percentile(values, 0.99),
            "max": max(values),
        }

    counted = {
        key: statistics.median(r["counted"][key] for r in rows) for key in rows[0]["counted"]
    }
    return {
        "n": len(rows),
        "event_ms": stats("event_ms"),
        "success_ms": stats("success_ms"),
        "floor_ms": stats("floor_ms"),
        "connect_ms": stats("connect_ms"),
        "motor_ms": stats("motor_ms"),
        "floor_round_trips": rows[0]["floor_round_trips"],
        "counted_median": counted,
    }


async def provision(s: Site, lock: LockConfig) -> None:
    body = command(bike_of(lock), "provision", credentials=keys_of(lock))
    final = await s.backend.run(body, timeout_s=60)
    if final["state"]["value"] != "SUCCESS":
        raise RuntimeError(f"provisioning failed: {final}")


async def kept_ready(s: Site, lock: LockConfig, links_before: int) -> None:
    """Until the booked bike's lock is linked anew and authorised (6 writes, 5 indications on
    the new link), and a moment for the driver to keep the session."""
    control = s.sim.control
    async with asyncio.timeout(30):
        while True:
            counts = await control.radio_counts(lock.name)
            if counts.links > links_before and counts.link.indications >= 5:
                break
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)


async def ready_cycle(s: Site, lock: LockConfig, interval_ms: float) -> list[dict[str, Any]]:
    """A rider's booking: book (the lock is then kept ready), unlock, lock ending the rental."""
    links = (await s.sim.control.radio_counts(lock.name)).links
    booked = await s.backend.run(command(bike_of(lock), "book", user_id=RIDER), timeout_s=60)
    if booked["state"]["value"] != "SUCCESS":
        raise RuntimeError(f"booking failed: {booked}")
    await kept_ready(s, lock, links)
    unlock = await one_command(s, lock, "unlock", interval_ms, user_id=RIDER)
    unlock["case"] = "ready"
    lock_row = await one_command(s, lock, "lock", interval_ms, user_id=RIDER, end_rental=True)
    return [unlock, lock_row]


async def run(folder: Path, commands: int) -> list[dict[str, Any]]:
    points = [(ci, adv) for ci in CONNECTION_INTERVALS_MS for adv in ADV_INTERVALS_MS]
    locks = [point_lock(i + 1, ci, adv) for i, (ci, adv) in enumerate(points)]
    results = []
    # keep_booked_ready on: a bike that is not booked is not kept ready, so the first half of
    # each point (no booking) is the station without it, the second (booked) with it.
    async with site(folder, locks, slots=3, watch=True, ble="keep_booked_ready = true") as s:
        await s.start()
        await s.first_reads_done()  # every lock connected once: discovery cached
        for lock in locks:
            await provision(s, lock)
        # Provisioned credentials on a lock already read make the driver read it again at once:
        # those reads are done before anything is timed.
        async with asyncio.timeout(120):
            # The daemon's log is a file another process writes: polled, as a tail would.
            while s.daemon.log.read_bytes().count(b'"provisioned lock read"') < len(locks):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        for lock, (ci, adv) in zip(locks, points, strict=True):
            load = load_average()
            rows = []
            for index in range(commands):
                name = "unlock" if index % 2 == 0 else "lock"
                rows.append(await one_command(s, lock, name, ci))
            for _ in range(commands // 2):
                rows += await ready_cycle(s, lock, ci)
            for row in rows:
                row.setdefault("case", "fresh" if row["fresh"] else "kept")
            point: dict[str, Any] = {
                "connection_interval_ms": ci,
                "adv_interval_ms": adv,
                "load_before": load,
                "load_after": load_average(),
                "commands": rows,
            }
            for case in CASES:
                chosen = [r for r in rows if r["case"] == case]
                point[case] = summarise(chosen) if chosen else None
            results.append(point)
            print(
                json.dumps({k: v for k, v in point.items() if k != "commands"}, default=str),
                flush=True,
            )
    return results


# --- output -----------------------------------------------------------------------------------


def goal(summary: dict[str, Any]) -> str:
    floor = summary["floor_ms"]["p50"]
    p50, p99 = summary["success_ms"]["p50"], summary["success_ms"]["p99"]
    g50, g99 = 1.10 * floor + 20, 1.20 * floor + 50
    return (
        f"p50 {p50:.0f} vs {g50:.0f} ({'met' if p50 <= g50 else 'missed'}); "
        f"p99 {p99:.0f} vs {g99:.0f} ({'met' if p99 <= g99 else 'missed'})"
    )


def table(results: dict[str, Any]) -> str:
    lines = [
        (
            f"Machine: {results['machine']}; date {results['date']}; commit {results['commit']}; "
            f"load at start / end {results['load_at_start']} / {results['load_at_end']}"
        ),
        "",
        (
            "| CI / adv (ms) | link | n | event p50 / p99 | SUCCESS p50 / p99 | floor p50 "
            "(connect + motor + RT x CI) | SUCCESS p50 over floor | round trips: floor / counted "
            "(writes + ind + CCCD + MTU) | connection events | anchor | load |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in results["points"]:
        for case in CASES:
            sm = p[case]
            if sm is None:
                continue
            c = sm["counted_median"]
            ev, su, fl = sm["event_ms"], sm["success_ms"], sm["floor_ms"]
            floor = (
                f"{fl['p50']:.0f} ({sm['connect_ms']['p50']:.0f} + {sm['motor_ms']['p50']:.0f} + "
                f"{sm['floor_round_trips']} x {p['connection_interval_ms']:g})"
            )
            trips = (
                f"{sm['floor_round_trips']} / {c['round_trips']:.0f} ({c['writes']:.0f} + "
                f"{c['indications']:.0f} + {c['cccd_writes']:.0f} + {c['mtu_exchanges']:.0f})"
            )
            lines.append(
                f"| {p['connection_interval_ms']:g} / {p['adv_interval_ms']:g} | {case} | "
                f"{sm['n']} | {ev['p50']:.0f} / {ev['p99']:.0f} | {su['p50']:.0f} / "
                f"{su['p99']:.0f} | {floor} | +{su['p50'] - fl['p50']:.0f} | {trips} | "
                f"{c['connection_events']:.0f} | {ANCHOR_MS:.0f} | {p['load_after']} |"
            )
    lines.append("")
    lines += [
        f"Goal at 30 / 100 ms, {case} link, SUCCESS: {goal(p[case])}"
        for p in results["points"]
        if p["connection_interval_ms"] == 30.0 and p["adv_interval_ms"] == 100.0
        for case in CASES
        if p[case] is not None
    ]
    return "\n".join(lines)


def plot(points: list[dict[str, Any]], path: Path) -> None:
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.2), sharey=True)
    titles = {
        "fresh": "unlock, new link (not kept ready)",
        "kept": "lock, the watched link",
        "ready": "unlock, booked bike kept ready",
    }
    for axis, case in zip(axes, CASES, strict=True):
        for adv, colour in zip(ADV_INTERVALS_MS, ("tab:blue", "tab:orange"), strict=True):
            chosen = [p for p in points if p["adv_interval_ms"] == adv and p[case] is not None]
            xs = [p["connection_interval_ms"] for p in chosen]
            for key, style, label in (
                ("success_ms", "o-", "SUCCESS p50"),
                ("event_ms", "^:", "event p50"),
            ):
                ys = [p[case][key]["p50"] for p in chosen]
                axis.plot(xs, ys, style, color=colour, label=f"{label}, adv {adv:g} ms")
            p99 = [p[case]["success_ms"]["p99"] for p in chosen]
            axis.plot(xs, p99, "x", color=colour, label=f"SUCCESS p99, adv {adv:g} ms")
            floor = [p[case]["floor_ms"]["p50"] for p in chosen]
            axis.plot(xs, floor, "s--", color=colour, alpha=0.6, label=f"floor, adv {adv:g} ms")
        axis.axhline(ANCHOR_MS, color="grey", linestyle="-.", label="Home Assistant 4.4 s")
        axis.set_title(f"{titles[case]}: the rider's wait", fontsize=9)
        axis.set_xlabel("connection interval (ms)")
        axis.set_ylim(bottom=0)
        axis.grid(visible=True, alpha=0.3)
        axis.legend(fontsize=6)
    axes[0].set_ylabel("ms from the backend's publish")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


async def main_async(commands: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "load_at_start": load_average(),
        "commands_per_point": commands,
        "connect_ms": CONNECT_MS,
        "motor_ms": MOTOR_MS,
        "anchor_ms": ANCHOR_MS,
    }
    with tempfile.TemporaryDirectory(prefix="lockgate-rider-") as scratch:
        results["points"] = await run(Path(scratch), commands)
    results["load_at_end"] = load_average()
    return results


def main() -> None:
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--commands", type=int, default=20, help="commands per point (20)")
    parser.add_argument("--output", type=Path, default=None, help="the JSON file")
    arguments = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    started = time.monotonic()
    results = asyncio.run(main_async(arguments.commands))
    results["wall_s"] = time.monotonic() - started
    plot(results["points"], RESULTS / "rider.png")
    output = arguments.output or RESULTS / f"rider-{datetime.now(UTC):%Y%m%dT%H%M}.json"
    output.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nresults: {output} ({results['wall_s']:.0f} s)")


if __name__ == "__main__":
    threading.excepthook = threading.__excepthook__
    main()
