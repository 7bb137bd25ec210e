"""Signed and sealed requests: what the station checks before it reads a request at all.

A request on ``commands`` comes in one of two forms (docs/mqtt-contract.md, Signed and sealed
commands): the plain JSON object, or a compact JWS (RFC 7515, alg ``Ed25519``) whose payload is that
object plus the claims ``aud`` (this station), ``jti`` (the request's id) and ``exp`` (its
``timeout_at``). In either form ``credentials`` may be sealed: a compact JWE (ECDH-ES with X25519,
A256GCM) addressed to the station's own key. :func:`open_request` sits in front of
:func:`lockgate.contract.request.read_envelope`: it checks the signature and the claims, opens the
credentials in memory, and hands on the plain request; or it answers :class:`Refused`, naming the
one check that failed. It is pure (keys and time are arguments), never raises for bad input, and a
reason never carries key material nor more of the input than a short, pattern-checked id.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from joserfc.errors import JoseError

from lockgate.contract.documents import ErrorDocument
from lockgate.contract.request import (
    ID_PATTERN,
    MAX_PAYLOAD_BYTES,
    RejectedRequest,
    parse_request,
)
from lockgate.contract.times import format_time, parse_time
from lockgate.model import ErrorCode

if TYPE_CHECKING:
    # Keys are loaded by the store (lockgate.store.command_keys). JWS and JWE are imported where
    # a signed or sealed request is opened: a station that is sent none never loads them.
    from joserfc.jwk import OKPKey

SIGNING_ALGORITHM = "Ed25519"  # RFC 9864's name; the older "EdDSA" is deprecated, so refused
SEALING_ALGORITHM = "ECDH-ES"
SEALING_ENCRYPTION = "A256GCM"
# The claims that bind a signed request; the station removes them before it reads the request, so
# any other claim (``nbf``, ``iss``) is refused as an unknown field rather than silently ignored.
CLAIMS = frozenset({"aud", "jti", "exp", "iat"})
# Ids are remembered this long after their command ended (the engine's dedupe window). A signed
# request that lived longer could be replayed after the station forgot its id, so none may.
MAX_LIFETIME = timedelta(days=7)

_SEGMENT = rb"[A-Za-z0-9_-]+"
_COMPACT_JWS = re.compile(rb"^" + _SEGMENT + rb"\." + _SEGMENT + rb"\." + _SEGMENT + rb"$")
_COMPACT_JWE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+){3}$")
# Everything else a header could carry (``jwk``, ``jku``, ``x5u``, ``crit``, ``b64``, ``zip``) is
# refused: each would let the sender steer how the station verifies or decompresses.
_SIGNED_HEADER = frozenset({"alg", "kid", "typ"})
_SEALED_HEADER = frozenset({"alg", "enc", "kid", "epk", "apu", "apv", "typ", "cty"})
# The codes only :func:`open_request` gives: one per check of a signed or sealed request.
REFUSAL_CODES = frozenset(
    {
        ErrorCode.UNSIGNED,
        ErrorCode.BAD_SIGNATURE,
        ErrorCode.UNKNOWN_KEY,
        ErrorCode.WRONG_AUDIENCE,
        ErrorCode.EXPIRED,
        ErrorCode.ID_MISMATCH,
        ErrorCode.SEALED_UNREADABLE,
    }
)
_STATUS = {
    ErrorCode.UNSIGNED: 401,
    ErrorCode.BAD_SIGNATURE: 401,
    ErrorCode.UNKNOWN_KEY: 401,
    ErrorCode.WRONG_AUDIENCE: 403,
    ErrorCode.EXPIRED: 403,
    ErrorCode.ID_MISMATCH: 403,
}


@dataclass(frozen=True, slots=True)
class BackendKeys:
    """The backend's Ed25519 public keys the station trusts, by ``kid``: several at once, so that
    a key can be rotated without a gap. A key's ``kid`` is its own, else its RFC 7638 thumbprint."""

    by_kid: Mapping[str, OKPKey] = field(default_factory=dict)

    @classmethod
    def of(cls, keys: Iterable[OKPKey]) -> BackendKeys:
        by_kid: dict[str, OKPKey] = {}
        for key in keys:
            if key.key_type != "OKP" or key.curve_name != "Ed25519":
                raise ValueError("a backend key must be an Ed25519 key")
            kid = key_id(key)
            if kid in by_kid:
                raise ValueError(f"two backend keys have the kid {kid}")
            by_kid[kid] = key
        return cls(by_kid)

    def get(self, kid: str) -> OKPKey | None:
        return self.by_kid.get(kid)

    def __len__(self) -> int:
        return len(self.by_kid)


