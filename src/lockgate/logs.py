"""Structured logs: one event per line, JSON for the journal, readable on a terminal.

:func:`configure` sets structlog up once for a process (the daemon, the simulator, the command
line). Under systemd (stderr is the journal's stream, ``$JOURNAL_STREAM``) each line is JSON with
the journal's conventions: a ``PRIORITY`` field beside ``level`` (the syslog numbers journald
uses: error 3, warning 4, info 6, debug 7), and the same number as a ``<N>`` prefix, which journald
strips and takes as the entry's priority, so ``journalctl -p warning`` works. ``event`` is the
entry's short message. ``station``, ``bike`` and ``command_id`` are bound per task with
:func:`bound` (contextvars), so every line a command causes carries them. A last line of defence
replaces any field whose name says it holds a secret (and a JWK's private ``d``), at any depth,
so that a key or a password that reached a log call by mistake never reaches the journal; the first
line is that credentials never reach a log call (their ``repr`` shows no key byte).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

# Field names that hold a secret, matched whole (lower-cased).
SECRET_FIELDS = frozenset(
    {
        "k_seed",
        "k_u",
        "ltk",
        "phone_id",
        "password",
        "credentials",
        "key",
        "station_key",
        "private_key",
        "jwk_private",
        "passphrase",
        "secret",
        "token",
        "d",  # a JWK's private part (RFC 7517); a field named only "d" is never worth the risk
    }
)
# Name parts that make any field a secret: "mqtt_password", "station_private_key", "client_secret".
SECRET_PARTS = ("password", "passwd", "private", "secret")
REDACTED = "<redacted>"
_DEPTH = 8

# The syslog priorities journald reads (sd-daemon(3)): the level's number.
PRIORITY = {"critical": 2, "error": 3, "exception": 3, "warning": 4, "info": 6, "debug": 7}

bound = structlog.contextvars.bound_contextvars
"""``with bound(station=..., bike=..., command_id=...):`` every line logged inside carries them."""


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return lowered in SECRET_FIELDS or any(part in lowered for part in SECRET_PARTS)


def _scrub(value: Any, depth: int) -> Any:
    if depth >= _DEPTH:
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and is_secret(k) else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub(item, depth + 1) for item in value]
    return value


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every field named like a secret, in nested mappings too."""
    for name in list(event):
        if is_secret(name):
            event[name] = REDACTED
        elif isinstance(event[name], Mapping | list | tuple):
            event[name] = _scrub(event[name], 1)
    return event


def add_priority(
    _logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """``PRIORITY``: the syslog number of the line's level, as journald names it."""
    level = str(event.get("level", method)).lower()
    event["PRIORITY"] = PRIORITY.get(level, 6)
    return event


def under_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journal's: ``$JOURNAL_STREAM`` names its device and inode."""
    environ = os.environ if environ is None else environ
    named = environ.get("JOURNAL_STREAM", "")
    if not named:
        return False
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False  # not a file descriptor (a StringIO): not the journal's stream
    device, _, inode = named.partition(":")
    return f"{info.st_dev}:{info.st_ino}" == f"{device}:{inode}"


class _JournalRenderer:
    """JSON, prefixed by ``<PRIORITY>`` for journald (SyslogLevelPrefix, on by default)."""

    def __init__(self) -> None:
        self._json = structlog.processors.JSONRenderer()

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        priority = event.get("PRIORITY", 6)
        line = self._json(logger, method, event)
        return f"<{priority}>{line.decode() if isinstance(line, bytes) else line}"


def configure(
    *,
    level: str = "INFO",
    json: bool | None = None,
    journal: bool | None = None,
    stream: TextIO | None = None,
) -> None:
    """Log for the journal, as JSON lines, or as coloured lines on a terminal.

    ``journal`` (default: stderr is the journal's stream) means JSON with ``<N>`` priority
    prefixes; ``json`` (default: under the journal, or when the stream is no terminal) means JSON
    lines without them.
    """
    out = stream or sys.stderr
    if journal is None:
        journal = under_journal(out)
    if json is None:
        json = journal or "JOURNAL_STREAM" in os.environ or not out.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_priority,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any
    if journal:
        renderer = _JournalRenderer()
    elif json:
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    # Libraries (bleak, aiomqtt, paho) log through the standard library: the same stream, warnings
    # and up (everything at DEBUG), rendered like every other line (JSON under the journal).
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                *shared,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    # At DEBUG the libraries say everything too (a field engineer chasing a radio fault wants it).
    root.setLevel(min(logging.WARNING, logging.getLevelNamesMapping()[level]))
