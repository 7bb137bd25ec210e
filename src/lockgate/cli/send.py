"""What ``lockgate ctl`` does once its command line is parsed (:mod:`lockgate.cli.ctl`).

It builds the request from the options, and sends it and follows it through the backend client
library (:class:`lockgate.client.StationClient`, which signs it and seals its credentials when
given a key), or watches the station (:mod:`lockgate.cli.watch`). Apart from the parser so that
only ``ctl`` loads the MQTT client and JOSE: the command line is parsed by every command, the
daemon's start among them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import stat
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from lockgate.cli import broker
from lockgate.cli.watch import watch
from lockgate.client import (
    BrokerLostError,
    CannotSealError,
    CommandRefusedError,
    CommandTimedOutError,
    NoAnswerError,
    state_of,
)
from lockgate.contract.request import ID_PATTERN
from lockgate.contract.times import format_time
from lockgate.errors import LockgateError
from lockgate.model import CommandName, CommandState
from lockgate.mqtt.settings import LinkSettings, SettingsError, tls_context
from lockgate.service.exits import Exit
from lockgate.store.command_keys import CommandKeyError, load_signing_key

_NEEDS_USER = frozenset({CommandName.BOOK, CommandName.CANCEL_BOOKING})
_SECRET_OPTIONS = (("k_seed", "--k-seed"), ("k_u", "--k-u"), ("ltk", "--ltk"))


class UsageError(LockgateError):
    """The command line asks for something that cannot be sent (exit 2)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What goes on ``commands``: the request (credentials in it, never shown) and how."""

    request: dict[str, Any] = field(repr=False)
    sign_key: OKPKey | None = field(default=None, repr=False)
    station_key: Mapping[str, Any] | None = None
    seal: bool = False

    @property
    def id(self) -> str:
        return str(self.request["id"])


def run(args: argparse.Namespace) -> int:
    """``lockgate ctl``: one command, or ``watch``."""
    try:
        settings = _settings(args)
        context = tls_context(settings)
    except UsageError as err:
        return _usage(str(err))
    except (SettingsError, OSError, ssl.SSLError) as err:
        return _usage(f"broker settings: {err}")
    if args.action == "watch":
        try:
            asyncio.run(watch(settings, context, as_json=args.json))
        except KeyboardInterrupt:
            return Exit.OK
        except BrokenPipeError:
            _reader_gone()  # ``ctl watch | head``: the reader has what it wanted
        return Exit.OK
    try:
        outgoing = _outgoing(args)
    except UsageError as err:
        return _usage(str(err))
    try:
        return asyncio.run(_send(settings, context, outgoing, args.wait_s))
    except KeyboardInterrupt:
        sys.stderr.write(
            f"\nlockgate ctl: interrupted; command {outgoing.id} may still run at the station\n"
        )
        return 130


def _reader_gone() -> None:
    """Standard output's reader closed it: no more output, and no error at exit for the flush
    of what is still buffered (Python would print one)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _usage(reason: str) -> int:
    sys.stderr.write(f"lockgate ctl: {reason}\n")
    return Exit.USAGE


def _settings(args: argparse.Namespace) -> LinkSettings:
    for option in ("broker", "station"):
        if not getattr(args, option):
            raise UsageError(f"--{option} is required")
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"{args.password_file}: cannot be read ({_why(err)})") from err
    return broker.settings_for(
        args.broker,
        args.station,
        username=args.username,
        password=password,
        ca_file=args.ca_file,
        cert_file=args.cert_file,
        key_file=args.key_file,
        topic_root=args.topic_root,
    )


def _outgoing(args: argparse.Namespace) -> Outgoing:
    """The request the options describe, with every rule a command line can break checked here
    (the station checks them all again)."""
    name = CommandName(args.action)
    command_id = args.id if args.id is not None else uuid.uuid4().hex
    if not ID_PATTERN.match(command_id):
        raise UsageError("--id: must be 1 to 64 of A-Z a-z 0-9 _ -")
    if name in _NEEDS_USER and not args.user_id:
        raise UsageError(f"{name.value} needs --user-id")
    request: dict[str, Any] = {"id": command_id, "command": name.value, "bike": args.bike}
    # Without --timeout-s the request carries no timeout_at (the station's default applies), so
    # that the same command line with the same --id is the same request: a repeat, not a conflict.
    if args.timeout_s is not None:
        lifetime = timedelta(seconds=args.timeout_s)
        request["timeout_at"] = format_time(datetime.now(UTC) + lifetime)
    if args.user_id is not None:
        request["user_id"] = args.user_id
    if getattr(args, "end_rental", False):
        request["end_rental"] = True
    if getattr(args, "reason", None) is not None:
        request["reason"] = args.reason
    if getattr(args, "comment", None) is not None:
        request["comment"] = args.comment
    if getattr(args, "power_cycle", False):
        request["power_cycle"] = True
    credentials = _credentials(args)
    if credentials is not None:
        request["credentials"] = credentials
    sign_key = None
    if args.sign_key is not None:
        try:
            sign_key = load_signing_key(args.sign_key)
        except CommandKeyError as err:
            raise UsageError(f"--sign-key: {err}") from err
    station_key = None if args.station_key is None else _station_key(args.station_key)
    return Outgoing(request, sign_key, station_key, args.seal)


