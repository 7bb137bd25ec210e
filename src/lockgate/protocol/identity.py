"""Who a lock is: its advertised name, COPRI's Ilockit_GUID, and its Bluetooth address.

COPRI's ``Ilockit_GUID`` is ten zero bytes followed by the lock's six-byte address; the advertised
name (``ISHAREIT-…`` or ``ILOCKIT-…``) names the lock on a station and tells its profile.
"""

from __future__ import annotations

import re
import uuid

from lockgate.model import Profile
from lockgate.protocol.errors import ProtocolError

_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$")
NAME_PATTERNS: dict[Profile, re.Pattern[str]] = {
    Profile.SHAREE: re.compile(r"^ISHAREIT-\d+$"),
    Profile.NOBOND: re.compile(r"^ILOCKIT-\d+$"),
}
_GUID_PREFIX = bytes(10)


class IdentityError(ProtocolError, ValueError):
    """A lock name, GUID or address that is not of the form the protocol defines."""


def guid_to_address(guid: str) -> str:
    """``00000000-0000-0000-0000-fc3c002a2add`` → ``FC:3C:00:2A:2A:DD``."""
    try:
        raw = uuid.UUID(guid).bytes
    except ValueError as err:
        raise IdentityError(f"{guid!r} is not a GUID") from err
    if raw[:10] != _GUID_PREFIX:
        raise IdentityError(f"GUID {guid} does not start with ten zero bytes")
    return ":".join(f"{b:02X}" for b in raw[10:])


def address_to_guid(address: str) -> str:
    """``FC:3C:00:2A:2A:DD`` → ``00000000-0000-0000-0000-fc3c002a2add``."""
    return str(
        uuid.UUID(bytes=_GUID_PREFIX + bytes.fromhex(normalise_address(address).replace(":", "")))
    )


def normalise_address(address: str) -> str:
    """A Bluetooth address in BlueZ's form: upper case, colon separated."""
    if not _ADDRESS.match(address):
        raise IdentityError(f"{address!r} is not a Bluetooth address like FC:3C:00:2A:2A:DD")
    return address.upper()


def profile_of_name(name: str) -> Profile | None:
    """The profile an advertised name stands for, or ``None`` if it is not an Ilockit name."""
    for profile, pattern in NAME_PATTERNS.items():
        if pattern.match(name):
            return profile
    return None