@dataclass(frozen=True, slots=True)
class Opened:
    """A request that passed: the plain request (claims removed, credentials opened) as
    :func:`~lockgate.contract.request.parse_request` made it, for :func:`read_envelope`: the JSON
    object, or what keeps the payload from being one. It holds key material in memory, so it is
    never shown."""

    request: dict[str, Any] | str = field(repr=False)
    signed: bool
    sealed: bool = False
    key_id: str | None = None  # the backend key that signed it


@dataclass(frozen=True, slots=True)
class Refused:
    """A request that failed a check: it moves nothing and reaches neither the booking table nor
    the lock.

    ``command_id`` is set only when the id is as trustworthy as that of an accepted request of the
    same form (under a valid signature; or an unsigned request where those are accepted): only
    then may the answer be stored under it as a command document. Storing a forger's id would let
    them spoil that id for the backend. ``correlation_id`` is any usable id read, for an error
    document on ``errors``, which stores nothing under it.
    """

    error_code: ErrorCode
    reason: str
    command_id: str | None = None
    correlation_id: str | None = None
    name: str | None = None
    bike: str | None = None
    timeout_at: datetime | None = None

    def error_document(self) -> ErrorDocument:
        """The answer on ``errors`` (for a refusal with no ``command_id``)."""
        return ErrorDocument(
            error_message=self.reason,
            status_code=_STATUS.get(self.error_code, 400),
            correlation_id=self.correlation_id or _new_correlation_id(),
            error_code=self.error_code,
        )

    def rejected(self, fingerprint: str) -> RejectedRequest:
        """The answer as a command document in ERROR (for a refusal with a ``command_id``)."""
        if self.command_id is None:
            raise ValueError("a refusal without a bound id is answered on errors")
        return RejectedRequest(
            self.command_id,
            self.name,
            self.bike,
            self.timeout_at,
            fingerprint,
            self.error_code,
            self.reason,
        )


@dataclass(frozen=True, slots=True)
class CommandGate:
    """What a station checks every request against: the backend keys it trusts, its own sealing
    key, and whether it takes unsigned requests. The default is an open station with no keys (the
    demo's): plain requests pass, and a signed or sealed one is refused, as nothing can check it."""

    backend_keys: BackendKeys = field(default_factory=BackendKeys)
    station_key: OKPKey | None = field(default=None, repr=False)
    require_signed: bool = False

    def open(
        self,
        payload: bytes,
        *,
        station: str,
        now: datetime,
        max_lifetime: timedelta = MAX_LIFETIME,
    ) -> Opened | Refused:
        """:func:`open_request` with this gate's keys."""
        return open_request(
            payload,
            station=station,
            backend_keys=self.backend_keys,
            station_key=self.station_key,
            require_signed=self.require_signed,
            now=now,
            max_lifetime=max_lifetime,
        )


def key_id(key: OKPKey) -> str:
    """A key's ``kid``: its own if it has one, else its RFC 7638 thumbprint."""
    return key.kid or key.thumbprint()


def public_jwk(key: OKPKey) -> dict[str, str]:
    """The public half of a key as a JWK, with its RFC 7638 thumbprint as ``kid``."""
    public = key.as_dict(private=False)
    return {"kty": "OKP", "crv": str(public["crv"]), "x": str(public["x"]), "kid": key.thumbprint()}