def _credentials(args: argparse.Namespace) -> dict[str, Any] | None:
    given = {
        "K_seed": args.k_seed,
        "K_u": args.k_u,
        "auth_id": args.auth_id,
        "phone_id": args.phone_id,
        "ltk": args.ltk,
    }
    given = {key: value for key, value in given.items() if value is not None}
    on_command_line = [option for attribute, option in _SECRET_OPTIONS if getattr(args, attribute)]
    if on_command_line:
        sys.stderr.write(
            f"lockgate ctl: warning: {', '.join(on_command_line)} on the command line can be read"
            " by every user of this machine (ps, /proc); prefer --credentials-file\n"
        )
    if args.credentials_file is None:
        return given or None
    if given:
        raise UsageError("credentials from options and --credentials-file: give one of them")
    path: Path = args.credentials_file
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: cannot be read ({_why(err)})") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        sys.stderr.write(f"lockgate ctl: warning: {path} is readable by others; chmod 600\n")
    try:
        document = json.loads(text)
    except ValueError:
        # The parser's message would quote the file: only where it broke is told.
        raise UsageError(f"{path}: not valid JSON") from None
    if not isinstance(document, dict):
        raise UsageError(f"{path}: must hold a JSON object of credentials")
    return document


def _station_key(path: Path) -> dict[str, Any]:
    """The station's public JWK from a file (what ``lockgate keys station`` printed)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        key = OKPKey.import_key(document)
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--station-key {path}: cannot be read ({_why(err)})") from err
    except (JoseError, ValueError, TypeError, KeyError) as err:
        raise UsageError(f"--station-key {path}: not an X25519 public JWK") from err
    if key.curve_name != "X25519" or key.is_private:
        raise UsageError(f"--station-key {path}: not an X25519 public JWK")
    return {**key.as_dict(private=False), "kid": key.thumbprint()}


def _why(err: BaseException) -> str:
    return (err.strerror if isinstance(err, OSError) else None) or type(err).__name__


class Progress:
    """The states of the command as they come, on one line: ``NOT_SENT → SENT → …``."""

    def __init__(self, stream: TextIO, outgoing: Outgoing) -> None:
        self._stream = stream
        self._shown = stream.isatty()
        self._last: str | None = None
        self._write(f"{outgoing.request['command']} {outgoing.request['bike']} [{outgoing.id}]:")

    def document(self, document: dict[str, Any]) -> None:
        state = state_of(document)
        if state is None or state == self._last:
            return
        self._write(f" {state}" if self._last is None else f" → {state}")
        self._last = state

    def end(self, note: str = "") -> None:
        self._write(f"{note}\n")

    def _write(self, text: str) -> None:
        if self._shown:
            self._stream.write(text)
            self._stream.flush()


async def _send(
    settings: LinkSettings, context: ssl.SSLContext | None, outgoing: Outgoing, wait_s: float
) -> int:
    progress = Progress(sys.stderr, outgoing)
    client = broker.client_for(
        settings,
        context,
        signing_key=outgoing.sign_key,
        station_key=outgoing.station_key,
        seal=outgoing.seal,
        wait_s=wait_s,
    )
    try:
        async with client:
            final = await client.send(outgoing.request, on_document=progress.document)
    except CommandRefusedError as refused:
        final = refused.document
    except CannotSealError as err:
        progress.end()
        return _usage(f"{err}; give --station-key or leave out --sign-key/--seal")
    except BrokerLostError as err:
        progress.end(" broker lost")
        sys.stderr.write(f"lockgate ctl: lost the broker: {err}\n")
        return Exit.NO_ANSWER
    except (NoAnswerError, CommandTimedOutError) as err:
        progress.end(" no answer")
        sys.stderr.write(f"lockgate ctl: {err}\n")
        return Exit.NO_ANSWER
    if "error_message" in final:  # an error document on ``errors`` for this id
        progress.end(f" {final.get('error_code')}")
    else:
        progress.end()
    try:
        sys.stdout.write(json.dumps(final, indent=2) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()  # ``| head``: the exit code still says how the command ended
    succeeded = state_of(final) == CommandState.SUCCESS
    return Exit.OK if succeeded else Exit.ERROR
