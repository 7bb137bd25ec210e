"""Signed and sealed requests: every check, its own code, no key byte in any answer.

The tokens are made by the backend's helpers (contract/signing.py) or by joserfc directly where a
test needs a token the helpers would never make; the station's side is ``open_request``, whose
result goes through the unchanged ``read_envelope`` and ``validate`` as in the engine.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jwe, jws
from joserfc.jwk import OKPKey

from lockgate.contract import (
    CommandRequest,
    Envelope,
    ErrorDocument,
    RegisteredLock,
    Station,
    read_envelope,
    validate,
)
from lockgate.contract.documents import BleStatus, SealingKey, StationStatus
from lockgate.contract.envelope import (
    MAX_LIFETIME,
    REFUSAL_CODES,
    BackendKeys,
    Opened,
    Refused,
    open_request,
    public_jwk,
)
from lockgate.contract.request import parse_request
from lockgate.contract.signing import seal_credentials, sign_request
from lockgate.model import ErrorCode, Profile
from lockgate.protocol.credentials import ShareeCredentials, signed_byte_string

NOW = datetime(2026, 11, 22, 10, 15, 3, 123000, tzinfo=UTC)
FINGERPRINT_KEY = b"f" * 32
STATION = Station(
    "FR101",
    "47.976634",
    "7.825490",
    (
        RegisteredLock(
            "FR1540", "ISHAREIT-2200540", "00000000-0000-0000-0000-fc3c002a2add", Profile.SHAREE
        ),
    ),
)
BACKEND = OKPKey.generate_key("Ed25519")
OTHER_BACKEND = OKPKey.generate_key("Ed25519")
STATION_KEY = OKPKey.generate_key("X25519")
OTHER_STATION_KEY = OKPKey.generate_key("X25519")
KEYS = BackendKeys.of([OKPKey.import_key(BACKEND.as_dict(private=False))])
K_SEED = bytes(range(100, 116))
K_U = bytes(range(200, 224))
CREDENTIALS = {"K_seed": list(K_SEED), "K_u": list(K_U)}
REQUEST: dict[str, Any] = {
    "id": "c1",
    "command": "unlock",
    "bike": "FR1540",
    "user_id": "u-6103",
    "timeout_at": "2026-11-22T10:16:00.000Z",
}
# Every secret a test holds: none of them may appear in any answer, in any encoding.
SECRETS = [
    K_SEED.hex(),
    K_U.hex(),
    json.dumps(list(K_U))[1:-1],
    str(BACKEND.as_dict(private=True)["d"]),
    str(STATION_KEY.as_dict(private=True)["d"]),
]


def open_(payload: bytes, *, require_signed: bool = True, **changes: Any) -> Opened | Refused:
    arguments: dict[str, Any] = {
        "station": "FR101",
        "backend_keys": KEYS,
        "station_key": STATION_KEY,
        "require_signed": require_signed,
        "now": NOW,
        **changes,
    }
    return open_request(payload, **arguments)


def signed(request: dict[str, Any] | None = None, **claims: Any) -> bytes:
    """A request signed as a backend would, with claims changed or removed (None) on top."""
    token = sign_request(request or REQUEST, key=BACKEND, station="FR101", now=NOW)
    if not claims:
        return token
    payload = json.loads(jws.extract_compact(token).payload)
    for name, value in claims.items():
        if value is None:
            payload.pop(name, None)
        else:
            payload[name] = value
    return sign_raw(json.dumps(payload).encode())


def sign_raw(payload: bytes, header: dict[str, Any] | None = None, key: OKPKey = BACKEND) -> bytes:
    header = header or {"alg": "Ed25519", "kid": BACKEND.thumbprint()}
    algorithm = str(header.get("alg", "Ed25519"))
    return jws.serialize_compact(header, payload, key, algorithms=[algorithm]).encode()


def with_header(header: dict[str, Any]) -> bytes:
    """A valid token's payload and signature under another header (which it does not sign)."""
    segment = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=")
    return segment + b"." + signed().split(b".", 1)[1]


def sealed_request(**changes: Any) -> dict[str, Any]:
    return {
        **REQUEST,
        "credentials": seal_credentials(CREDENTIALS, public_jwk(STATION_KEY)),
        **changes,
    }


def refused(result: Opened | Refused, code: ErrorCode) -> Refused:
    assert isinstance(result, Refused), result
    assert result.error_code is code, result
    assert_no_secret(result)
    return result


