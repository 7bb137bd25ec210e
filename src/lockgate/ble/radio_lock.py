"""One lock as the driver knows it: its link, slot and turn, what it last showed, its health.

The :class:`~lockgate.ble.driver.Driver` keeps one :class:`RadioLock` per registered lock and does
the scheduling across them (slots, connects, the watch and sync tasks). What depends on one lock's
state alone lives here: what a status the lock sent on its own means (a rider's close, an alarm),
and whether its health changed since it was last said. Both return observations and never wait,
so the driver decides when they are handed out.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from lockgate.ble.adapters import RadioAdapter
from lockgate.ble.discovery import LockIdentity
from lockgate.ble.health import HealthTracker, HealthView
from lockgate.ble.link import Chunk, Link
from lockgate.ble.slots import Slot
from lockgate.model import Cause, LockState
from lockgate.protocol.credentials import Credentials
from lockgate.protocol.errors import ProtocolError
from lockgate.protocol.gatt import Channel
from lockgate.protocol.indications import GdioReader, StatusIndicated
from lockgate.protocol.session import Session
from lockgate.protocol.status import Status, meaning_of
from lockgate.radio import (
    HealthObserved,
    Observation,
    Operation,
    Outcome,
    Reading,
    ReadingObserved,
    Result,
    StateObserved,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class KeptSession:
    """A link's authorised session, kept after an operation that ended well: the lock keeps the
    link authorised until a new IV (docs/protocol.md), so the next operation on the same link
    with the same credentials goes straight to its command."""

    link: Link
    credentials: Credentials
    session: Session


@dataclass(eq=False)
class RadioLock:
    """The driver's state for one lock.

    ``mutex`` is the lock's turn: whoever holds it owns the link and reads its chunks. Operations
    take it in the order they arrive (asyncio.Lock is first come, first served); the watch takes
    it between operations and gives it up as soon as an operation waits (``waiting``).
    """

    identity: LockIdentity
    health: HealthTracker
    mutex: asyncio.Lock = field(default_factory=asyncio.Lock)
    lock_state: LockState = LockState.UNKNOWN
    standing: Credentials | None = None
    link: Link | None = None
    slot: Slot | None = None
    adapter: RadioAdapter | None = None
    """The adapter the link goes through (whose slot it holds)."""
    waiting: int = 0
    """Operations waiting for the lock's turn."""
    operation_waits: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while ``waiting`` is above zero: the watch's cue to step aside."""
    watcher: asyncio.Task[None] | None = None
    listening: bool = False
    gdio: GdioReader = field(default_factory=GdioReader)
    last_attempt: datetime | None = None
    recheck: bool = False
    """An operation ended without knowing where the bolt is (cancelled, timed out, link lost
    mid-motion): the sync loop reads the lock at its next tick instead of waiting an interval."""
    last_view: HealthView | None = None
    kept_session: KeptSession | None = None
    ready: bool = False
    """Kept ready for an unlock (a booked bike, ``keep_booked_ready``): linked and authorised
    with the provisioned credentials while a slot allows."""
    ready_ended: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when ``ready`` goes: the watch's cue to look again whether to keep the link."""

    def session_for(self, link: Link, credentials: Credentials) -> Session | None:
        """The kept session, if it is of this very link and these credentials."""
        kept = self.kept_session
        if kept is None or kept.link is not link or kept.credentials != credentials:
            return None
        return kept.session

    @property
    def bike(self) -> str:
        return self.identity.bike

    @property
    def linked(self) -> bool:
        return self.link is not None and not self.link.lost.is_set()

    def credentials_for(
        self, operation: Operation, credentials: Credentials | None
    ) -> Credentials | Result | None:
        """The credentials an operation runs with (the command's, else the standing ones), or
        the result that ends it at once: none where a motion needs them, or another profile's."""
        credentials = credentials or self.standing
        if operation is not Operation.READ and credentials is None:
            return Result(
                Outcome.MISSING_CREDENTIALS,
                f"no credentials for {self.bike}: send them with the command or provision them",
            )
        if credentials is not None and credentials.profile is not self.identity.profile:
            return Result(
                Outcome.MISSING_CREDENTIALS,
                f"{self.bike} is a {self.identity.profile} lock; the credentials are "
                f"{credentials.profile}",
            )
        return credentials

    def heard(self, chunk: Chunk, now: datetime) -> list[Observation]:
        """What a chunk the lock sent on a watched link says: an alarm, a state a rider caused,
        and the health that follows from having heard the lock at all."""
        channel, data = chunk
        if channel is not Channel.GDIO:
            return []
        try:
            indication = self.gdio.feed(data)
        except ProtocolError as err:
            log.warning("bad frame from watched lock", bike=self.bike, error=str(err))
            return []
        if not isinstance(indication, StatusIndicated):
            return []  # nothing complete yet, or an IV no session asked for
        status = indication.status
        if not isinstance(status, Status):
            log.info("unrecognised status from lock", bike=self.bike, status=status)
            return []
        meaning = meaning_of(status)
        self.health.reached(now, meaning.hardware_state)
        seen: list[Observation] = []
        if status in (Status.ALARM_ON, Status.ALARM_OFF):
            seen.append(ReadingObserved(self.bike, Reading(alarm=status is Status.ALARM_ON), now))
        if meaning.lock_state is not None and meaning.lock_state is not self.lock_state:
            self.lock_state = meaning.lock_state
            seen.append(StateObserved(self.bike, meaning.lock_state, Cause.MANUAL, now))
        if (health := self.health_change(now)) is not None:
            seen.append(health)
        return seen

    def health_change(self, now: datetime) -> HealthObserved | None:
        """The lock's health, if it differs from what was last said (nothing before a first try)."""
        if not self.health.known:
            return None
        view = self.health.view(now)
        last = self.last_view
        if last is not None and (last.health, last.hardware_state) == (
            view.health,
            view.hardware_state,
        ):
            return None
        self.last_view = view
        return HealthObserved(
            self.bike, view.health, view.hardware_state, view.last_seen, view.dead_since, now
        )


def merge_readings(old: Reading, new: Reading) -> Reading:
    """``new`` over ``old``, field by field, where ``new`` knows something."""
    return Reading(
        lock_state=new.lock_state if new.lock_state is not None else old.lock_state,
        battery=new.battery if new.battery is not None else old.battery,
        firmware=new.firmware if new.firmware is not None else old.firmware,
        rssi=new.rssi if new.rssi is not None else old.rssi,
        alarm=new.alarm if new.alarm is not None else old.alarm,
    )
