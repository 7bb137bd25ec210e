"""Request parsing: every field's rule, each failure mapped to its code with the field named."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lockgate.contract import (
    CommandRequest,
    Envelope,
    ErrorDocument,
    RegisteredLock,
    RejectedRequest,
    Station,
    format_time,
    parse_time,
    read_envelope,
    validate,
)
from lockgate.contract.request import FIELDS
from lockgate.model import CommandName, ErrorCode, ForceReason, Profile
from lockgate.protocol.credentials import ShareeCredentials, signed_byte_string

NOW = datetime(2026, 11, 22, 10, 15, 3, 123456, tzinfo=UTC)
KEY = b"k" * 32
STATION = Station(
    "FR101",
    "47.976634",
    "7.825490",
    (
        RegisteredLock(
            "FR1540", "ISHAREIT-2200540", "00000000-0000-0000-0000-fc3c002a2add", Profile.SHAREE
        ),
        RegisteredLock(
            "FR1542", "ILOCKIT-4500329", "00000000-0000-0000-0000-d41299004503", Profile.NOBOND
        ),
    ),
)
K_SEED = bytes(range(100, 116))
K_U = bytes(range(200, 224))
SHAREE = {"K_seed": signed_byte_string(K_SEED), "K_u": list(K_U)}


def check(document: dict[str, Any]) -> CommandRequest | RejectedRequest:
    envelope = read_envelope(json.dumps({"id": "c1", **document}).encode(), fingerprint_key=KEY)
    assert isinstance(envelope, Envelope)
    return validate(envelope, station=STATION, now=NOW)


def rejected(document: dict[str, Any]) -> RejectedRequest:
    verdict = check(document)
    assert isinstance(verdict, RejectedRequest), verdict
    return verdict


def test_times_are_rfc3339_utc_with_milliseconds() -> None:
    assert format_time(NOW) == "2026-11-22T10:15:03.123Z"
    assert parse_time("2026-11-22T11:15:03.123+01:00") == NOW.replace(microsecond=123000)
    with pytest.raises(ValueError, match="offset"):
        parse_time("2026-11-22T10:15:03")
    with pytest.raises(ValueError, match="time zone"):
        format_time(datetime(2026, 1, 1))


CASES: dict[str, tuple[dict[str, Any], ErrorCode, str]] = {
    "command-missing": ({"bike": "FR1540"}, ErrorCode.BAD_REQUEST, "command: required"),
    "command-unknown": (
        {"command": "explode", "bike": "FR1540"},
        ErrorCode.BAD_REQUEST,
        "command: unknown",
    ),
    "command-not-string": ({"command": 3, "bike": "FR1540"}, ErrorCode.BAD_REQUEST, "command:"),
    "bike-missing": ({"command": "lock"}, ErrorCode.BAD_REQUEST, "bike: required"),
    "bike-not-string": ({"command": "lock", "bike": 1540}, ErrorCode.BAD_REQUEST, "bike:"),
    "bike-not-here": ({"command": "lock", "bike": "FR9"}, ErrorCode.NOT_FOUND, "bike: FR9 is not"),
    "timeout-past": (
        {"command": "lock", "bike": "FR1540", "timeout_at": "2026-11-22T10:15:03.000Z"},
        ErrorCode.INVALID_TIMEOUT_AT,
        "timeout_at: must be in the future",
    ),
    "timeout-malformed": (
        {"command": "lock", "bike": "FR1540", "timeout_at": "tomorrow"},
        ErrorCode.INVALID_TIMEOUT_AT,
        "timeout_at: not an RFC 3339",
    ),
    "timeout-naive": (
        {"command": "lock", "bike": "FR1540", "timeout_at": "2030-01-01T00:00:00"},
        ErrorCode.INVALID_TIMEOUT_AT,
        "timeout_at:",
    ),
    "timeout-number": (
        {"command": "lock", "bike": "FR1540", "timeout_at": 1893456000},
        ErrorCode.INVALID_TIMEOUT_AT,
        "timeout_at:",
    ),
    "user-empty": (
        {"command": "book", "bike": "FR1540", "user_id": ""},
        ErrorCode.BAD_REQUEST,
        "user_id:",
    ),
    "book-without-user": (
        {"command": "book", "bike": "FR1540"},
        ErrorCode.BAD_REQUEST,
        "user_id: required for book",
    ),
    "cancel-without-user": (
        {"command": "cancel-booking", "bike": "FR1540"},
        ErrorCode.BAD_REQUEST,
        "user_id: required for cancel-booking",
    ),
    "credentials-short": (
        {
            "command": "unlock",
            "bike": "FR1540",
            "credentials": {"K_seed": "[1, 2]", "K_u": list(K_U)},
        },
        ErrorCode.BAD_REQUEST,
        "credentials: K_seed must be 16 bytes",
    ),
    "credentials-wrong-profile": (
        {"command": "unlock", "bike": "FR1542", "credentials": SHAREE},
        ErrorCode.BAD_REQUEST,
        "credentials: nobond credentials: missing",
    ),
    "credentials-not-object": (
        {"command": "unlock", "bike": "FR1540", "credentials": "[1, 2, 3]"},
        ErrorCode.BAD_REQUEST,
        "credentials:",
    ),
    "credentials-empty": (
        {"command": "unlock", "bike": "FR1540", "credentials": {}},
        ErrorCode.BAD_REQUEST,
        "credentials: sharee credentials: missing K_seed, K_u",
    ),
    "end-rental-on-unlock": (
        {"command": "unlock", "bike": "FR1540", "end_rental": True},
        ErrorCode.BAD_REQUEST,
        "end_rental: only for lock",
    ),
    "end-rental-not-bool": (
        {"command": "lock", "bike": "FR1540", "end_rental": "yes"},
        ErrorCode.BAD_REQUEST,
        "end_rental:",
    ),
    "force-unlock-no-reason": (
        {"command": "force-unlock", "bike": "FR1540"},
        ErrorCode.BAD_REQUEST,
        "reason: required for force-unlock",
    ),
    "force-unlock-bad-reason": (
        {"command": "force-unlock", "bike": "FR1540", "reason": "BORED"},
        ErrorCode.BAD_REQUEST,
        "reason: not one of",
    ),
    "force-unlock-other-no-comment": (
        {"command": "force-unlock", "bike": "FR1540", "reason": "OTHER"},
        ErrorCode.BAD_REQUEST,
        "comment: at least 5 characters when reason is OTHER",
    ),
    "force-unlock-other-short-comment": (
        {
            "command": "force-unlock",
            "bike": "FR1540",
            "reason": "STUCK_USER_OTHER_ISSUE",
            "comment": " abcd  ",
        },
        ErrorCode.BAD_REQUEST,
        "comment: at least 5",
    ),
    "reason-on-force-lock": (
        {"command": "force-lock", "bike": "FR1540", "reason": "TESTING"},
        ErrorCode.BAD_REQUEST,
        "reason: only for force-unlock",
    ),
    "comment-on-unlock": (
        {"command": "unlock", "bike": "FR1540", "comment": "hello there"},
        ErrorCode.BAD_REQUEST,
        "comment: only for force-unlock",
    ),
    "power-cycle-on-lock": (
        {"command": "lock", "bike": "FR1540", "power_cycle": True},
        ErrorCode.BAD_REQUEST,
        "power_cycle: only for sync-device",
    ),
    "provision-without-credentials": (
        {"command": "provision", "bike": "FR1540"},
        ErrorCode.BAD_REQUEST,
        "credentials: required for provision",
    ),
    "unknown-field": (
        {"command": "lock", "bike": "FR1540", "end_rentl": True},
        ErrorCode.BAD_REQUEST,
        "end_rentl: not a field of the contract",
    ),
    "take-photo": (
        {"command": "take-photo", "bike": "FR1540"},
        ErrorCode.COMMAND_NOT_SUPPORTED,
        "take-photo:",
    ),
}


@pytest.mark.parametrize(("document", "code", "reason"), list(CASES.values()), ids=list(CASES))
def test_each_rule_has_its_code_and_names_its_field(
    document: dict[str, Any], code: ErrorCode, reason: str
) -> None:
    verdict = rejected(document)
    assert verdict.error_code is code
    assert verdict.reason.startswith(reason), verdict.reason
    assert verdict.id == "c1"


def test_a_valid_unlock_with_defaults() -> None:
    verdict = check({"command": "unlock", "bike": "FR1540", "credentials": SHAREE, "user_id": "u"})
    assert isinstance(verdict, CommandRequest)
    assert verdict.name is CommandName.UNLOCK
    assert verdict.timeout_at == NOW + timedelta(seconds=60)
    assert verdict.credentials == ShareeCredentials(K_SEED, K_U)
    assert verdict.user_id == "u"
    assert "credentials" not in verdict.parameters()


def test_book_defaults_to_an_hour_and_force_unlock_takes_a_comment() -> None:
    book = check({"command": "book", "bike": "FR1540", "user_id": "u"})
    assert isinstance(book, CommandRequest)
    assert book.timeout_at == NOW + timedelta(hours=1)
    force = check(
        {"command": "force-unlock", "bike": "FR1540", "reason": "OTHER", "comment": "stuck bolt"}
    )
    assert isinstance(force, CommandRequest)
    assert (force.reason, force.comment) == (ForceReason.OTHER, "stuck bolt")


def test_provision_with_an_empty_object_removes() -> None:
    verdict = check({"command": "provision", "bike": "FR1540", "credentials": {}})
    assert isinstance(verdict, CommandRequest)
    assert verdict.remove_credentials
    assert verdict.credentials is None


def test_no_key_in_a_repr_a_reason_or_a_fingerprint() -> None:
    verdict = check({"command": "unlock", "bike": "FR1540", "credentials": SHAREE})
    broken = rejected(
        {"command": "unlock", "bike": "FR1540", "credentials": {**SHAREE, "K_u": list(K_U[:23])}}
    )
    for text in (repr(verdict), broken.reason, verdict.fingerprint):
        assert K_SEED.hex() not in text
        assert "100, 101, 102" not in text
        assert K_U.hex() not in text


def test_the_fingerprint_follows_the_content_not_the_key_order() -> None:
    one = read_envelope(b'{"id": "a", "command": "lock", "bike": "FR1540"}', fingerprint_key=KEY)
    two = read_envelope(b'{"bike": "FR1540", "command": "lock", "id": "a"}', fingerprint_key=KEY)
    other = read_envelope(
        b'{"id": "a", "command": "unlock", "bike": "FR1540"}', fingerprint_key=KEY
    )
    assert isinstance(one, Envelope)
    assert isinstance(two, Envelope)
    assert isinstance(other, Envelope)
    assert one.fingerprint == two.fingerprint != other.fingerprint


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_read_envelope_never_raises(payload: bytes) -> None:
    result = read_envelope(payload, fingerprint_key=KEY)
    assert isinstance(result, Envelope | ErrorDocument)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*(field for field in FIELDS if field != "id"), "x"]),
        JSON
        | st.sampled_from(
            [
                "unlock",
                "book",
                "force-unlock",
                "provision",
                "FR1540",
                "OTHER",
                "2030-01-01T00:00:00Z",
            ]
        ),
    )
)
def test_validate_never_raises(document: dict[str, Any]) -> None:
    assert isinstance(check(document), CommandRequest | RejectedRequest)


@pytest.mark.parametrize(
    "text",
    [
        "0001-01-01T00:00:00+01:00",  # before datetime.min once converted to UTC
        "9999-12-31T23:59:59-01:00",  # after datetime.max once converted to UTC
        "0000-01-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-01-01T00:00:00",
        "2026-01-01 00:00:00Z",
        "2026-01-01T00:00Z",
        "+02026-01-01T00:00:00Z",
        "2026-01-01T00:00:00+0100",
        "２０２６-01-01T00:00:00Z",  # noqa: RUF001 - full-width digits are not RFC 3339 digits
    ],
)
def test_times_outside_rfc3339_or_utc_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time(text)


def test_times_are_written_with_four_digit_years_and_read_back() -> None:
    early = datetime(999, 6, 1, tzinfo=UTC)
    assert format_time(early) == "0999-06-01T00:00:00.000Z"
    assert parse_time(format_time(early)) == early
    assert parse_time("2026-11-22t10:15:03.123456789z") == datetime(
        2026, 11, 22, 10, 15, 3, 123456, tzinfo=UTC
    )
