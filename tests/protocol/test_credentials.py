"""Credentials: every accepted form, clear errors for the rest, and no key byte ever shown."""

from __future__ import annotations

import logging
import pickle
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from lockgate.protocol import (
    CredentialsError,
    NobondCredentials,
    ShareeCredentials,
    parse_credentials,
)
from lockgate.protocol.credentials import parse_key_bytes, signed_byte_string

K_SEED = "[122, -30, 85, -21, -47, 71, 54, 25, -60, -53, 78, 49, -74, 84, 72, 63]"
K_U = (
    "[-26, 6, -7, -80, 82, -71, -117, 57, 24, -91, 32, -44, 80, -112, 32, -66, -51, -106, 100,"
    " -99, 0, 0, 0, 0]"
)
LTK = "62f6ba6f9765359954a67739afc2c2c580a12ea27880f08d97173a476e462c95"
PHONE_ID = "ed9e2eb1b730a7f6"


def key_forms(raw: bytes) -> list[str]:
    """Every way a key byte string could leak into text."""
    return [
        raw.hex(),
        raw.hex().upper(),
        repr(raw),
        signed_byte_string(raw),
        str(list(raw)),
        raw[:6].hex(),
    ]


def test_sharee_from_copri_strings_and_arrays() -> None:
    from_strings = ShareeCredentials.parse(K_SEED, K_U)
    assert from_strings.k_seed.hex() == "7ae255ebd1473619c4cb4e31b654483f"
    assert from_strings.key == from_strings.k_u
    assert len(from_strings.key) == 24
    assert from_strings.identity == from_strings.k_seed
    assert from_strings.auth_id == 1
    unsigned = list(from_strings.k_seed)
    assert ShareeCredentials.parse(unsigned, list(from_strings.k_u)) == from_strings
    assert parse_credentials("sharee", {"K_seed": K_SEED, "K_u": K_U}) == from_strings


def test_nobond_from_hex() -> None:
    credentials = parse_credentials(
        "nobond", {"auth_id": 155, "phone_id": PHONE_ID.upper(), "ltk": LTK}
    )
    assert isinstance(credentials, NobondCredentials)
    assert credentials.auth_id == 155
    assert credentials.identity.hex() == PHONE_ID
    assert credentials.key.hex() == LTK


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"K_seed": K_SEED}, "missing K_u"),
        ({"K_seed": K_SEED, "K_u": K_U, "ltk": LTK}, "unexpected ltk"),
        ({"K_seed": "[1, 2, 3]", "K_u": K_U}, "K_seed must be 16 bytes, not 3"),
        ({"K_seed": K_SEED, "K_u": K_U[:-4] + "]"}, "K_u must be 24 bytes, not 23"),
        ({"K_seed": "[1, 2, 300" + ", 0" * 13 + "]", "K_u": K_U}, r"K_seed\[2\] is outside"),
        ({"K_seed": "[1, 2, -129" + ", 0" * 13 + "]", "K_u": K_U}, r"K_seed\[2\] is outside"),
        ({"K_seed": "[1, 2.5" + ", 0" * 14 + "]", "K_u": K_U}, r"K_seed\[1\] is not an integer"),
        ({"K_seed": "[true" + ", 0" * 15 + "]", "K_u": K_U}, r"K_seed\[0\] is not an integer"),
        ({"K_seed": "not a list", "K_u": K_U}, "K_seed must be a list"),
        ({"K_seed": 12, "K_u": K_U}, "K_seed must be a list"),
        ({"K_seed": '"abc"', "K_u": K_U}, "K_seed must be a list"),
    ],
)
def test_sharee_errors_name_the_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        parse_credentials("sharee", document)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"auth_id": 300, "phone_id": PHONE_ID, "ltk": LTK}, "auth_id must be an integer"),
        ({"auth_id": True, "phone_id": PHONE_ID, "ltk": LTK}, "auth_id must be an integer"),
        ({"auth_id": "3", "phone_id": PHONE_ID, "ltk": LTK}, "auth_id must be an integer"),
        ({"auth_id": 3, "phone_id": "xyz", "ltk": LTK}, "phone_id must be a string of hex"),
        ({"auth_id": 3, "phone_id": PHONE_ID[:-2], "ltk": LTK}, "phone_id must be 8 bytes"),
        ({"auth_id": 3, "phone_id": PHONE_ID, "ltk": LTK + "00"}, "ltk must be 32 bytes"),
        ({"auth_id": 3, "phone_id": PHONE_ID, "ltk": LTK[:-1]}, "ltk must be a string of hex"),
    ],
)
def test_nobond_errors_name_the_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        parse_credentials("nobond", document)


def test_unknown_profile_and_non_object() -> None:
    with pytest.raises(CredentialsError, match="unknown lock profile"):
        parse_credentials("bikeep", {})
    with pytest.raises(CredentialsError, match="must be an object"):
        parse_credentials("sharee", [1, 2])


def test_direct_construction_checks_lengths() -> None:
    with pytest.raises(CredentialsError):
        ShareeCredentials(bytes(15), bytes(24))
    with pytest.raises(CredentialsError):
        ShareeCredentials(bytes(16), bytes(23))
    with pytest.raises(CredentialsError):
        NobondCredentials(3, bytes(7), bytes(32))
    with pytest.raises(CredentialsError):
        NobondCredentials(256, bytes(8), bytes(32))


@given(st.binary(min_size=16, max_size=16))
def test_signed_string_round_trips(raw: bytes) -> None:
    assert parse_key_bytes(signed_byte_string(raw), "K_seed", 16) == raw


def test_no_key_byte_in_repr_str_format_or_logs(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    sharee = ShareeCredentials.parse(K_SEED, K_U)
    nobond = NobondCredentials.parse(155, PHONE_ID, LTK)
    secrets = [sharee.k_seed, sharee.k_u[:20], nobond.phone_id, nobond.ltk]

    texts = [repr(sharee), str(sharee), f"{sharee}", f"{nobond!r}", str([sharee, nobond])]
    texts.append(repr({"credentials": nobond}))

    caplog.set_level(logging.DEBUG)
    logging.getLogger("lockgate.test").info("credentials %s %r", sharee, nobond)
    structlog.configure(processors=[structlog.processors.JSONRenderer()])
    try:
        structlog.get_logger().info("session", credentials=sharee, other=nobond)
        structlog.configure(processors=[structlog.dev.ConsoleRenderer(colors=False)])
        structlog.get_logger().info("session", credentials=sharee, other=nobond)
    finally:
        structlog.reset_defaults()
    texts.append(caplog.text)
    texts.append(capsys.readouterr().out)

    joined = "\n".join(texts)
    assert "ShareeCredentials(K_seed=<16 bytes>, K_u=<24 bytes>)" in joined
    assert "NobondCredentials(auth_id=155" in joined
    for secret in secrets:
        for form in key_forms(secret):
            assert form not in joined


def test_errors_never_quote_key_values() -> None:
    bad = "[" + ", ".join(["77"] * 15) + "]"
    with pytest.raises(CredentialsError) as caught:
        parse_credentials("sharee", {"K_seed": bad, "K_u": K_U})
    assert "77" not in str(caught.value)
    with pytest.raises(CredentialsError) as caught:
        parse_credentials("nobond", {"auth_id": 1, "phone_id": PHONE_ID, "ltk": LTK[:-2]})
    assert LTK[:10] not in str(caught.value)


def test_credentials_are_frozen_values() -> None:
    sharee = ShareeCredentials.parse(K_SEED, K_U)
    with pytest.raises(AttributeError):
        sharee.k_u = bytes(24)  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(sharee)) == sharee
