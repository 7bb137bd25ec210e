"""Runs ``python -m lockgate ...`` under cProfile timed by the event loop thread's own CPU clock.

``-m cProfile`` times functions by the wall clock, so on a loaded machine every preemption is
charged to whatever function was running; timed by ``time.thread_time`` a profile shows what the
daemon's event loop thread spent its CPU on (not its other threads: the store's SQLite thread).
bench/gateway.py's ``ProfiledDaemon`` uses it for a profile file ending in ``.cpu.prof``:

    python bench/cpu_profile.py OUT.cpu.prof -m lockgate run --config FILE

Read it with ``pstats`` (``python -m pstats OUT.cpu.prof``).
"""

from __future__ import annotations

import cProfile
import runpy
import sys
import time


def main() -> None:
    output, *rest = sys.argv[1:]
    if rest[:2] != ["-m", "lockgate"]:
        raise SystemExit("usage: cpu_profile.py OUT -m lockgate ARGS...")
    sys.argv = ["lockgate", *rest[2:]]
    profile = cProfile.Profile(time.thread_time)
    try:
        profile.runcall(runpy.run_module, "lockgate", run_name="__main__", alter_sys=True)
    finally:
        profile.dump_stats(output)


if __name__ == "__main__":
    main()
