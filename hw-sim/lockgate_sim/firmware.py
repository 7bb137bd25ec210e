"""The simulated lock's firmware: the lock side of docs/protocol.md, with no D-Bus, no clock.

The heart of hw-sim. The BlueZ front (:mod:`lockgate_sim.bluez`) turns D-Bus calls into calls
on a :class:`Lock` and turns the :data:`Effect` values it returns into PropertiesChanged signals and
dropped links. Time comes in as an argument (``now``, in the lock's own seconds, before any
``time_scale``) and randomness as a ``random_bytes(n)`` callable, so that tests feed the vectors' IV
and nonce and get the lock's frames byte for byte. Timed things (the motor, the link a failed
authorisation drops) become deadlines: the front calls :meth:`Lock.advance` once
:meth:`Lock.next_deadline` has passed.

Frames, CRC, cipher and credentials come from the protocol core (:mod:`lockgate.protocol`); only the
lock's decisions live here. It stays one module (about 540 lines) because both profiles' sessions
and the motor share one lock state machine, which reads best in one place.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from lockgate.protocol.credentials import Credentials
from lockgate.protocol.errors import ChecksumError, FrameError
from lockgate.protocol.frames import (
    USDIO_MIN_LENGTH,
    GdioCommand,
    GdioItem,
    GdioRequest,
    LockAction,
    ReadItem,
    Reassembler,
    UsdioCommand,
    UsdioMessage,
    chunks,
    iv_frame,
    status_frame,
    wire_auth_id,
)
from lockgate.protocol.gatt import Channel
from lockgate.protocol.status import Status

RandomBytes = Callable[[int], bytes]

MAX_LINKS = 3
"""Links a lock accepts at once (published)."""
NONCE_LENGTH = 32
IV_LENGTH = 16
FAILURE_DROP_S = 0.5
"""A lock that answers a failed authorisation drops the link within a second (defined here)."""
HAND_TRAVEL_S = 0.3
"""How long a bolt pushed (or springing) by hand takes between its two status indications."""
BATTERY_DRAIN_PER_MOTION = 0.1
"""Percent of charge each motor run costs: a cell lasts about a thousand motions."""
BATTERY_LOW_PERCENT = 15
CONFIG_OPEN = 0x0B
CONFIG_CLOSED = 0x02
CONFIG_UNKNOWN = 0x0F


class Bolt(StrEnum):
    """Where the bolt is. A motion in progress keeps the position it started from until it ends."""

    OPEN = "unlocked"
    CLOSED = "locked"


class NoFreeLink(Exception):  # noqa: N818 - a condition of the lock, named as the lock says it
    """The lock already holds :data:`MAX_LINKS` links."""


# --- effects ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Indication:
    """One chunk (at most 20 bytes) that the lock indicates on ``channel`` of ``link``."""

    link: int
    channel: Channel
    chunk: bytes


@dataclass(frozen=True, slots=True)
class LinkDropped:
    """The lock ends ``link`` (after a failed authorisation, a power cycle, or loss of range)."""

    link: int
    reason: str


@dataclass(frozen=True, slots=True)
class BatteryChanged:
    """The battery's whole percentage changed: the Battery Level characteristic notifies it."""

    percent: int


Effect = Indication | LinkDropped | BatteryChanged


# --- the lock's parts ---------------------------------------------------------------------------


@dataclass(slots=True)
class Link:
    """One connection to the lock, with its own session: IV, nonce, authorisation, counter."""

    id: int
    indicating: set[Channel] = field(default_factory=set)
    usdio: Reassembler = field(default_factory=lambda: Reassembler(USDIO_MIN_LENGTH))
    iv: bytes | None = None
    nonce: bytes | None = None
    authorised: bool = False
    counter: int = 0
    failed: bool = False


@dataclass(slots=True)
class Motion:
    """The motor (or a hand) moving the bolt towards ``target``; ``blocked`` if it will jam."""

    target: Bolt
    ends_at: float
    blocked: bool
    by_hand: bool
    started_at: float


class Deadline(Enum):
    """What a timer of the lock is for."""

    MOTION_ENDS = "motion ends"
    DROP_LINK = "drop link"


