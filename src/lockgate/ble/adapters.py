"""The station's adapters as the driver uses them: which BlueZ adapter each one is, whether it is
up, its connection slots, its one connection attempt at a time, and how it has fared lately.

An adapter is named in the configuration by BlueZ's name (``hci0``) or by its address; or the
station takes every adapter BlueZ has (``adapters = "all"``), each known by its address. A named
``hciN`` is followed by address once seen, so a dongle pulled and plugged back as another ``hciN``
is still the same adapter. :func:`choose` picks the adapter an operation goes through.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from lockgate.ble.bluez import AdapterSeen, BluezView
from lockgate.ble.slots import SlotPool

ALL = "all"
"""The configuration's word for every adapter BlueZ has."""
_ADDRESS = re.compile(r"^[0-9A-F]{2}(:[0-9A-F]{2}){5}$")
FAILURE_MEMORY_S = 60.0
"""How long a failed connection attempt counts against its adapter."""


def is_address(key: str) -> bool:
    return _ADDRESS.match(key.upper()) is not None


@dataclass(frozen=True, slots=True)
class AdapterStatus:
    """One adapter as the station status shows it."""

    adapter: str
    """As configured (``hci0`` or an address), or the address when every adapter is taken."""
    name: str | None
    """BlueZ's name for it now; None while it is absent."""
    address: str | None
    up: bool
    since: datetime
    reason: str | None
    slots: int
    in_use: int


@dataclass(eq=False)
class RadioAdapter:
    """One adapter the driver may use."""

    key: str
    slots: SlotPool
    since: datetime
    name: str | None = None
    address: str | None = None
    up: bool = False
    reason: str = "not seen yet"
    connecting: asyncio.Lock = field(default_factory=asyncio.Lock)
    came_up: asyncio.Event = field(default_factory=asyncio.Event)
    failures: deque[float] = field(default_factory=lambda: deque(maxlen=16))

    def matches(self, seen: AdapterSeen) -> bool:
        if is_address(self.key):
            return seen.address == self.key.upper()
        if self.address is not None and seen.address:
            return seen.address == self.address
        return seen.name == self.key

    def failed(self) -> None:
        self.failures.append(time.monotonic())

    def recent_failures(self) -> int:
        horizon = time.monotonic() - FAILURE_MEMORY_S
        return sum(1 for at in self.failures if at >= horizon)

    def status(self) -> AdapterStatus:
        return AdapterStatus(
            adapter=self.key,
            name=self.name,
            address=self.address,
            up=self.up,
            since=self.since,
            reason=None if self.up else self.reason,
            slots=self.slots.capacity,
            in_use=self.slots.in_use,
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """An adapter going up or down."""

    adapter: RadioAdapter
    up: bool
    reason: str
    name: str | None
    """BlueZ's name for the adapter before the turn (what its sightings are filed under)."""


class Adapters:
    """Every adapter the station uses, matched against what BlueZ shows."""

    def __init__(self, configured: Iterable[str], slots: int, now: datetime) -> None:
        keys = list(configured)
        self.every = keys == [ALL]
        self._slots = slots
        self._by_key = {
            key: RadioAdapter(key=key, slots=SlotPool(slots), since=now)
            for key in ([] if self.every else keys)
        }

    def all(self) -> list[RadioAdapter]:
        return list(self._by_key.values())

    def up(self) -> list[RadioAdapter]:
        return [a for a in self._by_key.values() if a.up]

    def by_name(self, name: str) -> RadioAdapter | None:
        """The adapter BlueZ calls ``name`` now."""
        for adapter in self._by_key.values():
            if adapter.up and adapter.name == name:
                return adapter
        return None

    def follow(self, view: BluezView, now: datetime) -> list[Turn]:
        """Match the adapters to what BlueZ shows; the ones that went up or down."""
        if self.every:
            for seen in view.adapters.values():
                key = seen.address or seen.name
                if key not in self._by_key:
                    self._by_key[key] = RadioAdapter(
                        key=key, slots=SlotPool(self._slots), since=now
                    )
        turns: list[Turn] = []
        for adapter in self._by_key.values():
            match = next((s for s in view.adapters.values() if adapter.matches(s)), None)
            if not view.usable:
                up, reason = False, view.reason
            elif match is None:
                up, reason = False, f"adapter {adapter.key} is not there"
            elif not match.powered:
                up, reason = False, f"adapter {match.name} is powered off"
            else:
                up, reason = True, "up"
            before = adapter.name
            if match is not None and view.usable:
                adapter.name = match.name
                adapter.address = match.address or adapter.address
            if up != adapter.up:
                adapter.up = up
                adapter.since = now
                adapter.reason = reason
                if up:
                    adapter.came_up.set()
                else:
                    adapter.came_up.clear()
                    adapter.name = match.name if match is not None and view.usable else None
                turns.append(Turn(adapter, up, reason, before))
            elif not up:
                adapter.reason = reason
        return turns


@dataclass(frozen=True, slots=True)
class Candidate:
    """An adapter that hears a lock, and how well."""

    adapter: RadioAdapter
    rssi: int | None


def score(candidate: Candidate) -> float:
    """Higher is better: the signal first, then free slots, no connect under way, no recent
    failures (habluetooth weighs the same things)."""
    adapter = candidate.adapter
    rssi = candidate.rssi if candidate.rssi is not None else -100
    free = adapter.slots.capacity - adapter.slots.in_use
    value = float(rssi)
    value += 6.0 * min(free, 2) - (20.0 if free <= 0 else 0.0)
    value -= 8.0 if adapter.connecting.locked() else 0.0
    value -= 12.0 * adapter.recent_failures()
    return value


def choose(candidates: Iterable[Candidate]) -> Candidate | None:
    """The best adapter to reach a lock through, of those that hear it."""
    best: Candidate | None = None
    for candidate in candidates:
        if not candidate.adapter.up:
            continue
        if best is None or score(candidate) > score(best):
            best = candidate
    return best
