"""``lockgate check-config --config FILE``: validate a station's configuration without starting.

Loads the file as the daemon would (:func:`lockgate.config.load`: the environment overrides and
every file the configuration names, checked), then prints a one-line summary and exits 0, or names
every problem on standard error and exits 1. Operators run it before a restart; the daemon itself
exits with EX_CONFIG on the same problems.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.service.exits import Exit

if TYPE_CHECKING:  # the package imports this module: no import back at run time
    from lockgate.cli import Subparsers


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    command = subparsers.add_parser(
        "check-config",
        help="validate a configuration file",
        description="Validate a configuration file (and the environment's overrides); "
        "exit 0, or 1 with every problem named.",
    )
    command.add_argument("--config", type=Path, required=True, metavar="FILE")
    command.set_defaults(func=run)
    return command


def run(args: argparse.Namespace) -> int:
    from lockgate.config import ConfigError, load  # noqa: PLC0415 - see lockgate.cli

    path: Path = args.config
    try:
        config = load(path)
    except ConfigError as err:
        count = len(err.problems)
        print(f"{path}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)  # noqa: T201
        for problem in err.problems:
            print(f"  {problem}", file=sys.stderr)  # noqa: T201
        return Exit.ERROR
    locks = len(config.locks)
    print(  # noqa: T201
        f"{path}: valid: station {config.station.id}, {locks} lock{'s' if locks != 1 else ''}, "
        f"broker {config.mqtt.url}"
    )
    return Exit.OK
