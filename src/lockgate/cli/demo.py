"""``lockgate demo``: the whole product in one command, for a newcomer, an integrator or a field
engineer.

Starts an MQTT broker inside this process, simulated locks on a private bus, the real daemon as a
child process and a backend client, then either the live terminal view with its scripted tour and
keys (:mod:`lockgate.demo.app`) or, with ``--headless``, the tour alone with one line per step
(:mod:`lockgate.demo.headless`). Needs the ``demo`` extra (amqtt, textual); docs/demo.md tells
what the tour shows.
"""

from __future__ import annotations

import argparse
import asyncio
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``demo`` to the ``lockgate`` command line."""
    demo = subparsers.add_parser(
        "demo", help="see lockgate work: broker, simulated locks, daemon and a live view"
    )
    demo.add_argument(
        "--headless",
        action="store_true",
        help="run the tour without the view, print each step; exit 0 when every step passed",
    )
    demo.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="multiply the simulated locks' delays by this (0.1: ten times faster)",
    )
    demo.add_argument(
        "--no-tour", action="store_true", help="the view without the scripted tour: keys only"
    )
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; the headless tour's verdict, or 0 when the view was closed."""
    if not 0 < args.time_scale <= 10:
        sys.stderr.write("lockgate demo: --time-scale must be above 0 and at most 10\n")
        return 2
    # Imported here: a station installs lockgate without the demo extra, and every other
    # command must work there.
    try:
        from lockgate.demo.app import run_app  # noqa: PLC0415
        from lockgate.demo.headless import run_headless  # noqa: PLC0415
        from lockgate.demo.session import DemoOptions  # noqa: PLC0415
    except ModuleNotFoundError as err:
        sys.stderr.write(
            f"lockgate demo: {err.name} is missing; install the demo extra: "
            "pip install 'lockgate[demo]' (scripts/demo does it)\n"
        )
        return 1
    options = DemoOptions(time_scale=args.time_scale)
    try:
        if args.headless:
            return asyncio.run(run_headless(options))
        return asyncio.run(run_app(options, tour=not args.no_tour))
    except KeyboardInterrupt:
        # Everything was stopped on the way out (every part sits in an ``async with``).
        sys.stderr.write("lockgate demo: stopped\n")
        return 130
