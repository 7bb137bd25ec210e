"""The keys of signed and sealed commands, on disk: the station's X25519 keypair and the backend's
Ed25519 public keys (docs/mqtt-contract.md, Signed and sealed commands).

The station's private key lives where the store key lives and is guarded the same way (see
:mod:`lockgate.store.key`): a systemd credential (``$CREDENTIALS_DIRECTORY/station.jwk``) first,
else ``commands.station_key_file``, created with mode 0600 on first start and refused when group or
others may read it. It is never in the database, and nothing here ever prints or logs it. The
backend's public keys come from the JWK or PEM files the config lists; several at once, so a key
can be rotated without a gap. :mod:`lockgate.contract.envelope` checks requests with both.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path

from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from lockgate.contract.envelope import BackendKeys, key_id, public_jwk
from lockgate.store.errors import StoreError

STATION_CREDENTIAL = "station.jwk"
_PEM_MARK = b"-----BEGIN"


class CommandKeyError(StoreError):
    """A key file is missing, unreadable, too open, or holds the wrong kind of key."""


def load_station_jwk(
    key_file: Path,
    *,
    credential_name: str = STATION_CREDENTIAL,
    environ: Mapping[str, str] | None = None,
) -> OKPKey:
    """The station's X25519 private key: the systemd credential if one is passed, else
    ``key_file``, made (0600) on first start."""
    environ = os.environ if environ is None else environ
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if directory:
        passed = Path(directory) / credential_name
        if passed.is_file():
            return _station_key(_read(passed), passed)
    if not key_file.exists():
        with contextlib.suppress(FileExistsError):  # another process made it first: read below
            create_station_jwk(key_file)
    _refuse_open_modes(key_file)
    return _station_key(_read(key_file), key_file)


def create_station_jwk(key_file: Path) -> OKPKey:
    """A new X25519 keypair in a new file, mode 0600 (``FileExistsError`` if there is one)."""
    key = OKPKey.generate_key("X25519", parameters={"use": "enc"}, private=True)
    document = {**key.as_dict(private=True), "kid": key.thumbprint()}
    _write_private(key_file, json.dumps(document, indent=2) + "\n")
    return key


def load_backend_keys(paths: Iterable[Path]) -> BackendKeys:
    """The backend's Ed25519 public keys, each from a JWK (JSON) or a PEM file."""
    keys = [_backend_key(path) for path in paths]
    try:
        return BackendKeys.of(keys)
    except ValueError as err:
        raise CommandKeyError(f"backend keys: {err}") from err


def create_backend_keypair(private_file: Path, public_file: Path) -> OKPKey:
    """A new Ed25519 signing keypair: the private key 0600, the public key for the stations (PEM
    for a ``.pem`` name, else a JWK). Both carry the same ``kid``, the key's thumbprint."""
    key = OKPKey.generate_key("Ed25519", parameters={"use": "sig"}, private=True)
    kid = key.thumbprint()
    if private_file.suffix == ".pem":
        _write_private(private_file, key.as_pem(private=True).decode("ascii"))
    else:
        _write_private(private_file, json.dumps({**key.as_dict(private=True), "kid": kid}) + "\n")
    if public_file.suffix == ".pem":
        public_text = key.as_pem(private=False).decode("ascii")
    else:
        public_text = json.dumps({**key.as_dict(private=False), "kid": kid}, indent=2) + "\n"
    public_file.parent.mkdir(parents=True, exist_ok=True)
    with public_file.open("x", encoding="ascii") as out:
        out.write(public_text)
    return key


def load_signing_key(path: Path) -> OKPKey:
    """A backend's Ed25519 private key (for ``lockgate ctl`` and the tests), JWK or PEM."""
    _refuse_open_modes(path)
    key = _import(_read(path), path)
    if key.curve_name != "Ed25519" or not key.is_private:
        raise CommandKeyError(f"{path}: not an Ed25519 private key")
    return key


def thumbprint(path: Path) -> str:
    """The RFC 7638 thumbprint of the key in a file (public or private, JWK or PEM)."""
    return _import(_read(path), path).thumbprint()


def station_public_jwk(key: OKPKey) -> dict[str, str]:
    """What the station publishes of its key in ``status``: the public JWK with its ``kid``."""
    return public_jwk(key)


def _station_key(raw: bytes, source: Path) -> OKPKey:
    key = _import(raw, source)
    if key.curve_name != "X25519" or not key.is_private:
        raise CommandKeyError(
            f"{source}: not an X25519 private key (make one: lockgate keys station)"
        )
    return key


def _backend_key(path: Path) -> OKPKey:
    key = _import(_read(path), path)
    if key.curve_name != "Ed25519":
        raise CommandKeyError(f"{path}: a backend key must be an Ed25519 public key")
    if key.is_private:
        raise CommandKeyError(f"{path}: holds a private key; give the station the public key only")
    return key


def _import(raw: bytes, source: Path) -> OKPKey:
    try:
        if raw.lstrip().startswith(_PEM_MARK):
            return OKPKey.import_key(raw)
        document = json.loads(raw.decode("utf-8"))
        if not isinstance(document, dict):
            raise CommandKeyError(f"{source}: not a JWK (a JSON object) nor a PEM key")
        if document.get("kty") != "OKP":
            raise CommandKeyError(f"{source}: not an OKP key (Ed25519 or X25519)")
        return OKPKey.import_key(document)
    except (JoseError, ValueError, TypeError, KeyError, UnicodeDecodeError) as err:
        # The parser's message may quote the file; only its kind is told.
        raise CommandKeyError(
            f"{source}: not a readable JWK or PEM key ({type(err).__name__})"
        ) from err


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CommandKeyError(f"{path}: cannot be read ({err.strerror})") from err


def _refuse_open_modes(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise CommandKeyError(f"{path}: cannot be read ({err.strerror})") from err
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CommandKeyError(f"{path} is readable by others (mode {oct(mode & 0o777)}): chmod 600")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())


__all__ = [
    "STATION_CREDENTIAL",
    "CommandKeyError",
    "create_backend_keypair",
    "create_station_jwk",
    "key_id",
    "load_backend_keys",
    "load_signing_key",
    "load_station_jwk",
    "station_public_jwk",
    "thumbprint",
]
