"""The simulated radio's link layer: connection events, ATT round trips, advertisements, loss.

Pure bookkeeping in lock seconds (no asyncio, no D-Bus): the BlueZ front (:mod:`.bluez.device`,
:mod:`.bluez.radio`) asks when an ATT exchange ends and waits for that time on the world's clock.
docs/simulator.md ("The link layer") says what each exchange costs and why.

A link's connection events come every ``connection_interval`` from its anchor (the moment the
lock's advertisement was answered). An exchange waits for the next event boundary and takes one
interval: a request (write with response, read, a CCCD write, the MTU exchange, each of GATT
discovery's requests) goes out in one event and its response comes in the next; an indication
goes out in one event and its confirmation comes in the next. ATT allows one outstanding request
from the client and one outstanding indication from the server at a time, so each direction is a
queue of its own; the two directions share connection events. A lost packet is sent again in
the next event: one interval more. With ``connection_interval`` 0 (the default) every exchange
ends at once, as the simulator always answered; the counts are kept all the same.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from enum import Enum

from lockgate.protocol import gatt

EPSILON_S = 1e-9
"""Float slack when a time is compared with an event boundary."""
DEFAULT_SUPERVISION_TIMEOUT_MS = 420
"""Linux's default LE supervision timeout for the links it makes (``le_supv_timeout`` 0x002a,
in units of 10 ms): used where the link layer is on and the world names none."""


class Exchange(Enum):
    """What an ATT round trip on a link is for."""

    WRITE = "writes"
    """A Write Request (a write with response) to a characteristic's value."""
    READ = "reads"
    CCCD = "cccd_writes"
    """A Write Request to a Client Characteristic Configuration (StartNotify, StopNotify)."""
    MTU = "mtu_exchanges"
    DISCOVERY = "discovery"
    INDICATION = "indications"


@dataclass(slots=True)
class AttCounts:
    """ATT round trips and connection events, of one link or summed over a lock's links."""

    writes: int = 0
    """Write Requests to GDIO, USDIO or any characteristic value (each chunk is one)."""
    reads: int = 0
    """Read Requests (battery level, firmware revision, ...)."""
    indications: int = 0
    """Indications the lock sent and the central confirmed."""
    cccd_writes: int = 0
    """Writes to a Client Characteristic Configuration descriptor (notifications on or off)."""
    mtu_exchanges: int = 0
    """Exchange MTU requests (bluetoothd sends one at every connect)."""
    discovery: int = 0
    """GATT discovery's requests (first connect through an adapter only: then its cache)."""
    lost_packets: int = 0
    """Packets lost and sent again in the next connection event."""
    intervals: int = 0
    """Connection intervals charged to the exchanges: one per round trip, one per lost packet."""
    connection_events: int = 0
    """Connection events the link ran, from its anchor to its end (or to now), if the link
    layer is on; 0 with ``connection_interval_ms`` 0."""

    @property
    def round_trips(self) -> int:
        """Every ATT round trip: requests of either kind and confirmed indications."""
        return (
            self.writes
            + self.reads
            + self.indications
            + self.cccd_writes
            + self.mtu_exchanges
            + self.discovery
        )


@dataclass(slots=True)
class RadioCounts:
    """One lock's ATT traffic: summed over every link, and of its current (or last) link."""

    links: int = 0
    """Links the lock held (each connect that got as far as a link)."""
    total: AttCounts = field(default_factory=AttCounts)
    link: AttCounts = field(default_factory=AttCounts)
    """The current link's, or the last one's once it ended; all zero before the first."""

    @classmethod
    def from_dict(cls, document: dict[str, object]) -> RadioCounts:
        total, link = document["total"], document["link"]
        assert isinstance(total, dict)
        assert isinstance(link, dict)
        links = document["links"]
        assert isinstance(links, int)
        return cls(links=links, total=AttCounts(**total), link=AttCounts(**link))