@dataclass(frozen=True, slots=True, order=True)
class _Timer:
    due: float
    order: int
    what: Deadline
    link: int = 0


@dataclass(frozen=True, slots=True)
class LockView:
    """What the control interface shows of one lock."""

    name: str
    address: str
    profile: str
    bolt: str
    moving: str | None
    battery: int
    rssi: int
    in_range: bool
    links: int
    motor_ms: int
    connect_ms: int
    jams_pending: int
    refuse_connects: int
    alarm: bool
    bike_moving: bool
    sensor_fault: bool
    firmware: str
    motor_opened: int = 0
    """Motions the motor completed to open the bolt."""
    motor_closed: int = 0
    commanded_open: int = 0
    """Authorised open commands the lock accepted, whether the bolt had to move or not (a test's
    "no unlock twice" counts these)."""
    commanded_close: int = 0
    # What the lock really spent (:mod:`lockgate_sim.timings`): the station measures it on the
    # bus, so the firmware's own view leaves these at their defaults.
    connects: int = 0
    connect_s_total: float = 0.0
    last_connect_s: float | None = None
    motions: int = 0
    motion_s_total: float = 0.0
    last_motion_s: float | None = None
    # Where the lock is heard (the station knows its adapters; the firmware does not).
    rssi_by_adapter: dict[str, int] = field(default_factory=dict)
    """Adapter name → the RSSI it hears the lock at, where it differs from ``rssi``."""
    out_of_range_of: tuple[str, ...] = ()
    """Adapters that do not hear the lock (besides all of them when ``in_range`` is false)."""
    connected_via: str | None = None
    """The adapter holding the lock's link, if one does."""


