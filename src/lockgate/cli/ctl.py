"""``lockgate ctl``: the backend's side of the contract on the command line, for field engineers.

``lockgate ctl --broker URL --station ID ACTION BIKE [options]`` builds one request of the contract
(docs/mqtt-contract.md) from its options, sends it and follows it through the backend client
library (:class:`lockgate.client.StationClient`), shows each state as it comes on standard error
(on a terminal), prints the final document as JSON on standard output and exits 0 on SUCCESS, 1 on
ERROR, 2 on bad usage, 3 when the broker or the station did not answer in time. With ``--sign-key``
the request is signed and its credentials sealed to the station's key (from ``--station-key``, else
from the station's retained ``status``). ``lockgate ctl ... watch`` is :mod:`lockgate.cli.watch`.
Keys given here are put into the request and nowhere else: no message of this command repeats them.
This module is the parser; the work is :mod:`lockgate.cli.send`, imported only when ``ctl`` runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.model import CommandName, ForceReason

if TYPE_CHECKING:  # the package imports this module: no import back at run time
    from lockgate.cli import Subparsers

DEFAULT_WAIT_S = 15.0


def add_parser(subparsers: Subparsers[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    ctl = subparsers.add_parser(
        "ctl",
        help="send a command to a station and follow it, or watch a station (the backend's side)",
        description=(
            "Send one command to a station over MQTT as a backend would, follow it to its end and "
            "print its final document; or watch the station live. Exit 0 on SUCCESS, 1 on ERROR, "
            "2 on bad usage, 3 when the broker or the station did not answer in time."
        ),
    )
    _broker_options(ctl, suppress=False)
    ctl.set_defaults(func=run)
    actions = ctl.add_subparsers(dest="action", required=True, metavar="ACTION")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("bike", help="the bike id, as registered at the station")
    common.add_argument(
        "--id",
        help="the command id (default: a new UUID); the same command line with the same id"
        " is a repeat: it shows how that command ended, nothing runs twice",
    )
    common.add_argument("--user-id", help="the rider (required for book and cancel-booking)")
    common.add_argument(
        "--timeout-s",
        type=_positive,
        metavar="S",
        help="timeout_at = now + S (default: 60, book: 3600)",
    )
    keys = common.add_argument_group(
        "credentials (prefer --credentials-file: a command line is visible in the process list)"
    )
    keys.add_argument("--credentials-file", type=Path, metavar="FILE", help="a JSON object")
    keys.add_argument("--k-seed", metavar="COPRI", help='sharee K_seed, "[122, -30, ...]"')
    keys.add_argument("--k-u", metavar="COPRI", help='sharee K_u, "[-26, 6, ...]"')
    keys.add_argument("--auth-id", type=int, help="nobond auth_id, 0..255")
    keys.add_argument("--phone-id", metavar="HEX", help="nobond phone_id, 16 hex digits")
    keys.add_argument("--ltk", metavar="HEX", help="nobond ltk, 64 hex digits")
    signing = common.add_argument_group("signed and sealed commands")
    signing.add_argument(
        "--sign-key", type=Path, metavar="FILE", help="the backend's Ed25519 private key"
    )
    signing.add_argument(
        "--station-key",
        type=Path,
        metavar="FILE",
        help="the station's public JWK (default: sealing_key of its retained status)",
    )
    signing.add_argument(
        "--seal", action="store_true", help="seal the credentials of an unsigned command too"
    )

    # The broker's options are taken after the action too (``ctl unlock B1 --broker URL``).
    after = argparse.ArgumentParser(add_help=False)
    _broker_options(after, suppress=True)
    for name in CommandName:
        action = actions.add_parser(name.value, parents=[common, after], help=f"send {name.value}")
        if name is CommandName.LOCK:
            action.add_argument("--end-rental", action="store_true", help="end the rental")
        elif name is CommandName.FORCE_UNLOCK:
            action.add_argument("--reason", required=True, choices=[r.value for r in ForceReason])
            action.add_argument("--comment", help="5+ characters with STUCK_USER_OTHER_ISSUE/OTHER")
        elif name is CommandName.SYNC_DEVICE:
            action.add_argument(
                "--power-cycle", action="store_true", help="read the lock on a new connection"
            )
    follow = actions.add_parser(
        "watch", parents=[after], help="follow status, locks and events until Ctrl-C"
    )
    follow.add_argument(
        "--json", action="store_true", help='one JSON line per message: {"topic", "payload"}'
    )
    return ctl


def _broker_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The broker's options: on ``ctl`` itself, and (``suppress``: no defaults, so as not to
    overwrite what came before the action) on every action."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    broker = parser.add_argument_group("broker (the same settings as the station's [mqtt])")
    broker.add_argument(
        "--broker", default=default(None), metavar="URL", help="mqtt[s]://HOST[:PORT] (required)"
    )
    broker.add_argument(
        "--station", default=default(None), metavar="ID", help="the station id (required)"
    )
    broker.add_argument("--username", default=default(None))
    broker.add_argument("--password-file", type=Path, default=default(None), metavar="FILE")
    broker.add_argument(
        "--ca-file", type=Path, default=default(None), metavar="FILE", help="CA for mqtts://"
    )
    broker.add_argument(
        "--cert-file", type=Path, default=default(None), metavar="FILE", help="client certificate"
    )
    broker.add_argument(
        "--key-file", type=Path, default=default(None), metavar="FILE", help="its private key"
    )
    broker.add_argument("--topic-root", default=default("lockgate/v1"), help="default: lockgate/v1")
    broker.add_argument(
        "--wait-s",
        type=_positive,
        default=default(DEFAULT_WAIT_S),
        metavar="S",
        help="how long to wait for the station's receipt (or status) before exit 3"
        f" (default: {DEFAULT_WAIT_S:g})",
    )


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from err
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


def run(args: argparse.Namespace) -> int:
    """``lockgate ctl``: one command, or ``watch`` (:mod:`lockgate.cli.send`)."""
    # Imported here: the MQTT client and JOSE are this command's, not every command's (the
    # daemon's start among them).
    from lockgate.cli import send  # noqa: PLC0415

    return send.run(args)
