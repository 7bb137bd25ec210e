"""The fields every event shares, stamped in one place (mqtt-contract.md, Events).

Each event carries a fresh ``event_id``, the station's id, position and ``boot_id``, the bike (or
none, for the station's own events), the time, and the cause and command when there are ones.
``seq`` is left at 0 here: the store gives the station's next ``seq`` inside the transaction that
queues the event. The engine's ledger and the store's outbox bound both build events from
:func:`stamp`, so no event can miss a field or spell it differently.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict
from uuid import uuid4

from lockgate.contract.station import Station
from lockgate.model import Cause


class EventStamp(TypedDict):
    """The shared fields, as keyword arguments to any event model."""

    event_id: str
    station: str
    boot_id: str
    seq: int
    bike: str | None
    at: datetime
    cause: Cause | None
    command_id: str | None
    latitude: str
    longitude: str


def stamp(
    station: Station,
    at: datetime,
    *,
    bike: str | None,
    cause: Cause | None = None,
    command_id: str | None = None,
) -> EventStamp:
    """The fields of one new event of ``station`` at ``at``; ``seq`` is the store's to give."""
    return {
        "event_id": str(uuid4()),
        "station": station.id,
        "boot_id": station.boot_id,
        "seq": 0,
        "bike": bike,
        "at": at,
        "cause": cause,
        "command_id": command_id,
        "latitude": station.latitude,
        "longitude": station.longitude,
    }
