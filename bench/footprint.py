"""The gateway's own cost at 50 locks, before and after, in one run.

Goals: at most 5 ms of the daemon's CPU per command, at most 0.3 % of a core idle at 50 locks, a
resident set of at most 60 MB at 50 locks. "Before" is the daemon of another tree (by default
this branch's merge base with ``main``: its ``src`` exported with ``git archive`` and run by the
same virtual environment, first on ``PYTHONPATH``); "after" is this tree. Both run against the
same simulator, broker and backend code (this tree's), one after the other, on a fresh station
each: everything real, as in bench/gateway.py (mosquitto, ``lockgate-sim`` child process at time
scale 1 with an instant radio, ``lockgate run`` child process with ``watch`` on, the tests'
backend). Per tree:

- idle: after every lock's first read and 3 s more, the daemon's CPU (``/proc/PID/stat``, user +
  system) over ``--idle`` seconds, as a share of one core. The periodic reads (one per lock
  every ``sync_interval_s``, 600 s) fall outside the window; their share is added from the CPU
  the first reads took (as bench/gateway.py does);
- per command: ``--commands`` commands one at a time (unlock and lock alternating over five
  locks: an unlock connects, the lock after it takes the watched link), the daemon's CPU over
  them less the idle rate over the same time, divided by their number; the raw figure beside;
- RSS: ``VmRSS`` after the idle window and after the commands, and ``VmHWM`` (the peak).

    .venv/bin/python bench/footprint.py                       # about 4 minutes
    .venv/bin/python bench/footprint.py --before-ref main --profile-idle idle.html

Results: ``bench/results/footprint-<date>.json``; a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway import (
    RESULTS,
    ROOT,
    TICKS,
    commit,
    cpu_s,
    load_average,
    locks,
    machine,
    rss_mb,
    site,
    timed_command,
)

LOCKS = 50
COMMAND_LOCKS = 5


def main_thread_cpu_s(pid: int) -> float:
    """The event loop's thread's CPU seconds (the process's first thread); the rest of the
    process's CPU is its other threads' (the store's SQLite thread, bleak's, paho's)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def export_src(ref: str, into: Path) -> tuple[Path, str]:
    """``ref``'s ``src`` tree, exported into ``into``; the commit it names."""
    sha = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", sha, "src"],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src", sha


async def measure(
    folder: Path, src: Path | None, *, idle_s: float, commands: int, profile: Path | None
) -> dict[str, Any]:
    world = locks(LOCKS)
    async with site(folder, world, slots=3, watch=True, daemon_src=src, profile=profile) as s:
        await s.start()
        first_reads_s = await s.first_reads_done()
        pid = s.daemon.pid
        start_cpu = cpu_s(pid)
        await asyncio.sleep(3.0)  # the first reads' documents go out
        idle_from, idle_at = cpu_s(pid), time.monotonic()
        await asyncio.sleep(idle_s)
        idle_rate = (cpu_s(pid) - idle_from) / (time.monotonic() - idle_at)
        rss_idle = rss_mb(pid)
        chosen = world[:COMMAND_LOCKS]
        from_cpu, from_at, from_main = cpu_s(pid), time.monotonic(), main_thread_cpu_s(pid)
        failed = 0
        for index in range(commands):
            lock = chosen[(index // 2) % len(chosen)]
            _, final = await timed_command(s.backend, lock, "unlock" if index % 2 == 0 else "lock")
            failed += final["state"]["value"] != "SUCCESS"
        spent, took = cpu_s(pid) - from_cpu, time.monotonic() - from_at
        main_spent = main_thread_cpu_s(pid) - from_main
        result = {
            "daemon_src": str(src) if src else "this tree",
            "first_reads_s": first_reads_s,
            "first_reads_cpu_s": start_cpu,
            "idle_core_percent": idle_rate * 100,
            # One read per lock per sync interval (600 s), each costing what a first read did.
            "idle_with_syncs_core_percent": (idle_rate + start_cpu / 600.0) * 100,
            "commands": commands,
            "failed": failed,
            "cpu_per_command_ms": (spent - idle_rate * took) / commands * 1000,
            "cpu_per_command_raw_ms": spent / commands * 1000,
            "cpu_per_command_loop_thread_ms": main_spent / commands * 1000,
            "cpu_per_command_other_threads_ms": (spent - main_spent) / commands * 1000,
            "rss_idle_mb": rss_idle,
            "rss_after_mb": rss_mb(pid),
            "rss_peak_mb": peak_rss_mb(pid),
            "load": load_average(),
        }
    print(json.dumps(result), flush=True)
    return result


def table(results: dict[str, Any]) -> str:
    before, after = results["before"], results["after"]
    rows = [
        ("daemon CPU per command (less idle)", "cpu_per_command_ms", "ms", "5 ms"),
        ("daemon CPU per command, raw", "cpu_per_command_raw_ms", "ms", ""),
        ("… of it the event loop's thread", "cpu_per_command_loop_thread_ms", "ms", ""),
        ("… of it the other threads (SQLite's)", "cpu_per_command_other_threads_ms", "ms", ""),
        ("idle CPU at 50 locks", "idle_core_percent", "% of a core", "0.3 %"),
        ("idle CPU with the periodic reads", "idle_with_syncs_core_percent", "% of a core", ""),
        ("RSS idle at 50 locks", "rss_idle_mb", "MB", "60 MB"),
        ("RSS after the commands", "rss_after_mb", "MB", "60 MB"),
        ("RSS peak (VmHWM)", "rss_peak_mb", "MB", ""),
    ]
    lines = [
        (
            f"Machine: {results['machine']}; {results['date']}; before: {results['before_ref']} "
            f"({results['before_commit']}), after: {results['commit']}; load "
            f"{results['load_at_start']} → {results['load_at_end']}"
        ),
        "",
        "| figure | before | after | goal |",
        "|---|---|---|---|",
    ]
    for label, key, unit, goal in rows:
        lines.append(f"| {label} | {before[key]:.2f} {unit} | {after[key]:.2f} {unit} | {goal} |")
    return "\n".join(lines)


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit(),
        "load_at_start": load_average(),
        "before_ref": arguments.before_ref,
        "locks": LOCKS,
    }
    with tempfile.TemporaryDirectory(prefix="lockgate-footprint-") as scratch:
        folder = Path(scratch)
        src, sha = export_src(arguments.before_ref, folder / "before-tree")
        results["before_commit"] = sha
        options = {"idle_s": arguments.idle, "commands": arguments.commands}
        results["before"] = await measure(folder / "before", src, profile=None, **options)
        results["after"] = await measure(
            folder / "after", None, profile=arguments.profile, **options
        )
    results["load_at_end"] = load_average()
    return results


def merge_base() -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "merge-base", "HEAD", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> None:
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before-ref", default=None, help="the tree before (merge base: main)")
    parser.add_argument("--idle", type=float, default=60.0, help="idle window, s (60)")
    parser.add_argument("--commands", type=int, default=40, help="commands timed (40)")
    parser.add_argument("--profile", type=Path, default=None, help="pyinstrument, the after run")
    parser.add_argument("--output", type=Path, default=None, help="the JSON file")
    arguments = parser.parse_args()
    arguments.before_ref = arguments.before_ref or merge_base()
    RESULTS.mkdir(exist_ok=True)
    results = asyncio.run(main_async(arguments))
    output = arguments.output or RESULTS / f"footprint-{datetime.now(UTC):%Y%m%dT%H%M}.json"
    output.write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"\nresults: {output}")


if __name__ == "__main__":
    threading.excepthook = threading.__excepthook__
    main()
