"""The wall clock, in one place.

Every layer takes time as an argument (a ``clock`` callable) so that tests control it; this is the
one a running gateway passes. It imports nothing of the project, so any layer may use it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    """Now, in UTC, timezone-aware."""
    return datetime.now(UTC)