def assert_no_secret(refusal: Refused) -> None:
    text = json.dumps([refusal.reason, refusal.error_document().model_dump(mode="json")])
    for secret in SECRETS:
        assert secret not in text
    assert len(refusal.reason) < 160


def command(opened: Opened | Refused) -> CommandRequest:
    assert isinstance(opened, Opened), opened
    envelope = read_envelope(opened.request, fingerprint_key=FINGERPRINT_KEY)
    assert isinstance(envelope, Envelope), envelope
    verdict = validate(envelope, station=STATION, now=NOW)
    assert isinstance(verdict, CommandRequest), verdict
    return verdict


# --- what passes ------------------------------------------------------------------------------


def test_a_signed_request_with_sealed_credentials_opens_into_the_plain_request() -> None:
    opened = open_(signed(sealed_request()))
    assert isinstance(opened, Opened)
    assert (opened.signed, opened.sealed, opened.key_id) == (True, True, BACKEND.thumbprint())
    request = command(opened)
    assert request.credentials == ShareeCredentials(K_SEED, K_U)
    assert (request.id, request.name, request.bike, request.user_id) == (
        "c1",
        "unlock",
        "FR1540",
        "u-6103",
    )
    assert request.timeout_at == datetime(2026, 11, 22, 10, 16, tzinfo=UTC)
    assert K_U.hex() not in repr(opened)


def test_the_claims_are_removed_so_the_fingerprint_is_the_requests_own() -> None:
    first = open_(signed(sealed_request()))
    # Sealed again (a new ephemeral key) and signed again later: the same request.
    again = open_(
        sign_request(sealed_request(), key=BACKEND, station="FR101", now=NOW + timedelta(seconds=5))
    )
    plain = open_(
        json.dumps({**REQUEST, "credentials": CREDENTIALS}).encode(), require_signed=False
    )
    prints = {command(result).fingerprint for result in (first, again, plain)}
    assert len(prints) == 1


def test_a_signed_request_without_timeout_at_takes_exp_as_its_timeout_at() -> None:
    request = {key: value for key, value in REQUEST.items() if key != "timeout_at"}
    token = signed(request)  # the helper writes the default timeout_at; remove it again
    exp = json.loads(jws.extract_compact(token).payload)["exp"]
    verdict = command(open_(signed(request, timeout_at=None)))
    assert verdict.timeout_at == datetime.fromtimestamp(exp, UTC)


def test_the_plain_form_passes_as_it_came_where_unsigned_requests_are_accepted() -> None:
    for payload in (
        json.dumps({**REQUEST, "credentials": CREDENTIALS}).encode(),
        b"not json at all",
        b"[1, 2]",
        b"{}",
        b"x" * 20000,
    ):
        opened = open_(payload, require_signed=False)
        assert isinstance(opened, Opened)
        assert (opened.request, opened.signed, opened.sealed) == (
            parse_request(payload),
            False,
            False,
        )


def test_sealed_credentials_open_in_an_unsigned_request_where_those_are_accepted() -> None:
    opened = open_(json.dumps(sealed_request()).encode(), require_signed=False)
    assert isinstance(opened, Opened)
    assert (opened.signed, opened.sealed) == (False, True)
    assert command(opened).credentials == ShareeCredentials(K_SEED, K_U)


def test_several_backend_keys_are_held_at_once_for_a_rotation() -> None:
    both = BackendKeys.of([BACKEND, OTHER_BACKEND])
    for key in (BACKEND, OTHER_BACKEND):
        token = sign_request(REQUEST, key=key, station="FR101", now=NOW)
        opened = open_(token, backend_keys=both)
        assert isinstance(opened, Opened)
        assert opened.key_id == key.thumbprint()


def test_a_backend_key_must_be_ed25519_and_kids_unique() -> None:
    with pytest.raises(ValueError, match="Ed25519"):
        BackendKeys.of([STATION_KEY])
    with pytest.raises(ValueError, match="two backend keys"):
        BackendKeys.of([BACKEND, OKPKey.import_key(BACKEND.as_dict(private=False))])


def test_the_public_jwk_has_the_thumbprint_as_kid_and_no_private_part() -> None:
    jwk = public_jwk(STATION_KEY)
    assert set(jwk) == {"kty", "crv", "x", "kid"}
    assert jwk["kid"] == STATION_KEY.thumbprint()
    assert jwk["crv"] == "X25519"


