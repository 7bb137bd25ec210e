"""``lockgate keys``: the keys of signed and sealed commands, made and shown on the command line.

``station`` makes the station's X25519 keypair (the file 0600; only the public JWK is printed, for
the backend), ``thumbprint`` shows a key file's RFC 7638 thumbprint (the ``kid`` a backend or a
station uses for it), ``backend`` makes an Ed25519 signing keypair for a backend, for tests and
field work. Key files are made here, never overwritten: a new station key would leave every
credential sealed to the old one unreadable. The files themselves are written by
:mod:`lockgate.store.command_keys`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``keys`` and its three commands to the ``lockgate`` command line."""
    keys = subparsers.add_parser(
        "keys", help="make and inspect the keys of signed and sealed commands"
    )
    keys.set_defaults(func=run)
    actions = keys.add_subparsers(dest="keys_action", required=True, metavar="ACTION")

    station = actions.add_parser(
        "station", help="make the station's X25519 keypair; print its public JWK"
    )
    station.add_argument(
        "--out",
        type=Path,
        help="the private key file to make, mode 0600 (default: the configuration's default "
        "[commands] station_key_file)",
    )

    show = actions.add_parser("thumbprint", help="print a key file's RFC 7638 thumbprint")
    show.add_argument("file", type=Path, help="a JWK or PEM key file, public or private")

    backend = actions.add_parser(
        "backend", help="make a backend's Ed25519 signing keypair (tests, field work)"
    )
    backend.add_argument("--out", type=Path, required=True, help="the private key file (0600)")
    backend.add_argument(
        "--public",
        type=Path,
        required=True,
        help="the public key file for the stations' commands.backend_keys (.pem: PEM, else JWK)",
    )


def run(args: argparse.Namespace) -> int:
    """Runs one ``keys`` command; 0 on success, 1 with the reason on stderr."""
    # Imported here, as every command's work is (see lockgate.cli).
    from lockgate.config import CommandsSection  # noqa: PLC0415
    from lockgate.contract.envelope import public_jwk  # noqa: PLC0415
    from lockgate.store.command_keys import (  # noqa: PLC0415
        CommandKeyError,
        create_backend_keypair,
        create_station_jwk,
        thumbprint,
    )

    try:
        if args.keys_action == "station":
            key = create_station_jwk(args.out or CommandsSection().station_key_file)
            sys.stdout.write(json.dumps(public_jwk(key), indent=2) + "\n")
        elif args.keys_action == "thumbprint":
            sys.stdout.write(thumbprint(args.file) + "\n")
        else:
            key = create_backend_keypair(args.out, args.public)
            sys.stdout.write(json.dumps(public_jwk(key), indent=2) + "\n")
    except FileExistsError as err:
        sys.stderr.write(f"lockgate keys: {err.filename} exists; a key file is never overwritten\n")
        return 1
    except (CommandKeyError, OSError) as err:
        sys.stderr.write(f"lockgate keys: {err}\n")
        return 1
    return 0
