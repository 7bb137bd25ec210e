"""The station key: where it comes from, and what it seals (docs/station.md, Security).

The key is never in the database. Under systemd it is a service credential (``LoadCredential=``,
read from ``$CREDENTIALS_DIRECTORY/<name>``); elsewhere it is ``store.key_file``, created with mode
0600 on first start. Two subkeys are derived from it (HKDF-SHA256): one seals provisioned lock
credentials with AES-GCM, the bike id and profile as associated data, so a sealed record cannot be
moved to another lock; the other keys the HMAC fingerprints of requests, so a stored fingerprint of
a request that carried credentials reveals nothing about them.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from lockgate.model import Profile
from lockgate.protocol.credentials import Credentials, NobondCredentials, ShareeCredentials
from lockgate.store.errors import StoreError

KEY_LENGTH = 32
NONCE_LENGTH = 12
CREDENTIAL_NAME = "store.key"


class StoreKeyError(StoreError):
    """The station key cannot be read or created, or a sealed record does not open with it."""


@dataclass(frozen=True, slots=True)
class StationKey:
    """The station key's two derived subkeys. Neither ``repr`` nor ``str`` shows a byte of them."""

    sealing_key: bytes = field(repr=False)
    fingerprint_key: bytes = field(repr=False)

    @classmethod
    def from_bytes(cls, key: bytes) -> StationKey:
        if len(key) != KEY_LENGTH:
            raise StoreKeyError(f"the station key must be {KEY_LENGTH} bytes, not {len(key)}")
        return cls(_derive(key, b"lockgate store: sealing"), _derive(key, b"lockgate store: hmac"))

    def seal(self, bike: str, credentials: Credentials) -> bytes:
        """``nonce || AES-GCM(plaintext)``, bound to the bike and the profile."""
        nonce = secrets.token_bytes(NONCE_LENGTH)
        sealed = AESGCM(self.sealing_key).encrypt(
            nonce, _plaintext(credentials), _associated(bike, credentials.profile)
        )
        return nonce + sealed

    def open(self, bike: str, profile: Profile, blob: bytes) -> Credentials:
        nonce, sealed = blob[:NONCE_LENGTH], blob[NONCE_LENGTH:]
        try:
            plain = AESGCM(self.sealing_key).decrypt(nonce, sealed, _associated(bike, profile))
        except InvalidTag as err:
            raise StoreKeyError(
                f"the stored credentials of {bike} do not open with this station key"
            ) from err
        if profile is Profile.SHAREE:
            return ShareeCredentials(plain[:16], plain[16:])
        return NobondCredentials(plain[0], plain[1:9], plain[9:])

    def __repr__(self) -> str:
        return "StationKey(<secret>)"

    __str__ = __repr__


def load_station_key(
    key_file: Path,
    *,
    credential_name: str = CREDENTIAL_NAME,
    environ: Mapping[str, str] | None = None,
) -> StationKey:
    """The systemd credential if one is passed, else ``key_file`` (created 0600 if missing).

    The file holds 32 raw bytes or 64 hex digits (a trailing newline is allowed), so an operator
    may make one with ``head -c 32 /dev/urandom`` or ``openssl rand -hex 32``.
    """
    environ = os.environ if environ is None else environ
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        passed = Path(directory) / credential_name
        if passed.is_file():
            return StationKey.from_bytes(_decode(passed.read_bytes(), passed))
    if not key_file.exists():
        _create(key_file)
    mode = key_file.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise StoreKeyError(
            f"{key_file} is readable by others (mode {oct(mode & 0o777)}): chmod 600"
        )
    return StationKey.from_bytes(_decode(key_file.read_bytes(), key_file))


def _create(key_file: Path) -> None:
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process made it first; it is read below
    with os.fdopen(descriptor, "w") as out:
        out.write(secrets.token_hex(KEY_LENGTH) + "\n")
        out.flush()
        os.fsync(out.fileno())


def _decode(raw: bytes, source: Path) -> bytes:
    text = raw.strip()
    if len(text) == 2 * KEY_LENGTH:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass  # not hex: maybe 64 raw bytes, refused below by length
    if len(raw) == KEY_LENGTH:
        return raw
    raise StoreKeyError(f"{source} must hold {KEY_LENGTH} raw bytes or {2 * KEY_LENGTH} hex digits")


def _derive(key: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LENGTH, salt=None, info=info).derive(key)


def _associated(bike: str, profile: Profile) -> bytes:
    return f"{bike}\x00{profile}".encode()


def _plaintext(credentials: Credentials) -> bytes:
    if isinstance(credentials, ShareeCredentials):
        return credentials.k_seed + credentials.k_u
    return bytes([credentials.auth_id]) + credentials.phone_id + credentials.ltk