def test_a_backend_seals_to_the_key_the_retained_status_publishes() -> None:
    status = StationStatus(
        station="FR101",
        state="online",
        boot_id="b",
        version="0.3.0",
        since=NOW,
        locks=("FR1540",),
        outbox_depth=0,
        ble=BleStatus(adapter="hci0", slots=3, in_use=0),
        sealing_key=SealingKey(**public_jwk(STATION_KEY)),
    )
    published = json.loads(status.to_bytes())
    assert published["sealing_key"]["kid"] == STATION_KEY.thumbprint()
    assert str(STATION_KEY.as_dict(private=True)["d"]) not in status.to_bytes().decode()
    sealed = seal_credentials(CREDENTIALS, published["sealing_key"])
    request = command(open_(signed({**REQUEST, "credentials": sealed})))
    assert request.credentials == ShareeCredentials(K_SEED, K_U)


def test_a_signed_and_sealed_request_shows_no_key_byte_to_a_reader_of_the_broker() -> None:
    token = signed(sealed_request())
    sealed = json.loads(jws.extract_compact(token).payload)["credentials"].encode()
    segments = [*token.split(b"."), *sealed.split(b".")]
    readable = [token, *(base64.urlsafe_b64decode(s + b"=" * (-len(s) % 4)) for s in segments)]
    forms = [K_SEED, K_U, K_U[:8], *(secret.encode() for secret in SECRETS)]
    forms.append(signed_byte_string(K_U).encode()[:40])
    for text in readable:
        for form in forms:
            assert form not in text


# --- every refusal ----------------------------------------------------------------------------


def test_unsigned_requests_are_refused_when_signatures_are_required() -> None:
    refusal = refused(open_(json.dumps(REQUEST).encode()), ErrorCode.UNSIGNED)
    # The id of an unsigned request is anyone's: echoed on errors, never stored under.
    assert (refusal.command_id, refusal.correlation_id) == (None, "c1")
    document = refusal.error_document()
    assert (document.status_code, document.correlation_id) == (401, "c1")
    with pytest.raises(ValueError, match="errors"):
        refusal.rejected("fp")
    refused(open_(b"garbage"), ErrorCode.UNSIGNED)
    refused(open_(b"x" * 20000), ErrorCode.BAD_REQUEST)


def test_a_forged_signature_is_refused() -> None:
    # The trusted key's kid, but signed by another key.
    payload = jws.extract_compact(signed()).payload
    forged = sign_raw(payload, key=OTHER_BACKEND)
    refusal = refused(open_(forged), ErrorCode.BAD_SIGNATURE)
    assert refusal.command_id is None
    assert refusal.correlation_id == "c1"  # only for the error document on errors
    assert refusal.error_document().status_code == 401


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "EdDSA", "kid": BACKEND.thumbprint()}, "alg: must be Ed25519"),
        ({"alg": "HS256", "kid": BACKEND.thumbprint()}, "alg: must be Ed25519"),
        (
            {"alg": "Ed25519", "kid": BACKEND.thumbprint(), "jwk": public_jwk(BACKEND)},
            "header may hold only",
        ),
        ({"alg": "Ed25519", "kid": BACKEND.thumbprint(), "b64": False, "crit": ["b64"]}, "only"),
    ],
)
def test_a_header_the_station_does_not_allow_is_refused(
    header: dict[str, Any], reason: str
) -> None:
    refusal = refused(open_(with_header(header)), ErrorCode.BAD_SIGNATURE)
    assert reason in refusal.reason
    assert refusal.correlation_id == "c1"


def test_an_unknown_or_missing_kid_is_refused() -> None:
    token = sign_request(REQUEST, key=OTHER_BACKEND, station="FR101", now=NOW)
    refusal = refused(open_(token), ErrorCode.UNKNOWN_KEY)
    assert OTHER_BACKEND.thumbprint() in refusal.reason  # a kid is public, and helps a rotation
    payload = jws.extract_compact(signed()).payload
    refused(open_(sign_raw(payload, {"alg": "Ed25519"})), ErrorCode.UNKNOWN_KEY)
    refused(open_(with_header({"alg": "Ed25519", "kid": 7})), ErrorCode.UNKNOWN_KEY)


def test_a_request_for_another_station_is_refused() -> None:
    token = sign_request(REQUEST, key=BACKEND, station="FR102", now=NOW)
    refusal = refused(open_(token), ErrorCode.WRONG_AUDIENCE)
    assert refusal.reason == "aud: FR102 is not this station"
    assert (refusal.command_id, refusal.name, refusal.bike) == ("c1", "unlock", "FR1540")
    rejected = refusal.rejected("fp")
    assert (rejected.id, rejected.error_code, rejected.fingerprint) == (
        "c1",
        ErrorCode.WRONG_AUDIENCE,
        "fp",
    )
    refused(open_(signed(aud=None)), ErrorCode.WRONG_AUDIENCE)
    refused(open_(signed(aud=["FR101", "FR102"])), ErrorCode.WRONG_AUDIENCE)


