"""Times as the MQTT contract writes them: RFC 3339, UTC, milliseconds, ``Z``.

Every document of the contract formats its times here and every request's times are parsed here, so
the one format lives in one place. Parsing is strict (RFC 3339's own grammar, an offset required)
and never raises anything but :class:`ValueError`, even for times that overflow when converted to
UTC (year 1 with a positive offset, year 9999 with a negative one); formatting always writes four
digits of year, so a stored time reads back whatever its year.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import PlainSerializer

# RFC 3339 section 5.6: full-date "T" full-time, with a time offset; any number of fraction digits.
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,32}))?"
    r"(?P<offset>[Zz]|[+-]\d{2}:\d{2})",
    re.ASCII,
)


def format_time(moment: datetime) -> str:
    """``2026-11-22T10:15:03.123Z``; a naive datetime is refused, not guessed."""
    if moment.tzinfo is None:
        raise ValueError("a contract time needs a time zone")
    utc = moment.astimezone(UTC)
    # Not strftime("%Y"): it drops leading zeros before the year 1000, which is not RFC 3339.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
        f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z"
    )


def parse_time(text: str) -> datetime:
    """An RFC 3339 time with an explicit offset (``Z`` or ``±hh:mm``), as an aware UTC datetime;
    :class:`ValueError` for anything else, including a time that has no UTC equivalent."""
    if not isinstance(text, str):
        raise ValueError("not an RFC 3339 date-time")  # noqa: TRY004 - one error for any bad time
    match = _RFC3339.fullmatch(text)
    if match is None:
        if _RFC3339.fullmatch(text + "Z") is not None:
            raise ValueError("an RFC 3339 date-time needs an offset such as Z")
        raise ValueError("not an RFC 3339 date-time")
    fraction = (match["fraction"] or "0")[:6].ljust(6, "0")
    offset = "+00:00" if match["offset"] in ("Z", "z") else match["offset"]
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}.{fraction}{offset}")
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as err:
        raise ValueError("not an RFC 3339 date-time") from err


Timestamp = Annotated[datetime, PlainSerializer(format_time, return_type=str)]
"""A datetime that serialises in the contract's form."""
