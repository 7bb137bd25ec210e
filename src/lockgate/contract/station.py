"""The station as the contract names it: its id, its position and the locks registered at it.

Plain frozen values that the service builds from its configuration and hands to the store (which
stamps events with them) and to the engine (which knows a bike only if it is registered here).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lockgate.model import Profile
from lockgate.protocol.identity import guid_to_address


@dataclass(frozen=True, slots=True)
class RegisteredLock:
    """One lock of the station: COPRI's bike id, Ilockit_ID (advertised name), GUID and profile."""

    bike: str
    name: str
    guid: str
    profile: Profile

    @property
    def hardware_id(self) -> str:
        return guid_to_address(self.guid)


@dataclass(frozen=True, slots=True)
class Station:
    """The station's identity, as every event carries it."""

    id: str
    latitude: str
    longitude: str
    locks: tuple[RegisteredLock, ...] = ()
    boot_id: str = ""
    _by_bike: Mapping[str, RegisteredLock] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_bike", {lock.bike: lock for lock in self.locks})
        if len(self._by_bike) != len(self.locks):
            raise ValueError("a bike is registered twice at the station")

    def lock(self, bike: str) -> RegisteredLock | None:
        return self._by_bike.get(bike)
