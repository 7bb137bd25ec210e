"""``lockgate run --config FILE``: the daemon, in the foreground (systemd runs it so).

Loads and checks the configuration first: an invalid one names every problem on standard error and
exits with EX_CONFIG before anything starts. Then it sets the logs up (JSON lines for the journal
under systemd, readable lines on a terminal) and runs :func:`lockgate.service.daemon.run` until
SIGTERM or SIGINT; the exit code says how it ended (docs/station.md lists them).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

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
    if not _console_logs():
        _without_rich()
    # The daemon's modules, structlog among them, only now (see lockgate.cli).
    from lockgate import logs  # noqa: PLC0415
    from lockgate.config import ConfigError, load  # noqa: PLC0415
    from lockgate.service.daemon import run as run_daemon  # noqa: PLC0415

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


def _console_logs() -> bool:
    """Whether :func:`lockgate.logs.configure` will write coloured lines (a terminal, no journal)
    rather than JSON, as it decides by default."""
    return sys.stderr.isatty() and "JOURNAL_STREAM" not in os.environ


def _without_rich() -> None:
    """Keep rich (and pygments through it, ~4 MB) out of a daemon that logs JSON.

    structlog imports rich when it is installed, at its own import, for its console renderer's
    tracebacks; JSON lines never use it. A ``None`` in ``sys.modules`` makes that import fail as
    if rich were absent (as on a station, where it is not installed). Nothing else in the daemon
    imports rich; the demo, which does, is another command.
    """
    if "structlog" not in sys.modules:  # too late otherwise: it has decided already
        # typeshed types the values as modules; None is the documented "cannot be imported".
        sys.modules.setdefault("rich", None)  # type: ignore[arg-type]
