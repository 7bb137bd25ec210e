"""Every error code of the contract, produced through the engine's real interface."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from joserfc.jwk import OKPKey

from lockgate.engine import Submission
from lockgate.model import Admission, CommandState, ErrorCode, HardwareState, LockState
from lockgate.protocol.credentials import signed_byte_string
from lockgate.radio import Outcome
from tests.engine.harness import BACKEND_KEY, SHAREE_JSON, Harness

BIKE = "FR1540"
WRONG = {"K_seed": signed_byte_string(bytes(16)), "K_u": signed_byte_string(bytes(24))}


async def ended_with(harness: Harness, **fields: object) -> ErrorCode | None:
    record = await harness.run(**fields)
    assert record.state.final
    if record.error_code is not None:
        assert record.state is CommandState.ERROR
        assert record.reason  # every code comes with a clear reason
    return record.error_code


async def bad_request(h: Harness) -> ErrorCode | None:
    submission = await h.send(id="bad", command="unlock")
    record = await h.store.command("bad")
    assert record is not None
    assert record.reason is not None
    assert record.reason.startswith("bike:")
    assert submission.admission is Admission.REJECTED
    return record.error_code


async def invalid_timeout_at(h: Harness) -> ErrorCode | None:
    return await ended_with(
        h, command="unlock", bike=BIKE, credentials=SHAREE_JSON, timeout_at=h.later(-1)
    )


async def not_found(h: Harness) -> ErrorCode | None:
    return await ended_with(h, command="unlock", bike="FR9999", credentials=SHAREE_JSON)


async def not_supported(h: Harness) -> ErrorCode | None:
    return await ended_with(h, command="take-photo", bike=BIKE)


async def missing_credentials(h: Harness) -> ErrorCode | None:
    code = await ended_with(h, command="unlock", bike=BIKE)
    assert h.radio.calls == []  # the lock is not even connected
    return code


async def auth_failed(h: Harness) -> ErrorCode | None:
    return await ended_with(h, command="unlock", bike=BIKE, credentials=WRONG)


def scripted(
    outcome: Outcome, command: str = "unlock"
) -> Callable[[Harness], Awaitable[ErrorCode | None]]:
    async def scenario(h: Harness) -> ErrorCode | None:
        h.radio.locks[BIKE].failures.append(outcome)
        return await ended_with(h, command=command, bike=BIKE, credentials=SHAREE_JSON)

    return scenario


async def lock_blocked(h: Harness) -> ErrorCode | None:
    code = await scripted(Outcome.BLOCKED)(h)
    lock = h.engine.lock_record(BIKE)
    assert lock is not None
    assert lock.hardware_state is HardwareState.ERROR
    assert (await h.events("health"))[-1]["hardware_state"] == "ERROR"
    return code


async def timed_out(h: Harness) -> ErrorCode | None:
    h.radio.locks[BIKE].motor_s = 1.0
    return await ended_with(
        h, command="unlock", bike=BIKE, credentials=SHAREE_JSON, timeout_at=h.later(0.3)
    )


async def already_booked(h: Harness) -> ErrorCode | None:
    await h.run(command="book", bike=BIKE, user_id="U")
    return await ended_with(h, command="book", bike=BIKE, user_id="V")


async def booked_by_other(h: Harness) -> ErrorCode | None:
    await h.run(command="book", bike=BIKE, user_id="U")
    return await ended_with(h, command="cancel-booking", bike=BIKE, user_id="V")


async def not_booked(h: Harness) -> ErrorCode | None:
    return await ended_with(h, command="cancel-booking", bike=BIKE, user_id="V")


async def already_occupied(h: Harness) -> ErrorCode | None:
    await h.run(command="unlock", bike=BIKE, user_id="U", credentials=SHAREE_JSON)
    return await ended_with(h, command="unlock", bike=BIKE, user_id="V", credentials=SHAREE_JSON)


async def conflict(h: Harness) -> ErrorCode | None:
    await h.run(id="same", command="book", bike=BIKE, user_id="U")
    submission = await h.send(id="same", command="book", bike=BIKE, user_id="V")
    assert submission.admission is Admission.CONFLICT
    errors = [doc for topic, doc in await h.messages() if topic == "errors"]
    assert errors[-1]["correlation_id"] == "same"
    assert errors[-1]["status_code"] == 409
    record = await h.store.command("same")
    assert record is not None
    assert record.state is CommandState.SUCCESS  # the first request's command is untouched
    return ErrorCode(errors[-1]["error_code"])


async def internal(h: Harness) -> ErrorCode | None:
    h.radio.locks[BIKE].crash.append(RuntimeError("a driver bug"))
    code = await ended_with(h, command="unlock", bike=BIKE, credentials=SHAREE_JSON)
    # The lock's queue goes on after a bug.
    assert await ended_with(h, command="unlock", bike=BIKE, credentials=SHAREE_JSON) is None
    return code


async def interrupted(h: Harness) -> ErrorCode | None:
    """The daemon stops while an unlock is at the lock; a rider closes the lock before the next
    start; the read after the restart shows it closed: the unlock ends INTERRUPTED, unrepeated."""
    await h.run(command="provision", bike=BIKE, credentials=SHAREE_JSON)
    lock = h.radio.locks[BIKE]
    lock.hold = asyncio.Event()
    await h.send(id="cut", command="unlock", bike=BIKE)
    await h.radio_moved(BIKE)
    await h.engine.stop(grace_s=0)
    await h.close()
    await asyncio.wait_for(lock.arrived.wait(), 5)  # the motor ran to its end
    lock.state = LockState.LOCKED  # closed by hand while the gateway was down
    lock.hold = None
    restarted = await Harness(h.path, h.radio, boot_id="boot-2").start()
    try:
        await restarted.engine.wait_idle(5)
        record = await restarted.store.command("cut")
    finally:
        await restarted.close()
    assert record is not None
    assert h.radio.unlocks(BIKE) == 1
    return record.error_code


async def refused(h: Harness, submission: Submission) -> ErrorCode | None:
    """A signed or sealed request's refusal: answered where the contract says, nothing moved."""
    if submission.command_id is None:
        assert submission.admission is Admission.UNUSABLE
        topic, document = (await h.messages())[-1]
        assert topic == "errors"
        assert document["error_code"] == submission.error_code
        assert document["error_message"]
    else:
        assert submission.admission is Admission.REJECTED
        record = await h.store.command(submission.command_id)
        assert record is not None
        assert record.state is CommandState.ERROR
        assert record.error_code is submission.error_code
        assert record.reason
    await h.engine.wait_idle(5)
    assert h.radio.calls == []
    return submission.error_code


