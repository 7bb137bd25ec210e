"""The ``lockgate`` command line: one argparse subcommand per module, listed once below.

Top of the layers: it may import anything. A subcommand module exposes ``add_parser(subparsers)``,
which adds its parser and sets its ``func`` default to the function that does the work: that one
takes the parsed arguments and returns an exit code (:class:`lockgate.service.exits.Exit`). Adding
a command is writing its module and naming it in :data:`SUBCOMMANDS`. A command's module imports
at its top only what its parser needs, and the rest where its work begins: every command builds
the whole parser, and ``lockgate run`` decides how it logs (and so whether structlog may load
rich) before structlog is first imported.
"""

from __future__ import annotations

import argparse
from typing import Protocol

from lockgate.cli import check_config, ctl, demo, keys, run
from lockgate.service.exits import Exit

# argparse names no public type for what add_subparsers returns.
Subparsers = argparse._SubParsersAction


class Subcommand(Protocol):
    """What a subcommand module provides (a module satisfies this protocol)."""

    def add_parser(self, subparsers: Subparsers[argparse.ArgumentParser]) -> object:
        """Add this command's parser and ``set_defaults(func=f)``, ``f(args) -> exit code``."""
        ...


SUBCOMMANDS: list[Subcommand] = [run, check_config, keys, ctl, demo]


def parser() -> argparse.ArgumentParser:
    """The whole command line, every subcommand in it."""
    top = argparse.ArgumentParser(
        prog="lockgate", description="Station gateway for shared-bike Ilockit smartlocks."
    )
    subparsers = top.add_subparsers(title="commands", metavar="COMMAND")
    for command in SUBCOMMANDS:
        command.add_parser(subparsers)
    return top


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's), run the subcommand, return its exit code."""
    top = parser()
    try:
        args = top.parse_args(argv)
    except SystemExit as exit_:
        # argparse exits by itself on --help (0) and on a usage error (2); return it instead, so
        # that main stays callable from tests and from other Python code.
        return exit_.code if isinstance(exit_.code, int) else Exit.USAGE
    func = getattr(args, "func", None)
    if func is None:
        top.print_usage()
        return Exit.USAGE
    code: int = func(args)
    return code
