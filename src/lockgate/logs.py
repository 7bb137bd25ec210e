"""Structured logs: one event per line, JSON under systemd, readable on a terminal.

:func:`configure` sets structlog up once for a process (the daemon, the simulator, the command
line). A last line of defence drops any field whose name says it holds a secret, so that a key or a
password that reached a log call by mistake never reaches the journal; the first line is that
credentials never reach a log call (their ``repr`` shows no key byte).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

SECRET_FIELDS = frozenset(
    {"k_seed", "k_u", "ltk", "phone_id", "password", "credentials", "key", "station_key"}
)


def redact(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace the value of every field named like a secret."""
    for name in list(event):
        if name.lower() in SECRET_FIELDS:
            event[name] = "<redacted>"
    return event


def configure(
    *, level: str = "INFO", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Log JSON lines (under systemd, or when asked) or coloured lines on a terminal."""
    out = stream or sys.stderr
    if json is None:
        json = "JOURNAL_STREAM" in os.environ or not out.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )
    # Libraries (bleak, aiomqtt) log through the standard library: same stream, warnings and up.
    logging.basicConfig(
        stream=out, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
