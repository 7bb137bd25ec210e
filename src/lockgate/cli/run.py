"""``lockgate run --config FILE``: the daemon, in the foreground (systemd runs it so).

Loads and checks the configuration first: an invalid one names every problem on standard error and
exits with EX_CONFIG before anything starts. Then it sets the logs up (JSON lines for the journal
under systemd, readable lines on a terminal) and runs :func:`lockgate.service.daemon.run` until
SIGTERM or SIGINT; the exit code says how it ended (docs/station.md lists them).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate import logs
from lockgate.config import ConfigError, load
from lockgate.service.daemon import run as run_daemon
from lockgate.service.exits import Exit

if TYPE_CHECKING:  # the package imports this module: no import back at run time
    from lockgate.cli import Subparsers

DEFAULT_CONFIG = Path("/etc/lockgate/lockgate.toml")


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    command = subparsers.add_parser(
        "run",
        help="run the station gateway in the foreground",
        description="Run the station gateway in the foreground until SIGTERM or SIGINT.",
    )
    command.add_argument("--config", type=Path, default=DEFAULT_CONFIG, metavar="FILE")
    command.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    command.add_argument(
        "--fresh",
        action="store_true",
        help="start on a new, empty store when the old one has vanished or is corrupt (its "
        "files are renamed aside, never deleted); every command id it knew is forgotten",
    )
    command.set_defaults(func=run)
    return command


def run(args: argparse.Namespace) -> int:
    path: Path = args.config
    try:
        config = load(path)
    except ConfigError as err:
        print(f"{path}: the configuration is invalid:", file=sys.stderr)  # noqa: T201
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)  # noqa: T201
        return Exit.CONFIG
    logs.configure(level=args.log_level)
    return asyncio.run(run_daemon(config, fresh=args.fresh))
