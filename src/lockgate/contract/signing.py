"""The backend's side of signed and sealed requests: what :mod:`lockgate.contract.envelope` opens.

A backend signs a request with its Ed25519 key and seals a request's credentials to the station's
X25519 public key (published in the station's retained ``status``). ``lockgate ctl`` and the tests
use these; a backend written in another language follows docs/mqtt-contract.md, which shows the
same steps with joserfc. Pure: the time comes in as an argument.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from joserfc import jwe, jws
from joserfc.jwk import OKPKey

from lockgate.contract.envelope import (
    SEALING_ALGORITHM,
    SEALING_ENCRYPTION,
    SIGNING_ALGORITHM,
    key_id,
)
from lockgate.contract.request import DEFAULT_BOOKING_TIMEOUT, DEFAULT_TIMEOUT
from lockgate.contract.times import format_time, parse_time


def sign_request(
    request: Mapping[str, Any],
    *,
    key: OKPKey,
    station: str,
    now: datetime,
    kid: str | None = None,
) -> bytes:
    """The request as a compact JWS: the MQTT payload to publish on ``commands``.

    ``exp`` is the request's ``timeout_at`` rounded up to the second; a request without one gets
    the contract's default (60 s, a booking 1 h) written into it, so both say the same.
    """
    claims = dict(request)
    if claims.get("timeout_at") is None:
        default = DEFAULT_BOOKING_TIMEOUT if claims.get("command") == "book" else DEFAULT_TIMEOUT
        claims["timeout_at"] = format_time(now + default)
    timeout_at = parse_time(claims["timeout_at"])
    claims.update(aud=station, jti=claims.get("id"), exp=math.ceil(timeout_at.timestamp()))
    header = {"alg": SIGNING_ALGORITHM, "kid": kid or key_id(key)}
    payload = json.dumps(claims, separators=(",", ":")).encode()
    token = jws.serialize_compact(header, payload, key, algorithms=[SIGNING_ALGORITHM])
    return token.encode("ascii")


def seal_credentials(
    credentials: Mapping[str, Any], station_public_jwk: Mapping[str, Any] | OKPKey
) -> str:
    """The credentials object as a compact JWE that only the station's private key opens."""
    if isinstance(station_public_jwk, OKPKey):
        key = station_public_jwk
    else:
        key = OKPKey.import_key(dict(station_public_jwk))
    header = {"alg": SEALING_ALGORITHM, "enc": SEALING_ENCRYPTION, "kid": key.thumbprint()}
    plaintext = json.dumps(dict(credentials), separators=(",", ":")).encode()
    return jwe.encrypt_compact(
        header, plaintext, key, algorithms=[SEALING_ALGORITHM, SEALING_ENCRYPTION]
    )
