"""Times as the MQTT contract writes them: RFC 3339, UTC, milliseconds, ``Z``.

Every document of the contract formats its times here and every request's times are parsed here, so
the one format lives in one place.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer


def format_time(moment: datetime) -> str:
    """``2026-11-22T10:15:03.123Z``; a naive datetime is refused, not guessed."""
    if moment.tzinfo is None:
        raise ValueError("a contract time needs a time zone")
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with an explicit offset (``Z`` or ``±hh:mm``), as an aware UTC datetime."""
    if not isinstance(text, str) or "T" not in text.upper():
        raise ValueError("not an RFC 3339 date-time")
    normalised = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text
    try:
        moment = datetime.fromisoformat(normalised)
    except ValueError as err:
        raise ValueError("not an RFC 3339 date-time") from err
    if moment.tzinfo is None:
        raise ValueError("an RFC 3339 date-time needs an offset such as Z")
    return moment.astimezone(UTC)


Timestamp = Annotated[datetime, PlainSerializer(format_time, return_type=str)]
"""A datetime that serialises in the contract's form."""