def unlock(h: Harness, **fields: object) -> dict[str, object]:
    return {"command": "unlock", "bike": BIKE, "credentials": h.sealed(SHAREE_JSON)} | fields


async def unsigned(h: Harness) -> ErrorCode | None:
    """Where only signed requests are taken, a plain one is refused (the station restarted so)."""
    await h.close()
    strict = Harness(h.path, h.radio, gate=replace(h.gate, require_signed=True))
    await strict.start()
    try:
        return await refused(strict, await strict.send(id="plain", **unlock(h)))
    finally:
        await strict.close()


async def bad_signature(h: Harness) -> ErrorCode | None:
    forger = OKPKey.generate_key("Ed25519", private=True)
    token = h.token(unlock(h), key=forger, kid=BACKEND_KEY.thumbprint())
    return await refused(h, await h.engine.submit(token))


async def unknown_key(h: Harness) -> ErrorCode | None:
    forger = OKPKey.generate_key("Ed25519", private=True)
    return await refused(h, await h.engine.submit(h.token(unlock(h), key=forger)))


async def wrong_audience(h: Harness) -> ErrorCode | None:
    return await refused(h, await h.engine.submit(h.token(unlock(h), aud="FR102")))


async def expired(h: Harness) -> ErrorCode | None:
    token = h.token(unlock(h, timeout_at=h.later(-5)))
    return await refused(h, await h.engine.submit(token))


async def id_mismatch(h: Harness) -> ErrorCode | None:
    return await refused(h, await h.engine.submit(h.token(unlock(h), jti="another")))


async def sealed_unreadable(h: Harness) -> ErrorCode | None:
    other_station = OKPKey.generate_key("X25519", private=True)
    request = unlock(h, credentials=h.sealed(SHAREE_JSON, other_station))
    return await refused(h, await h.engine.submit(h.token(request)))


SCENARIOS: dict[ErrorCode, Callable[[Harness], Awaitable[ErrorCode | None]]] = {
    ErrorCode.BAD_REQUEST: bad_request,
    ErrorCode.INVALID_TIMEOUT_AT: invalid_timeout_at,
    ErrorCode.NOT_FOUND: not_found,
    ErrorCode.COMMAND_NOT_SUPPORTED: not_supported,
    ErrorCode.MISSING_CREDENTIALS: missing_credentials,
    ErrorCode.AUTH_FAILED: auth_failed,
    ErrorCode.LOCK_BLOCKED: lock_blocked,
    ErrorCode.LOCK_MOVED: scripted(Outcome.MOVED, "lock"),
    ErrorCode.LOCK_UNREACHABLE: scripted(Outcome.UNREACHABLE),
    ErrorCode.LOCK_REJECTED: scripted(Outcome.REJECTED),
    ErrorCode.TIMED_OUT: timed_out,
    ErrorCode.ALREADY_BOOKED: already_booked,
    ErrorCode.BOOKED_BY_OTHER_USER: booked_by_other,
    ErrorCode.NOT_BOOKED: not_booked,
    ErrorCode.ALREADY_OCCUPIED: already_occupied,
    ErrorCode.CONFLICT: conflict,
    ErrorCode.INTERNAL: internal,
    ErrorCode.INTERRUPTED: interrupted,
    ErrorCode.UNSIGNED: unsigned,
    ErrorCode.BAD_SIGNATURE: bad_signature,
    ErrorCode.UNKNOWN_KEY: unknown_key,
    ErrorCode.WRONG_AUDIENCE: wrong_audience,
    ErrorCode.EXPIRED: expired,
    ErrorCode.ID_MISMATCH: id_mismatch,
    ErrorCode.SEALED_UNREADABLE: sealed_unreadable,
}