class Lock:
    """One Ilockit lock's firmware, from the lock's side of the protocol."""

    def __init__(
        self,
        *,
        name: str,
        address: str,
        credentials: Credentials,
        random_bytes: RandomBytes,
        bolt: Bolt = Bolt.CLOSED,
        battery: float = 100.0,
        firmware: str = "2.18",
        rssi: int = -60,
        motor_ms: int = 1000,
        connect_ms: int = 250,
        disconnect_ms: int = 0,
        in_range: bool = True,
    ) -> None:
        self.name = name
        self.address = address
        self.credentials = credentials
        self.firmware = firmware
        self.rssi = rssi
        self.motor_ms = motor_ms
        self.connect_ms = connect_ms
        self.disconnect_ms = disconnect_ms
        self.in_range = in_range
        self.refuse_connects = 0
        self.alarm = False
        self.bike_moving = False
        self.sensor_fault = False
        self._random_bytes = random_bytes
        self._bolt = bolt
        self._battery = float(battery)
        self._motion: Motion | None = None
        self._jams = 0
        self._motor_runs = {Bolt.OPEN: 0, Bolt.CLOSED: 0}
        self._commanded = {Bolt.OPEN: 0, Bolt.CLOSED: 0}
        self._links: dict[int, Link] = {}
        self._link_ids = itertools.count(1)
        self._timers: list[_Timer] = []
        self._timer_order = itertools.count()

    def __repr__(self) -> str:
        return f"Lock({self.name}, {self._bolt.value}, links={len(self._links)})"

    # --- state --------------------------------------------------------------------------------

    @property
    def bolt(self) -> Bolt:
        return self._bolt

    @property
    def motion(self) -> Motion | None:
        return self._motion

    @property
    def battery(self) -> int:
        """Whole percent, rounded up: a fresh 87 % stays 87 for the first few motions."""
        return max(0, min(100, math.ceil(self._battery - 1e-9)))

    @property
    def links(self) -> tuple[int, ...]:
        return tuple(self._links)

    def view(self) -> LockView:
        return LockView(
            name=self.name,
            address=self.address,
            profile=str(self.credentials.profile),
            bolt=self._bolt.value,
            moving=None if self._motion is None else self._motion.target.value,
            battery=self.battery,
            rssi=self.rssi,
            in_range=self.in_range,
            links=len(self._links),
            motor_ms=self.motor_ms,
            connect_ms=self.connect_ms,
            jams_pending=self._jams,
            alarm=self.alarm,
            bike_moving=self.bike_moving,
            sensor_fault=self.sensor_fault,
            refuse_connects=self.refuse_connects,
            firmware=self.firmware,
            motor_opened=self._motor_runs[Bolt.OPEN],
            motor_closed=self._motor_runs[Bolt.CLOSED],
            commanded_open=self._commanded[Bolt.OPEN],
            commanded_close=self._commanded[Bolt.CLOSED],
        )

    # --- links --------------------------------------------------------------------------------

    def connect(self) -> int:
        """Accept a new link and return its id; :class:`NoFreeLink` when 3 are held."""
        if len(self._links) >= MAX_LINKS:
            raise NoFreeLink(f"{self.name} already holds {MAX_LINKS} links")
        link = Link(next(self._link_ids))
        self._links[link.id] = link
        return link.id

    def disconnect(self, link: int) -> None:
        """The link ended (the app left, or the lock dropped it); an unknown id is ignored."""
        self._links.pop(link, None)

    def set_indications(self, link: int, channel: Channel, *, on: bool) -> None:
        held = self._links.get(link)
        if held is None:
            return
        if on:
            held.indicating.add(channel)
        else:
            held.indicating.discard(channel)

    # --- writes from the app ------------------------------------------------------------------

    def write(self, link: int, channel: Channel, chunk: bytes, now: float) -> list[Effect]:
        """Take one written chunk (at most 20 bytes) and return what the lock does about it."""
        held = self._links.get(link)
        if held is None or held.failed:
            return []
        if channel is Channel.GDIO:
            return self._on_gdio(held, chunk)
        try:
            frame = held.usdio.feed(chunk)
        except FrameError:
            return self._refuse(held, Status.GENERAL_ERROR, now)
        if frame is None:
            return []
        return self._on_usdio(held, frame, now)

    def _on_gdio(self, link: Link, frame: bytes) -> list[Effect]:
        try:
            request = GdioRequest.decode(frame)
        except ChecksumError:
            return self._status(link, Status.CRC_ERROR)
        except FrameError:
            return self._status(link, Status.GENERAL_ERROR)
        if request != GdioRequest(GdioCommand.READ, GdioItem.IV):
            return self._status(link, Status.GENERAL_ERROR)
        # A new IV starts a new session on this link: it ends any earlier authorisation.
        link.iv = self._random_bytes(IV_LENGTH)
        link.nonce = None
        link.authorised = False
        link.counter = 0
        link.usdio.reset()
        return self._indicate(link, Channel.GDIO, iv_frame(link.iv).encode())

    def _on_usdio(self, link: Link, frame: bytes, now: float) -> list[Effect]:
        try:
            auth_id = wire_auth_id(frame)
        except FrameError:
            return self._refuse(link, Status.GENERAL_ERROR, now)
        if auth_id != self.credentials.auth_id:
            return self._refuse(link, Status.WRONG_AUTH_ID, now)
        if link.iv is None:
            return self._refuse(link, Status.NOT_AUTHORISED, now)
        try:
            message = UsdioMessage.decrypt(frame, self.credentials.key, link.iv)
        except FrameError:
            # A wrong key decrypts to bytes whose length, padding or CRC do not hold: the lock
            # cannot tell that from corruption and says CRC error.
            return self._refuse(link, Status.CRC_ERROR, now)
        command, payload = message.command, message.payload
        if command == UsdioCommand.READ and payload == ReadItem.CHALLENGE.to_bytes(2, "little"):
            link.nonce = self._random_bytes(NONCE_LENGTH)
            link.authorised = False
            return self._reply(link, UsdioCommand.CHALLENGE, link.nonce)
        if command == UsdioCommand.ANSWER:
            return self._on_answer(link, payload, now)
        if not link.authorised:
            return self._status(link, Status.NOT_AUTHORISED)
        if command == UsdioCommand.LOCK_CONTROL:
            return self._on_lock_control(link, payload, now)
        if command == UsdioCommand.READ and payload == ReadItem.BATTERY.to_bytes(2, "little"):
            return self._reply(link, UsdioCommand.BATTERY, bytes((self.battery,)))
        if command == UsdioCommand.READ and payload == ReadItem.CONFIG.to_bytes(2, "little"):
            state = CONFIG_OPEN if self._bolt is Bolt.OPEN else CONFIG_CLOSED
            if self.sensor_fault:
                state = CONFIG_UNKNOWN
            return self._reply(link, UsdioCommand.CONFIG, bytes((state, int(self.alarm))))
        return self._status(link, Status.GENERAL_ERROR)

    def _on_answer(self, link: Link, payload: bytes, now: float) -> list[Effect]:
        expected = None if link.nonce is None else link.nonce + self.credentials.identity
        link.nonce = None  # a nonce answers one challenge only
        if expected is None or payload != expected:
            return self._refuse(link, Status.AUTH_FAILED, now)
        link.authorised = True
        link.counter = 0
        return self._status(link, Status.AUTHORISED)

    def _on_lock_control(self, link: Link, payload: bytes, now: float) -> list[Effect]:
        if len(payload) != 3 or payload[2] not in (LockAction.OPEN, LockAction.CLOSE):
            return self._status(link, Status.GENERAL_ERROR)
        counter = int.from_bytes(payload[0:2], "little")
        if counter <= link.counter:
            return self._status(link, Status.WRONG_COUNTER)
        link.counter = counter
        target = Bolt.OPEN if payload[2] == LockAction.OPEN else Bolt.CLOSED
        self._commanded[target] += 1
        if self._motion is not None:
            return self._status(link, Status.GENERAL_ERROR)
        if target is Bolt.CLOSED and self.bike_moving:
            # The lock will not shoot its bolt into a turning wheel.
            return self._status(link, Status.LOCK_MOVED)
        if target is self._bolt:
            # Already there: the lock reports its position without running the motor.
            return self._broadcast(self._final_status(target))
        return self._start_motion(target, now, by_hand=False)

    # --- the physical world -------------------------------------------------------------------

    def close_by_hand(self, now: float) -> list[Effect]:
        """A rider pushes the bolt shut: connected links see locking, then closed, unprompted."""
        if self._bolt is Bolt.CLOSED or self._motion is not None:
            return []
        return self._start_motion(Bolt.CLOSED, now, by_hand=True)

    def open_by_hand(self, now: float) -> list[Effect]:
        """The bolt springs open (a fault, or a mechanic's key)."""
        if self._bolt is Bolt.OPEN or self._motion is not None:
            return []
        return self._start_motion(Bolt.OPEN, now, by_hand=True)

    def set_alarm(self, on: bool) -> list[Effect]:
        """The alarm (a tilt or a tug at the lock) goes on or off, indicated to every link."""
        if on == self.alarm:
            return []
        self.alarm = on
        return self._broadcast(Status.ALARM_ON if on else Status.ALARM_OFF)

    def set_bike_moving(self, moving: bool) -> None:
        """While the bike moves, a close command is refused with "closing refused, lock moved"."""
        self.bike_moving = moving

    def set_sensor_fault(self, fault: bool) -> None:
        """A bolt sensor that fails: motions end in, and config reads report, "unknown"."""
        self.sensor_fault = fault

    def deauthorise(self) -> None:
        """Every link's authorisation ends (the links stay up): a command on one is refused
        with "not authorised" until a new session authorises it."""
        for link in self._links.values():
            link.authorised = False

    def jam(self, count: int = 1) -> None:
        """The next ``count`` motor runs block: the bolt stays where it is."""
        self._jams = max(0, count)

    def set_battery(self, percent: int) -> list[Effect]:
        before = self.battery
        self._battery = float(max(0, min(100, percent)))
        return [BatteryChanged(self.battery)] if self.battery != before else []

    def drop_links(self, reason: str) -> list[Effect]:
        """End every link at once (power cycle, out of range, or the control interface)."""
        dropped: list[Effect] = [LinkDropped(link, reason) for link in self._links]
        self._links.clear()
        self._timers = [t for t in self._timers if t.what is not Deadline.DROP_LINK]
        heapq.heapify(self._timers)
        return dropped

    def power_cycle(self) -> list[Effect]:
        """The lock reboots: links end, the motor stops where it is, pending jams are forgotten."""
        effects = self.drop_links("power cycle")
        self._motion = None
        self._jams = 0
        self._timers.clear()
        return effects

    # --- time ---------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self._timers[0].due if self._timers else None

    def advance(self, now: float) -> list[Effect]:
        """Run everything due by ``now``: motions that end, links that a failure drops."""
        effects: list[Effect] = []
        while self._timers and self._timers[0].due <= now:
            timer = heapq.heappop(self._timers)
            if timer.what is Deadline.DROP_LINK:
                if timer.link in self._links:
                    del self._links[timer.link]
                    effects.append(LinkDropped(timer.link, "authorisation failed"))
            elif timer.what is Deadline.MOTION_ENDS:
                effects += self._end_motion()
        return effects

    # --- internals ----------------------------------------------------------------------------

    def _start_motion(self, target: Bolt, now: float, *, by_hand: bool) -> list[Effect]:
        blocked = not by_hand and self._jams > 0
        if blocked:
            self._jams -= 1
        duration = HAND_TRAVEL_S if by_hand else self.motor_ms / 1000
        self._motion = Motion(target, now + duration, blocked, by_hand, started_at=now)
        self._schedule(now + duration, Deadline.MOTION_ENDS)
        return self._broadcast(Status.UNLOCKING if target is Bolt.OPEN else Status.LOCKING)

    def _end_motion(self) -> list[Effect]:
        motion, self._motion = self._motion, None
        if motion is None:
            return []
        effects: list[Effect] = []
        if not motion.by_hand:
            before = self.battery
            self._battery = max(0.0, self._battery - BATTERY_DRAIN_PER_MOTION)
            if self.battery != before:
                effects.append(BatteryChanged(self.battery))
        if motion.blocked:
            status = (
                Status.UNLOCKING_BLOCKED if motion.target is Bolt.OPEN else Status.LOCKING_BLOCKED
            )
            return self._broadcast(status) + effects
        self._bolt = motion.target
        if not motion.by_hand:
            self._motor_runs[motion.target] += 1
        effects = self._broadcast(self._final_status(motion.target)) + effects
        if not motion.by_hand and self.battery <= BATTERY_LOW_PERCENT:
            effects += self._broadcast(Status.BATTERY_LOW)
        return effects

    def _final_status(self, target: Bolt) -> Status:
        if self.sensor_fault:
            return Status.UNKNOWN
        return Status.OPEN if target is Bolt.OPEN else Status.CLOSED

    def _schedule(self, due: float, what: Deadline, link: int = 0) -> None:
        heapq.heappush(self._timers, _Timer(due, next(self._timer_order), what, link))

    def _refuse(self, link: Link, status: Status, now: float) -> list[Effect]:
        """A failure before authorisation: say why, then drop the link."""
        if link.authorised:
            return self._status(link, status)
        return self._fail(link, status, now)

    def _fail(self, link: Link, status: Status, now: float) -> list[Effect]:
        link.failed = True
        link.authorised = False
        self._schedule(now + FAILURE_DROP_S, Deadline.DROP_LINK, link.id)
        return self._status(link, status)

    def _status(self, link: Link, status: Status) -> list[Effect]:
        return self._indicate(link, Channel.GDIO, status_frame(status).encode())

    def _broadcast(self, status: Status) -> list[Effect]:
        """Motion and alarms go to every link that has GDIO indications on."""
        frame = status_frame(status).encode()
        effects: list[Effect] = []
        for link in self._links.values():
            effects += self._indicate(link, Channel.GDIO, frame)
        return effects

    def _reply(self, link: Link, command: int, payload: bytes) -> list[Effect]:
        assert link.iv is not None
        message = UsdioMessage(self.credentials.auth_id, command, payload)
        return self._indicate(link, Channel.USDIO, message.encrypt(self.credentials.key, link.iv))

    @staticmethod
    def _indicate(link: Link, channel: Channel, frame: bytes) -> list[Effect]:
        if channel not in link.indicating:
            return []
        return [Indication(link.id, channel, piece) for piece in chunks(frame)]
