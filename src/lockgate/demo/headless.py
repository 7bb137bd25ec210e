"""``lockgate demo --headless``: the tour without the view, one line per step, for tests and CI.

Prints each step's caption as it starts and its outcome as it ends, then a summary; the exit code
is 0 only when every step had the outcome it should. When a step failed, the station's last log
lines follow, since they usually say why.
"""

from __future__ import annotations

import sys
from typing import TextIO

from lockgate.demo.session import DemoOptions, running_demo
from lockgate.demo.tour import TOUR, Outcome, Step, run_tour


async def run_headless(options: DemoOptions, out: TextIO = sys.stdout) -> int:
    """Run the tour on a fresh demo; 0 when every step had its outcome, else 1."""

    def report(index: int, step: Step, outcome: Outcome | None) -> None:
        number = f"{index + 1:2d}/{len(TOUR)}"
        if outcome is None:
            out.write(f"[{number}] {step.caption}\n")
        else:
            out.write(f"        {'ok  ' if outcome.ok else 'FAIL'} {outcome.detail}\n")
        out.flush()

    out.write("lockgate demo: starting the broker, the simulated locks and the station\n")
    out.flush()
    async with running_demo(options) as demo:
        every = await run_tour(demo, report)
        if not every:
            out.write("\nThe station's last log lines:\n" + demo.station.log_tail() + "\n")
    out.write("tour complete: every step as it should be\n" if every else "tour FAILED\n")
    out.flush()
    return 0 if every else 1
