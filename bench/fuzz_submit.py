"""A flood of hostile requests through the engine's own ``submit``, on a real store file.

Requests are mutations of valid ones (registered bikes, real credentials) with hostile values:
lone surrogates, times that overflow when converted, years before 1000, deep nesting, huge
strings, wrong types, NaN and Infinity, unknown fields, truncated and random bytes; ids come from a
small pool so repeats and conflicts are frequent. The radio is the engine tests' model of the locks.
A link is imitated: every ``--drain`` requests the outbox is read and acknowledged.

Checked for every request: ``submit`` returned (an exception is counted and shown); a request with
a usable id got exactly one answer among the messages its submit queued (its receipt, its refusal,
its stored document again, or an error document with its id); no lock moved but for an accepted
unlock or lock. Printed at the end: the rate, the largest RSS, the largest database (file + WAL).

    .venv/bin/python bench/fuzz_submit.py [--requests 1000000] [--dir DIR] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

# The modelled locks live with the engine's tests; the benchmark runs from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog

from lockgate.contract.request import ID_PATTERN, MAX_PAYLOAD_BYTES
from lockgate.engine import Engine
from lockgate.model import Admission, MessageKind
from lockgate.store import Store
from tests.engine.harness import (
    NOBOND_JSON,
    SHAREE_JSON,
    STATION,
    STATION_KEY,
    model_locks,
)
from tests.engine.radio_model import ModelRadio

TEMPLATES: list[dict[str, Any]] = [
    {"command": "unlock", "bike": "FR1540", "credentials": SHAREE_JSON},
    {"command": "lock", "bike": "FR1541", "credentials": SHAREE_JSON, "end_rental": True},
    {"command": "book", "bike": "FR1540", "user_id": "u1"},
    {"command": "cancel-booking", "bike": "FR1540", "user_id": "u1"},
    {"command": "force-unlock", "bike": "FR1542", "reason": "other", "comment": "stuck bolt"},
    {"command": "sync-device", "bike": "FR1542", "power_cycle": True},
    {"command": "provision", "bike": "FR1542", "credentials": NOBOND_JSON},
    {"command": "take-photo", "bike": "FR1540"},
]
FIELDS = ["id", "command", "bike", "timeout_at", "user_id", "credentials", "end_rental", "reason"]
HOSTILE_TIMES = [
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "0999-06-01T00:00:00Z",
    "2999-01-01T00:00:00Z",
    "2026-13-40T25:61:61Z",
    "2026-01-01T00:00:00",
    "2026-01-01 00:00:00Z",
    "2026-01-01T00:00:00.1234567890123Z",
    "+002026-01-01T00:00:00Z",
    "2026-W01-1T00:00:00Z",
]


def hostile_value(rng: random.Random) -> Any:
    kind = rng.randrange(14)
    if kind == 0:
        return "\ud800" * rng.randint(1, 3)
    if kind == 1:
        return rng.choice(HOSTILE_TIMES)
    if kind == 2:
        return "B" * rng.choice([65, 1000, 15000])
    if kind == 3:
        depth = rng.choice([5, 9, 100, 900])
        value: Any = 1
        for _ in range(depth):
            value = {"k": value} if rng.random() < 0.5 else [value]
        return value
    if kind == 4:
        return rng.choice([float("nan"), float("inf"), -float("inf"), 1e308, -(2**70)])
    if kind == 5:
        return rng.choice([None, True, False, 0, -1, [], {}, ""])
    if kind == 6:
        return "".join(chr(rng.randrange(0x20, 0x2FFFF)) for _ in range(rng.randint(1, 40)))
    if kind == 7:
        return {"\udc00": 1, "K_seed": "[1]"}
    if kind == 8:
        return {"K_seed": SHAREE_JSON["K_seed"], "K_u": [rng.randint(-300, 300)] * 24}
    if kind == 9:
        return "x\x00\n\r\t\u2028y"
    if kind == 10:
        return rng.choice(["FR1540", "FR1541", "FR1542", "FR9999", "unlock", "lock", "book"])
    if kind == 11:
        return str(rng.random())
    if kind == 12:
        return {"a" * rng.randint(1, 70): "b"}
    return rng.choice(["2030-01-01T00:00:00Z", "2031-06-01T12:00:00.5+02:00"])


def hostile_request(rng: random.Random, ids: list[str]) -> bytes:
    document = dict(rng.choice(TEMPLATES))
    document["id"] = rng.choice(ids)
    for _ in range(rng.randint(1, 3)):  # always hostile somewhere; some stay valid by chance
        field = rng.choice([*FIELDS, "extra", "\ud801", "x" * 80])
        if rng.random() < 0.15:
            document.pop(field, None)
        else:
            document[field] = hostile_value(rng)
    try:
        text = json.dumps(document)  # escapes lone surrogates as \\udXXX, as an attacker would
    except (ValueError, RecursionError):
        text = '{"id": 1}'
    payload = text.encode()
    roll = rng.random()
    if roll < 0.03:
        return payload[: rng.randrange(max(len(payload), 1))]
    if roll < 0.05:
        return rng.randbytes(rng.randrange(64))
    if roll < 0.06:
        return b"[" * 100_000
    return payload


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def disk_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.exists())


async def flood(args: argparse.Namespace, directory: Path) -> None:
    rng = random.Random(args.seed)
    path = directory / "fuzz.db"
    radio = ModelRadio(*model_locks())
    for lock in radio.locks.values():
        lock.motor_s = 0.0
    ids = [f"id{n}" for n in range(args.ids)]
    escaped: Counter[str] = Counter()
    admissions: Counter[str] = Counter()
    unanswered = 0
    moving_commands = 0
    peak_rss = peak_disk = 0
    async with (
        Store(
            path,
            station=STATION,
            key=STATION_KEY,
            max_outbox=args.max_outbox,
            max_refusals=args.max_refusals,
        ) as store,
        Engine(store=store, radio=radio, station=STATION) as engine,
    ):
        await engine.recover()
        started = time.perf_counter()
        last = await store.last_queued_id()
        for n in range(1, args.requests + 1):
            payload = hostile_request(rng, ids)
            try:
                submission = await engine.submit(payload)
            except Exception as err:  # noqa: BLE001 - what the benchmark counts
                escaped[f"{type(err).__name__}: {str(err)[:80]}"] += 1
                continue
            admissions[submission.admission.value] += 1
            if submission.admission is Admission.ACCEPTED:
                document = json.loads(payload)
                moving_commands += document.get("command") in ("unlock", "lock", "force-unlock")
            rows = await store.queued(after=last, limit=1000)
            last = rows[-1].id if rows else last
            usable = _usable_id(payload)
            if usable is not None and _answers(rows, usable) != 1:
                unanswered += 1
                if args.verbose:
                    print("not one answer:", submission, payload[:300], [r.topic for r in rows])
            if n % args.drain == 0:
                await drain(engine, store)
                peak_rss = max(peak_rss, rss_bytes())
                peak_disk = max(peak_disk, disk_bytes(path))
            if n % args.report == 0:
                elapsed = time.perf_counter() - started
                print(
                    f"{n} requests, {n / elapsed:.0f}/s, rss {rss_bytes() / 2**20:.1f} MiB, "
                    f"db {disk_bytes(path) / 2**20:.1f} MiB, escaped {sum(escaped.values())}, "
                    f"unanswered {unanswered}",
                    flush=True,
                )
        await engine.wait_idle(30)
        elapsed = time.perf_counter() - started
        motions = len(radio.motions)
    print(f"requests: {args.requests} in {elapsed:.0f} s ({args.requests / elapsed:.0f}/s)")
    print(f"admissions: {dict(admissions)}")
    print(f"exceptions escaped: {sum(escaped.values())} {dict(escaped.most_common(5))}")
    print(f"requests with a usable id and not exactly one answer: {unanswered}")
    print(f"motions: {motions} for {moving_commands} accepted lock/unlock/force-unlock commands")
    print(f"peak RSS: {peak_rss / 2**20:.1f} MiB; peak database + WAL: {peak_disk / 2**20:.1f} MiB")
    print(f"database + WAL at the end: {disk_bytes(path) / 2**20:.1f} MiB")
    print(kept(path, args.max_refusals))


def kept(path: Path, max_refusals: int) -> str:
    """What the command table holds at the end, refusals apart."""
    with sqlite3.connect(path) as db:
        refused, accepted = db.execute(
            "SELECT SUM(version = 1 AND ended_at IS NOT NULL), SUM(version > 1 OR ended_at IS NULL)"
            " FROM command"
        ).fetchone()
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return (
        f"command rows kept: {refused} refusals (bound {max_refusals}), {accepted} accepted "
        f"commands (kept for the dedupe window); pages {pages}, of them free {free}"
    )


async def drain(engine: Engine, store: Store) -> None:
    """What the MQTT link does: everything queued and retained published and acknowledged."""
    await engine.wait_idle(30)
    pending = await store.queued(after=0, limit=1_000_000)
    retained = await store.unacknowledged_retained()
    await store.acknowledge(
        [row.id for row in pending], [(r.topic, r.generation) for r in retained]
    )


def _usable_id(payload: bytes) -> str | None:
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None  # the contract does not read a payload this large, so it has no id
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    raw = document.get("id") if isinstance(document, dict) else None
    return raw if isinstance(raw, str) and ID_PATTERN.match(raw) else None


def _answers(rows: list[Any], command_id: str) -> int:
    """Messages that answer ``command_id``: a receipt (version 1), a refusal or a stored document
    again (replies), or an error document with its id. A worker's later documents are not."""
    count = 0
    for row in rows:
        document = json.loads(row.payload)
        if (
            row.topic == f"commands/{command_id}"
            and (row.kind is MessageKind.REPLY or document.get("version") == 1)
        ) or (row.topic == "errors" and document.get("correlation_id") == command_id):
            count += 1
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--ids", type=int, default=50_000, help="pool of ids (repeats, conflicts)")
    parser.add_argument("--max-outbox", type=int, default=10_000)
    parser.add_argument("--max-refusals", type=int, default=10_000)
    parser.add_argument("--drain", type=int, default=1_000, help="acknowledge every N requests")
    parser.add_argument("--report", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--verbose", action="store_true", help="print each failed check")
    parser.add_argument("--dir", type=Path, help="where the database goes (default: a temp dir)")
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.ReturnLoggerFactory())  # quiet: 1e6 log lines
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        asyncio.run(flood(args, Path(directory)))


if __name__ == "__main__":
    main()
