"""Lock credentials as types, parsed from the forms the backend sends, never shown.

- sharee: COPRI's per-rental key pair ``K_seed`` (16 bytes, the identity sent with the answer) and
  ``K_u`` (24 bytes, all of them the AES-192 key). COPRI writes them as strings of signed bytes,
  ``"[122, -30, 85, …]"``; a JSON array of integers -128…255 is accepted too.
- nobond: ``auth_id`` (1 byte), ``phone_id`` (8 bytes) and ``ltk`` (32 bytes, AES-256), the latter
  two in hex.

No ``repr``, ``str`` or error message of this module ever contains a key byte: errors name the field
and what is wrong with its form, not its value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from lockgate.model import Profile
from lockgate.protocol.errors import CredentialsError

SHAREE_AUTH_ID = 0x01
K_SEED_LENGTH = 16
K_U_LENGTH = 24
PHONE_ID_LENGTH = 8
LTK_LENGTH = 32
_HEX = re.compile(r"^(?:[0-9A-Fa-f]{2})*$")


def parse_key_bytes(value: object, name: str, length: int) -> bytes:
    """Key bytes from COPRI's ``"[122, -30, …]"`` string or from a sequence of integers.

    Each integer may be signed (-128…-1, as Java writes bytes) or unsigned (0…255).
    """
    items: object = value
    if isinstance(value, str):
        try:
            items = json.loads(value)
        except ValueError as err:
            raise CredentialsError(
                f'{name} must be a list of byte values like "[122, -30, …]"'
            ) from err
    if isinstance(items, bytes | bytearray):
        raw = bytes(items)
    elif isinstance(items, Sequence) and not isinstance(items, str):
        out = bytearray()
        for position, item in enumerate(items):
            if isinstance(item, bool) or not isinstance(item, int):
                raise CredentialsError(f"{name}[{position}] is not an integer")
            if not -128 <= item <= 255:
                raise CredentialsError(f"{name}[{position}] is outside -128..255")
            out.append(item & 0xFF)
        raw = bytes(out)
    else:
        raise CredentialsError(f"{name} must be a list of byte values or COPRI's string form")
    if len(raw) != length:
        raise CredentialsError(f"{name} must be {length} bytes, not {len(raw)}")
    return raw


def parse_hex(value: object, name: str, length: int) -> bytes:
    """Exactly ``length`` bytes written as hex digits (upper or lower case)."""
    if isinstance(value, bytes | bytearray):
        raw = bytes(value)
    elif isinstance(value, str) and _HEX.match(value):
        raw = bytes.fromhex(value)
    else:
        raise CredentialsError(f"{name} must be a string of hex digits")
    if len(raw) != length:
        raise CredentialsError(
            f"{name} must be {length} bytes ({2 * length} hex digits), not {len(raw)}"
        )
    return raw


def signed_byte_string(raw: bytes) -> str:
    """COPRI's string form of key bytes: ``"[122, -30, …]"`` (for configs and tests, never logs)."""
    return "[" + ", ".join(str(b - 256 if b > 127 else b) for b in raw) + "]"


@dataclass(frozen=True, slots=True)
class ShareeCredentials:
    """The sharee profile's key pair for one lock."""

    profile: ClassVar[Profile] = Profile.SHAREE
    k_seed: bytes = field(repr=False)
    k_u: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.k_seed) != K_SEED_LENGTH:
            raise CredentialsError(f"K_seed must be {K_SEED_LENGTH} bytes, not {len(self.k_seed)}")
        if len(self.k_u) != K_U_LENGTH:
            raise CredentialsError(f"K_u must be {K_U_LENGTH} bytes, not {len(self.k_u)}")

    @classmethod
    def parse(cls, k_seed: object, k_u: object) -> ShareeCredentials:
        return cls(
            parse_key_bytes(k_seed, "K_seed", K_SEED_LENGTH),
            parse_key_bytes(k_u, "K_u", K_U_LENGTH),
        )

    @property
    def auth_id(self) -> int:
        return SHAREE_AUTH_ID

    @property
    def key(self) -> bytes:
        """The session's AES key: all 24 bytes of K_u, trailing zeros included (AES-192)."""
        return self.k_u

    @property
    def identity(self) -> bytes:
        """What follows the nonce in the challenge answer."""
        return self.k_seed

    def __repr__(self) -> str:
        return "ShareeCredentials(K_seed=<16 bytes>, K_u=<24 bytes>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class NobondCredentials:
    """The nobond profile's authorisation for one lock."""

    profile: ClassVar[Profile] = Profile.NOBOND
    auth_id: int
    phone_id: bytes = field(repr=False)
    ltk: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.auth_id, bool) or not 0 <= self.auth_id <= 0xFF:
            raise CredentialsError("auth_id must be an integer 0..255")
        if len(self.phone_id) != PHONE_ID_LENGTH:
            raise CredentialsError(f"phone_id must be {PHONE_ID_LENGTH} bytes")
        if len(self.ltk) != LTK_LENGTH:
            raise CredentialsError(f"ltk must be {LTK_LENGTH} bytes")

    @classmethod
    def parse(cls, auth_id: object, phone_id: object, ltk: object) -> NobondCredentials:
        if isinstance(auth_id, bool) or not isinstance(auth_id, int):
            raise CredentialsError("auth_id must be an integer 0..255")
        return cls(
            auth_id,
            parse_hex(phone_id, "phone_id", PHONE_ID_LENGTH),
            parse_hex(ltk, "ltk", LTK_LENGTH),
        )

    @property
    def key(self) -> bytes:
        """The session's AES key: the 32-byte ltk (AES-256)."""
        return self.ltk

    @property
    def identity(self) -> bytes:
        return self.phone_id

    def __repr__(self) -> str:
        return f"NobondCredentials(auth_id={self.auth_id}, phone_id=<8 bytes>, ltk=<32 bytes>)"

    __str__ = __repr__


Credentials = ShareeCredentials | NobondCredentials


def parse_credentials(profile: Profile | str, document: object) -> Credentials:
    """Credentials of ``profile`` from a request's ``credentials`` object (mqtt-contract.md)."""
    try:
        profile = Profile(profile)
    except ValueError as err:
        raise CredentialsError(f"unknown lock profile {profile!r}") from err
    if not isinstance(document, dict):
        raise CredentialsError("credentials must be an object")
    expected = {"K_seed", "K_u"} if profile is Profile.SHAREE else {"auth_id", "phone_id", "ltk"}
    missing = sorted(expected - document.keys())
    unknown = sorted(set(document) - expected)
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if unknown:
            # A request's key names are anyone's: named only when short and plain.
            shown = [str(k) for k in unknown if _plain_name(k)][:4]
            hidden = len(unknown) - len(shown)
            parts.append(
                "unexpected " + ", ".join([*shown, *([f"{hidden} more"] if hidden else [])])
            )
        raise CredentialsError(f"{profile} credentials: " + "; ".join(parts))
    if profile is Profile.SHAREE:
        return ShareeCredentials.parse(document["K_seed"], document["K_u"])
    return NobondCredentials.parse(document["auth_id"], document["phone_id"], document["ltk"])


def _plain_name(key: object) -> bool:
    return isinstance(key, str) and 0 < len(key) <= 32 and key.isascii() and key.isidentifier()