def test_an_expired_or_unbounded_request_is_refused() -> None:
    later = NOW + timedelta(minutes=2)
    refusal = refused(open_(signed(), now=later), ErrorCode.EXPIRED)
    assert refusal.reason == "exp: passed at 2026-11-22T10:16:00.000Z"
    assert refusal.command_id == "c1"
    refused(open_(signed(exp=None)), ErrorCode.EXPIRED)
    refused(open_(signed(exp="tomorrow")), ErrorCode.EXPIRED)
    refused(open_(signed(exp=True)), ErrorCode.EXPIRED)
    refused(open_(signed(exp=10**30)), ErrorCode.EXPIRED)
    far = (NOW + MAX_LIFETIME + timedelta(minutes=1)).timestamp()
    request = {**REQUEST, "command": "book", "timeout_at": None}
    refusal = refused(open_(signed(request, exp=far)), ErrorCode.EXPIRED)
    assert "7 days" in refusal.reason
    mismatch = (NOW + timedelta(minutes=30)).timestamp()
    refusal = refused(open_(signed(exp=mismatch)), ErrorCode.EXPIRED)
    assert "timeout_at" in refusal.reason


def test_a_jti_that_is_not_the_requests_id_is_refused() -> None:
    refusal = refused(open_(signed(jti="c2")), ErrorCode.ID_MISMATCH)
    assert refusal.reason == "jti: not the request's id"
    assert refusal.command_id == "c1"
    refused(open_(signed(jti=None)), ErrorCode.ID_MISMATCH)


def test_sealed_credentials_that_do_not_open_are_refused() -> None:
    to_other = {
        **REQUEST,
        "credentials": seal_credentials(CREDENTIALS, public_jwk(OTHER_STATION_KEY)),
    }
    refusal = refused(open_(signed(to_other)), ErrorCode.SEALED_UNREADABLE)
    assert refusal.command_id == "c1"
    refused(open_(signed(sealed_request()), station_key=None), ErrorCode.SEALED_UNREADABLE)
    refused(open_(signed({**REQUEST, "credentials": "[1, 2, 3]"})), ErrorCode.SEALED_UNREADABLE)
    # Sealed to this station's key, but without a kid naming it, and with the wrong content.
    untagged = jwe.encrypt_compact(
        {"alg": "ECDH-ES", "enc": "A256GCM"}, b"[1]", STATION_KEY, algorithms=["ECDH-ES", "A256GCM"]
    )
    refused(open_(signed({**REQUEST, "credentials": untagged})), ErrorCode.SEALED_UNREADABLE)
    weaker = jwe.encrypt_compact(
        {"alg": "ECDH-ES", "enc": "A128GCM"}, b"{}", STATION_KEY, algorithms=["ECDH-ES", "A128GCM"]
    )
    refusal = refused(
        open_(signed({**REQUEST, "credentials": weaker})), ErrorCode.SEALED_UNREADABLE
    )
    assert "A256GCM" in refusal.reason
    # A changed ciphertext of an unsigned request does not open either.
    sealed = sealed_request()
    parts = sealed["credentials"].split(".")
    parts[3] = parts[3][:-2] + ("AA" if parts[3][-2:] != "AA" else "BA")
    tampered = json.dumps({**sealed, "credentials": ".".join(parts)}).encode()
    refusal = refused(open_(tampered, require_signed=False), ErrorCode.SEALED_UNREADABLE)
    assert refusal.command_id == "c1"  # as any unsigned request's, where those are accepted


def test_every_refusal_code_is_reachable() -> None:
    payloads = {
        ErrorCode.UNSIGNED: json.dumps(REQUEST).encode(),
        ErrorCode.BAD_SIGNATURE: sign_raw(jws.extract_compact(signed()).payload, key=OTHER_BACKEND),
        ErrorCode.UNKNOWN_KEY: sign_request(REQUEST, key=OTHER_BACKEND, station="FR101", now=NOW),
        ErrorCode.WRONG_AUDIENCE: signed(aud="FR102"),
        ErrorCode.EXPIRED: signed(exp=NOW.timestamp() - 1),
        ErrorCode.ID_MISMATCH: signed(jti="c2"),
        ErrorCode.SEALED_UNREADABLE: signed({**REQUEST, "credentials": "a.b.c.d.e"}),
    }
    assert set(payloads) == REFUSAL_CODES
    for code, payload in payloads.items():
        refused(open_(payload), code)