def open_request(
    payload: bytes,
    *,
    station: str,
    backend_keys: BackendKeys,
    station_key: OKPKey | None,
    require_signed: bool,
    now: datetime,
    max_lifetime: timedelta = MAX_LIFETIME,
) -> Opened | Refused:
    """Checks a raw request from ``commands`` and opens what is sealed in it; never raises."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        if require_signed:
            return Refused(
                ErrorCode.BAD_REQUEST, f"payload is larger than {MAX_PAYLOAD_BYTES} bytes"
            )
        return Opened(parse_request(payload), signed=False)  # read_envelope answers it
    if _COMPACT_JWS.match(payload):
        return _open_signed(
            payload,
            station=station,
            backend_keys=backend_keys,
            station_key=station_key,
            now=now,
            max_lifetime=max_lifetime,
        )
    parsed = parse_request(payload)
    document = parsed if isinstance(parsed, dict) else None
    if require_signed:
        return Refused(
            ErrorCode.UNSIGNED,
            "this station accepts signed requests only: send the request as a compact JWS",
            correlation_id=_usable_id(document),
        )
    if document is None or not isinstance(document.get("credentials"), str):
        return Opened(parsed, signed=False)  # the plain form, as it came
    credentials = _open_credentials(document["credentials"], station_key)
    if isinstance(credentials, str):
        return _refuse(ErrorCode.SEALED_UNREADABLE, credentials, document, bound=True)
    return Opened({**document, "credentials": credentials}, signed=False, sealed=True)


def _open_signed(
    token: bytes,
    *,
    station: str,
    backend_keys: BackendKeys,
    station_key: OKPKey | None,
    now: datetime,
    max_lifetime: timedelta,
) -> Opened | Refused:
    header_segment, payload_segment, signature_segment = token.split(b".")
    if _canonical(payload_segment) is None or _canonical(signature_segment) is None:
        # A base64url string whose unused low bits are set decodes to the same bytes: refused,
        # so that any change to a token's characters is a refused token.
        return Refused(ErrorCode.BAD_SIGNATURE, "the token is not canonical base64url")
    # Parsed once, here: until the signature is checked, its id may only be echoed in an error
    # document; once it is, the same object is the request.
    signed_payload = _canonical(payload_segment)
    claims = _json_object(signed_payload)
    unverified = _usable_id(claims)

    def untrusted(code: ErrorCode, reason: str) -> Refused:
        return Refused(code, reason, correlation_id=unverified)

    header = _json_object(_canonical(header_segment))
    if header is None:
        return untrusted(ErrorCode.BAD_SIGNATURE, "the token's header is not base64url JSON")
    if header.get("alg") != SIGNING_ALGORITHM:
        return untrusted(ErrorCode.BAD_SIGNATURE, f"alg: must be {SIGNING_ALGORITHM}")
    if not header.keys() <= _SIGNED_HEADER:
        allowed = ", ".join(sorted(_SIGNED_HEADER))
        return untrusted(ErrorCode.BAD_SIGNATURE, f"the token's header may hold only {allowed}")
    kid = header.get("kid")
    if not isinstance(kid, str):
        return untrusted(ErrorCode.UNKNOWN_KEY, "kid: required, naming the backend key that signed")
    key = backend_keys.get(kid)
    if key is None:
        return untrusted(
            ErrorCode.UNKNOWN_KEY, f"kid: {_show(kid)} is not a backend key of this station"
        )
    from joserfc import jws  # noqa: PLC0415 - see the imports above

    try:
        verified = jws.deserialize_compact(token, key, algorithms=[SIGNING_ALGORITHM])
    except (JoseError, ValueError, TypeError):
        verified = None
    if verified is None or verified.payload != signed_payload:
        return untrusted(
            ErrorCode.BAD_SIGNATURE, f"the signature does not verify with key {_show(kid)}"
        )
    if claims is None:
        return Refused(ErrorCode.BAD_REQUEST, "the signed payload is not a JSON object")

    def refuse(code: ErrorCode, reason: str, timeout_at: datetime | None = None) -> Refused:
        return _refuse(code, reason, claims, bound=True, timeout_at=timeout_at)

    audience = claims.get("aud")
    if audience is None:
        return refuse(ErrorCode.WRONG_AUDIENCE, "aud: required, the station's id")
    if audience != station:
        return refuse(ErrorCode.WRONG_AUDIENCE, f"aud: {_show(audience)} is not this station")
    expiry = claims.get("exp")
    if expiry is None:
        return refuse(ErrorCode.EXPIRED, "exp: required, the request's timeout_at")
    expires = _numeric_date(expiry)
    if expires is None:
        return refuse(ErrorCode.EXPIRED, "exp: not a NumericDate (seconds since 1970)")
    if expires <= now:
        return refuse(ErrorCode.EXPIRED, f"exp: passed at {format_time(expires)}", expires)
    if expires > now + max_lifetime:
        return refuse(
            ErrorCode.EXPIRED,
            f"exp: more than {max_lifetime.days} days ahead, longer than ids are remembered",
        )
    identifier = claims.get("jti")
    if identifier is None:
        return refuse(ErrorCode.ID_MISMATCH, "jti: required, the request's id", expires)
    if identifier != claims.get("id"):
        return refuse(ErrorCode.ID_MISMATCH, "jti: not the request's id", expires)

    document = {name: value for name, value in claims.items() if name not in CLAIMS}
    timeout_at = document.get("timeout_at")
    if timeout_at is None:
        document["timeout_at"] = format_time(expires)  # exp is the request's timeout_at
    elif isinstance(timeout_at, str):
        try:
            stated = parse_time(timeout_at)
        except ValueError:
            stated = None  # read_envelope's validation names it (INVALID_TIMEOUT_AT)
        if stated is not None and abs(stated - expires) >= timedelta(seconds=1):
            return refuse(
                ErrorCode.EXPIRED, "exp: not the request's timeout_at (to the second)", stated
            )

    sealed = isinstance(document.get("credentials"), str)
    if sealed:
        credentials = _open_credentials(document["credentials"], station_key)
        if isinstance(credentials, str):
            return refuse(ErrorCode.SEALED_UNREADABLE, credentials, expires)
        document["credentials"] = credentials
    return Opened(document, signed=True, sealed=sealed, key_id=kid)


def _open_credentials(sealed: str, station_key: OKPKey | None) -> dict[str, Any] | str:
    """The opened credentials object, or the reason it does not open."""
    if station_key is None:
        return "credentials: sealed, but this station has no key to open them"
    if len(sealed) > MAX_PAYLOAD_BYTES or not _COMPACT_JWE.match(sealed):
        return "credentials: a string must be a compact JWE sealed to this station's key"
    segments = sealed.encode("ascii").split(b".")
    if any(_canonical(segment) is None for segment in segments if segment):
        return "credentials: the sealed object is not canonical base64url"
    header = _json_object(_canonical(segments[0]))
    if header is None:
        return "credentials: the sealed object's header is not base64url JSON"
    if header.get("alg") != SEALING_ALGORITHM or header.get("enc") != SEALING_ENCRYPTION:
        return f"credentials: must be sealed with {SEALING_ALGORITHM} and {SEALING_ENCRYPTION}"
    if not header.keys() <= _SEALED_HEADER:
        allowed = ", ".join(sorted(_SEALED_HEADER))
        return f"credentials: the sealed object's header may hold only {allowed}"
    kid = header.get("kid")
    if kid is not None and kid != station_key.thumbprint():
        return "credentials: sealed to another key than this station's"
    from joserfc import jwe  # noqa: PLC0415 - see the imports above

    try:
        opened = jwe.decrypt_compact(
            sealed, station_key, algorithms=[SEALING_ALGORITHM, SEALING_ENCRYPTION]
        )
    except (JoseError, InvalidTag, ValueError, TypeError, KeyError):
        return "credentials: the sealed object does not open with this station's key"
    credentials = _json_object(opened.plaintext or b"")
    if credentials is None:
        return "credentials: the sealed object does not hold a JSON object"
    return credentials


def _refuse(
    code: ErrorCode,
    reason: str,
    document: Mapping[str, Any],
    *,
    bound: bool,
    timeout_at: datetime | None = None,
) -> Refused:
    identifier = _usable_id(document)
    name = document.get("command")
    bike = document.get("bike")
    return Refused(
        code,
        reason,
        command_id=identifier if bound else None,
        correlation_id=identifier,
        name=name if isinstance(name, str) and ID_PATTERN.match(name) else None,
        bike=bike if isinstance(bike, str) and ID_PATTERN.match(bike) else None,
        timeout_at=timeout_at,
    )


def _canonical(segment: bytes) -> bytes | None:
    """The bytes of a base64url segment without padding, if it is the one canonical encoding."""
    try:
        raw = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if base64.urlsafe_b64encode(raw).rstrip(b"=") == segment else None


def _json_object(raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _numeric_date(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _usable_id(document: Mapping[str, Any] | None) -> str | None:
    identifier = None if document is None else document.get("id")
    return identifier if isinstance(identifier, str) and ID_PATTERN.match(identifier) else None


def _show(value: Any) -> str:
    """A value from the request fit for a reason: a short id as it is, anything else not at all."""
    return value if isinstance(value, str) and ID_PATTERN.match(value) else "(not shown)"


def _new_correlation_id() -> str:
    return str(uuid.uuid4())