@dataclass(slots=True)
class LinkSettings:
    """One lock's link-layer parameters (its world keys, or ``[adapter]``'s defaults).

    A new link takes the connection interval in force when it starts (a link's interval changes
    only by a connection update, which the simulator does not play); the others apply at once.
    """

    connection_interval_ms: float = 0.0
    adv_interval_ms: float = 0.0
    packet_loss: float = 0.0
    """The chance that one packet of an exchange is lost, 0..0.9."""
    supervision_timeout_ms: float | None = None
    """``None``: Linux's 420 ms where the link layer is on, else 0 (a lost link seen at once)."""
    random: random.Random = field(default_factory=random.Random)
    """Seeded per lock: the same world and seed lose the same packets."""

    @property
    def supervision_timeout_s(self) -> float:
        if self.supervision_timeout_ms is not None:
            return self.supervision_timeout_ms / 1000
        if self.connection_interval_ms > 0:
            return DEFAULT_SUPERVISION_TIMEOUT_MS / 1000
        return 0.0

    def next_advertisement(self, name: str, now: float) -> float:
        """The lock's first advertising event at or after ``now`` (lock seconds).

        A lock advertises every ``adv_interval_ms`` from a phase of its own (fixed per name, so
        that the locks of a station do not all advertise at once); a connect waits for it.
        """
        interval = self.adv_interval_ms / 1000
        if interval <= 0:
            return now
        phase = (zlib.crc32(name.encode()) % 1000) / 1000 * interval
        events = math.ceil((now - phase) / interval - EPSILON_S)
        return phase + max(0, events) * interval

    def lost(self) -> bool:
        return self.packet_loss > 0 and self.random.random() < self.packet_loss


class AirLink:
    """One link's connection events and its two ATT queues (the central's requests, the lock's
    indications), counting into the lock's :class:`RadioCounts`."""

    def __init__(self, settings: LinkSettings, anchor: float, counts: RadioCounts) -> None:
        self.settings = settings
        self.interval = settings.connection_interval_ms / 1000
        self.anchor = anchor
        self.counts = counts
        self.silent = False
        """The lock went out of range: nothing more goes through; the link ends only when the
        supervision timeout has passed."""
        self.ended_at: float | None = None
        self._requests_free = anchor
        self._indications_free = anchor
        self._answers: list[float] = []
        """The events the lock's answers to requests go out in (not yet past): one ATT packet
        each way per event, so an indication does not go out in one of them."""
        counts.links += 1
        counts.link = AttCounts()

    def next_event(self, when: float) -> float:
        """The first connection event at or after ``when``."""
        if self.interval <= 0:
            return when
        events = math.ceil((when - self.anchor) / self.interval - EPSILON_S)
        return self.anchor + max(0, events) * self.interval

    def _exchange(self, start: float, kind: Exchange) -> float:
        """One round trip that may start at ``start``: when its answer comes."""
        event = self.next_event(start)
        intervals = 1
        while self.settings.lost():
            intervals += 1
            self._count("lost_packets", 1)
        self._count(kind.value, 1)
        self._count("intervals", intervals if self.interval > 0 else 0)
        return event + intervals * self.interval

    def request(self, now: float, kind: Exchange, count: int = 1) -> float:
        """``count`` requests of the central, one after the other: when the last is answered."""
        done = max(now, self._requests_free)
        for _ in range(count):
            done = self._exchange(done, kind)
            if self.interval > 0:
                self._answers.append(done)
        self._requests_free = done
        return done

    def indicate(self, now: float) -> float:
        """One indication of the lock: when the central receives it (the event it goes out in).

        It goes out in the first event at or after ``now`` in which the lock sends nothing else:
        not the event of an answer to a request (one ATT packet each way per event), so an
        indication a write causes goes out in the event after the write's answer, whatever
        moment within that event the lock is given the write. Its confirmation comes one
        interval later; the next indication waits for that."""
        sent = self.next_event(max(now, self._indications_free))
        self._answers = [a for a in self._answers if a > sent - EPSILON_S]
        while any(abs(a - sent) < EPSILON_S for a in self._answers):
            sent += self.interval
        self._indications_free = self._exchange(sent, Exchange.INDICATION)
        return self._indications_free - self.interval

    def events(self, now: float) -> int:
        """Connection events from the anchor to the link's end (or ``now``)."""
        if self.interval <= 0:
            return 0
        end = self.ended_at if self.ended_at is not None else now
        return max(0, math.floor((end - self.anchor) / self.interval + EPSILON_S)) + 1

    def end(self, now: float) -> None:
        if self.ended_at is None:
            self.ended_at = now
            self.counts.total.connection_events += self.events(now)
            self.counts.link.connection_events = self.events(now)

    def _count(self, name: str, amount: int) -> None:
        for counts in (self.counts.total, self.counts.link):
            setattr(counts, name, getattr(counts, name) + amount)