@pytest.mark.parametrize("code", list(ErrorCode), ids=[code.value for code in ErrorCode])
async def test_error_code(harness: Harness, code: ErrorCode) -> None:
    assert code in SCENARIOS, f"no scenario produces {code}"
    assert await SCENARIOS[code](harness) is code


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\xff\xfe", "payload is not valid JSON"),
        (b"{not json", "payload is not valid JSON"),
        (b"[1, 2]", "payload is not a JSON object"),
        (b'{"command": "unlock"}', "id: required"),
        (b'{"id": "a/b#", "command": "unlock"}', "id: must be 1 to 64 of A-Z a-z 0-9 _ -"),
        (json.dumps({"id": "x" * 65}).encode(), "id: must be 1 to 64 of A-Z a-z 0-9 _ -"),
    ],
    ids=["not-utf8", "not-json", "not-object", "no-id", "bad-id-chars", "id-too-long"],
)
async def test_a_request_without_a_usable_id_gets_an_error_document(
    harness: Harness, payload: bytes, message: str
) -> None:
    submission = await harness.engine.submit(payload)
    assert submission.admission is Admission.UNUSABLE
    topic, document = (await harness.messages())[-1]
    assert topic == "errors"
    assert document["error_message"] == message
    assert document["status_code"] == 400
    assert document["error_code"] == "ERRORS.BAD_REQUEST"
    assert document["correlation_id"]
    assert harness.radio.calls == []


async def test_the_error_document_echoes_a_bad_id(harness: Harness) -> None:
    await harness.engine.submit(b'{"id": "a b"}')
    assert (await harness.messages())[-1][1]["correlation_id"] == "a b"


async def test_a_rejected_request_changes_nothing_and_is_answered_again(harness: Harness) -> None:
    before = harness.engine.lock_record(BIKE)
    payload = json.dumps({"id": "r1", "command": "unlock", "bike": BIKE, "end_rental": True})
    first = await harness.engine.submit(payload.encode())
    again = await harness.engine.submit(payload.encode())
    assert (first.admission, again.admission) == (Admission.REJECTED, Admission.REPEATED)
    documents = await harness.documents("r1")
    assert len(documents) == 2
    assert documents[0] == documents[1]
    assert documents[0]["error_code"] == "ERRORS.BAD_REQUEST"
    assert documents[0]["state"]["reason"] == "end_rental: only for lock"
    assert harness.engine.lock_record(BIKE) == before
    assert harness.radio.calls == []


async def test_timed_out_unlock_never_starts_after_its_timeout(harness: Harness) -> None:
    """An unlock queued behind a slow command whose time runs out while waiting never moves."""
    lock = harness.radio.locks[BIKE]
    lock.state = LockState.UNLOCKED
    lock.hold = asyncio.Event()  # the slow command holds the lock until the late one has ended
    await harness.send(id="slow", command="lock", bike=BIKE, credentials=SHAREE_JSON)
    await harness.radio_moved(BIKE)
    await harness.send(
        id="late",
        command="unlock",
        bike=BIKE,
        credentials=SHAREE_JSON,
        timeout_at=harness.later(0.2),
    )
    async with asyncio.timeout(10):  # until the store holds the late command's end
        while (late := await harness.store.command("late")) is None or not late.state.final:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert late.error_code is ErrorCode.TIMED_OUT  # ended while still waiting, on time
    slow = await harness.store.command("slow")
    assert slow is not None
    assert not slow.state.final  # the command ahead of it is still at the lock
    lock.hold.set()
    await harness.engine.wait_idle(5)
    assert harness.radio.unlocks(BIKE) == 0
    assert [doc["state"]["value"] for doc in await harness.documents("late")] == [
        "NOT_SENT",
        "ERROR",
    ]


async def test_timeout_defaults_to_a_minute(harness: Harness) -> None:
    await harness.send(id="d", command="sync-device", bike=BIKE, credentials=SHAREE_JSON)
    record = await harness.store.command("d")
    assert record is not None
    assert record.timeout_at is not None
    assert timedelta(seconds=59) < record.timeout_at - record.received_at <= timedelta(seconds=60)


async def test_a_refused_request_echoes_no_unknown_command_name(harness: Harness) -> None:
    await harness.send(id="odd", command="x" * 500, bike="y" * 500)
    document = (await harness.documents("odd"))[-1]
    assert (document["name"], document["bike"]) == (None, None)
    assert document["error_code"] == "ERRORS.BAD_REQUEST"
    assert [event["name"] for event in document["events"]] == [
        "REQUEST_COMMAND",
        "RESPONSE_COMMAND",
    ]