def test_a_signed_payload_that_is_not_an_object_is_a_bad_request() -> None:
    refused(open_(sign_raw(b"[1, 2]")), ErrorCode.BAD_REQUEST)


# --- properties -------------------------------------------------------------------------------

TOKEN = signed(sealed_request()).decode()
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.= {}"


@st.composite
def changed_tokens(draw: st.DrawFn) -> str:
    position = draw(st.integers(0, len(TOKEN) - 1))
    change = draw(st.sampled_from(["replace", "insert", "delete"]))
    if change == "delete":
        return TOKEN[:position] + TOKEN[position + 1 :]
    character = draw(st.sampled_from(ALPHABET))
    if change == "insert":
        return TOKEN[:position] + character + TOKEN[position:]
    return TOKEN[:position] + character + TOKEN[position + 1 :]


@settings(max_examples=400, deadline=None)
@given(changed_tokens())
def test_any_change_to_a_signed_token_is_refused(token: str) -> None:
    if token == TOKEN:
        return  # a replaced character replaced by itself is no change
    result = open_(token.encode())
    assert isinstance(result, Refused)
    assert result.command_id is None  # nothing of a changed token is stored under its id
    assert_no_secret(result)
    # Where unsigned requests are accepted, a broken token is at most a broken plain request.
    result = open_(token.encode(), require_signed=False)
    if isinstance(result, Opened):
        assert not result.signed
        assert isinstance(
            read_envelope(result.request, fingerprint_key=FINGERPRINT_KEY), ErrorDocument
        )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000) | st.text(ALPHABET, max_size=400).map(str.encode), st.booleans())
def test_garbage_is_refused_or_passed_on_never_raised(payload: bytes, require_signed: bool) -> None:
    result = open_(payload, require_signed=require_signed)
    assert isinstance(result, Opened | Refused)
    if isinstance(result, Opened):
        assert not result.signed


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "id": st.sampled_from(["c1", "c2", "", "bad id"]) | JSON,
            "jti": st.sampled_from(["c1", "c2"]) | JSON,
            "aud": st.sampled_from(["FR101", "FR102"]) | JSON,
            "exp": st.sampled_from([NOW.timestamp() + 30, NOW.timestamp() - 30]) | JSON,
            "timeout_at": st.sampled_from(["2026-11-22T10:15:33.123Z", "soon"]) | JSON,
            "credentials": st.sampled_from([sealed_request()["credentials"], "x.y.z.w.v"]) | JSON,
        },
    )
)
def test_any_signed_claims_give_an_answer_never_an_exception(claims: dict[str, Any]) -> None:
    result = open_(sign_raw(json.dumps(claims).encode()))
    if isinstance(result, Refused):
        assert_no_secret(result)
        return
    envelope = read_envelope(result.request, fingerprint_key=FINGERPRINT_KEY)
    if isinstance(envelope, Envelope):
        validate(envelope, station=STATION, now=NOW)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["alg", "kid", "typ", "jwk", "crit", "b64"]), JSON))
def test_any_header_gives_a_refusal_never_an_exception(header: dict[str, Any]) -> None:
    result = open_(with_header(header))
    assert isinstance(result, Refused)
    assert result.command_id is None
    assert result.error_code in (ErrorCode.BAD_SIGNATURE, ErrorCode.UNKNOWN_KEY)


@pytest.mark.parametrize("form", ["plain", "sealed", "signed"])
def test_a_request_is_parsed_once_on_its_way_to_a_command(
    form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gate parses it; the envelope and the rules read the gate's object, not the bytes."""
    request = {**REQUEST, "credentials": CREDENTIALS}
    if form == "sealed":
        request = sealed_request()
    payload = signed(request) if form == "signed" else json.dumps(request).encode()
    parsed: list[str] = []
    loads = json.loads

    def counting(text: str | bytes, **options: Any) -> Any:
        value = loads(text, **options)
        if isinstance(value, dict) and value.get("id") == REQUEST["id"]:
            parsed.append(form)  # the request's object (not a token's header or a JWE's)
        return value

    monkeypatch.setattr(json, "loads", counting)
    opened = open_(payload, require_signed=form == "signed")
    assert isinstance(opened, Opened)
    envelope = read_envelope(opened.request, fingerprint_key=FINGERPRINT_KEY)
    assert isinstance(envelope, Envelope)
    assert isinstance(validate(envelope, station=STATION, now=NOW), CommandRequest)
    assert parsed == [form]
