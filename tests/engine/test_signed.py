"""Signed and sealed requests through the engine's admission: what runs, what is refused, and what
a refusal may and may not store (docs/mqtt-contract.md, Signed and sealed commands)."""

from __future__ import annotations

import base64
import json

from joserfc.jwk import OKPKey

from lockgate.model import Admission, BookingState, CommandState, ErrorCode
from tests.engine.harness import BACKEND_KEY, SHAREE_JSON, Harness

BIKE = "FR1540"


def unlock(h: Harness, **fields: object) -> dict[str, object]:
    return {"command": "unlock", "bike": BIKE, "credentials": h.sealed(SHAREE_JSON)} | fields


def with_payload(token: bytes, change: dict[str, object]) -> bytes:
    """The token with its payload re-encoded after ``change``, its signature kept."""
    header, payload, signature = token.split(b".")
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps(claims | change).encode()).rstrip(b"=")
    return b".".join((header, forged, signature))


async def test_a_signed_request_with_sealed_credentials_runs(harness: Harness) -> None:
    submission = await harness.engine.submit(harness.token(unlock(harness, id="s1")))
    assert submission.admission is Admission.ACCEPTED
    await harness.engine.wait_idle(5)
    record = await harness.store.command("s1")
    assert record is not None
    assert record.state is CommandState.SUCCESS, record.reason
    assert harness.radio.unlocks(BIKE) == 1


async def test_sealed_credentials_open_in_a_plain_request_on_an_open_station(
    harness: Harness,
) -> None:
    record = await harness.run(**unlock(harness))
    assert record.state is CommandState.SUCCESS, record.reason


async def test_the_same_request_signed_again_is_a_repeat(harness: Harness) -> None:
    """Re-sending until the receipt works with tokens too: the claims and the sealing (whose
    ephemeral key differs each time) are not part of the request's content."""
    timeout_at = harness.later(60)
    first = await harness.engine.submit(
        harness.token(unlock(harness, id="s2", timeout_at=timeout_at))
    )
    again = await harness.engine.submit(
        harness.token(unlock(harness, id="s2", timeout_at=timeout_at))
    )
    assert (first.admission, again.admission) == (Admission.ACCEPTED, Admission.REPEATED)
    await harness.engine.wait_idle(5)
    assert harness.radio.unlocks(BIKE) == 1


async def test_a_late_resend_of_a_command_that_ran_gets_its_document(harness: Harness) -> None:
    """The same id, now refused (expired, say): the stored document again, nothing stored anew."""
    await harness.engine.submit(harness.token(unlock(harness, id="s3")))
    await harness.engine.wait_idle(5)
    late = harness.token(unlock(harness, id="s3", timeout_at=harness.later(-1)))
    submission = await harness.engine.submit(late)
    assert submission.admission is Admission.REPEATED
    documents = await harness.documents("s3")
    assert documents[-1]["state"]["value"] == "SUCCESS"
    assert documents[-1] == documents[-2]
    assert harness.radio.unlocks(BIKE) == 1


async def test_a_refused_signed_request_is_answered_again_the_same(harness: Harness) -> None:
    token = harness.token(unlock(harness, id="s4"), aud="FR102")
    first = await harness.engine.submit(token)
    again = await harness.engine.submit(token)
    assert (first.admission, again.admission) == (Admission.REJECTED, Admission.REPEATED)
    documents = await harness.documents("s4")
    assert len(documents) == 2
    assert documents[0] == documents[1]
    assert documents[0]["error_code"] == "ERRORS.WRONG_AUDIENCE"
    assert documents[0]["state"]["reason"] == "aud: FR102 is not this station"


async def test_a_forger_cannot_spoil_a_real_id(harness: Harness) -> None:
    """A refusal before the signature holds stores nothing under the id it names."""
    forger = OKPKey.generate_key("Ed25519", private=True)
    forged = harness.token(unlock(harness, id="real"), key=forger, kid=BACKEND_KEY.thumbprint())
    refused = await harness.engine.submit(forged)
    assert (refused.admission, refused.error_code) == (Admission.UNUSABLE, ErrorCode.BAD_SIGNATURE)
    topic, error = (await harness.messages())[-1]
    assert (topic, error["correlation_id"], error["status_code"]) == ("errors", "real", 401)
    assert await harness.store.command("real") is None
    real = await harness.engine.submit(harness.token(unlock(harness, id="real")))
    assert real.admission is Admission.ACCEPTED


async def test_a_tampered_or_replayed_token_is_refused(harness: Harness) -> None:
    token = harness.token(unlock(harness, id="s5"))
    for change in ({"bike": "FR1541"}, {"id": "s6", "jti": "s6"}, {"user_id": "u-1"}):
        submission = await harness.engine.submit(with_payload(token, change))
        assert (submission.admission, submission.error_code) == (
            Admission.UNUSABLE,
            ErrorCode.BAD_SIGNATURE,
        )
    assert await harness.store.command("s6") is None
    assert harness.radio.calls == []


async def test_a_refused_unlock_never_reaches_the_booking_table(harness: Harness) -> None:
    before = harness.engine.lock_record(BIKE)
    for token in (
        harness.token(unlock(harness, user_id="u-1"), aud="FR102"),
        harness.token(unlock(harness, user_id="u-1"), jti="other"),
        harness.token(unlock(harness, user_id="u-1", credentials="not.a.sealed.object.x")),
    ):
        submission = await harness.engine.submit(token)
        assert submission.admission is Admission.REJECTED
    await harness.engine.wait_idle(5)
    assert harness.engine.lock_record(BIKE) == before
    lock = harness.engine.lock_record(BIKE)
    assert lock is not None
    assert lock.booking is BookingState.AVAILABLE
    assert await harness.events("booking") == []
    assert harness.radio.calls == []