# --- GATT discovery ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Characteristic:
    declaration: int
    """Its declaration's handle; the value's is the next."""
    uuid_bytes: int
    descriptors: int
    """Descriptors after the value (a CCCD for those that notify or indicate)."""


@dataclass(frozen=True, slots=True)
class Service:
    start: int
    end: int
    uuid_bytes: int
    """2 for a 16-bit UUID, 16 for a 128-bit one."""
    characteristics: tuple[Characteristic, ...]


@dataclass(frozen=True, slots=True)
class DiscoveryCost:
    """The round trips of a full discovery of one attribute table, by kind of request."""

    primary: int
    """Read By Group Type (Primary Service), until Attribute Not Found."""
    secondary: int
    """Read By Group Type (Secondary Service): Attribute Not Found at once."""
    included: int
    """Read By Type (Include) in each service: Attribute Not Found."""
    characteristics: int
    """Read By Type (Characteristic) in each service, until Attribute Not Found."""
    descriptors: int
    """Find Information after each characteristic value with room for descriptors."""

    @property
    def total(self) -> int:
        return (
            self.primary + self.secondary + self.included + self.characteristics + self.descriptors
        )


def _responses(entries: list[int], per_entry: dict[int, int], mtu: int) -> int:
    """Responses that carry ``entries`` (each its entry length's key): a response holds at most
    ``(mtu - 2) // length`` entries of one length."""
    responses, index = 0, 0
    while index < len(entries):
        length = per_entry[entries[index]]
        room = (mtu - 2) // length
        taken = 1
        while taken < room and index + taken < len(entries):
            if per_entry[entries[index + taken]] != length:
                break
            taken += 1
        index += taken
        responses += 1
    return responses


def discovery_cost(table: tuple[Service, ...], mtu: int = gatt.ATT_MTU) -> DiscoveryCost:
    """What discovering ``table`` costs at ``mtu``, one request per round trip.

    A search ends with Attribute Not Found, except where the last attribute found is the last
    of the range searched (bluetoothd then asks no more).
    """
    services = sorted(table, key=lambda s: s.start)
    lengths = {2: 6, 16: 20}  # Read By Group Type: handle, end group handle, UUID
    primary = _responses([s.uuid_bytes for s in services], lengths, mtu)
    if not services or services[-1].end != 0xFFFF:
        primary += 1
    characteristics = 0
    descriptors = 0
    char_lengths = {2: 7, 16: 21}  # Read By Type: handle, properties, value handle, UUID
    for service in services:
        chars = sorted(service.characteristics, key=lambda c: c.declaration)
        characteristics += _responses([c.uuid_bytes for c in chars], char_lengths, mtu)
        # The last declaration found is never the service's last handle (its value follows).
        characteristics += 1
        for char in chars:
            if char.descriptors:
                # Find Information, 16-bit UUIDs: 4 bytes an entry; the range ends with the
                # last descriptor, so no Attribute Not Found after it.
                descriptors += math.ceil(char.descriptors / ((mtu - 2) // 4))
    return DiscoveryCost(
        primary=primary,
        secondary=1,
        included=len(services),
        characteristics=characteristics,
        descriptors=descriptors,
    )
