"""Bad input never raises out of submit and never changes a lock (property tests)."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lockgate.contract.request import FIELDS as REQUEST_FIELDS
from lockgate.model import Admission
from lockgate.store import Correlation
from tests.engine.harness import SHAREE_JSON, Harness

FIELDS = [*REQUEST_FIELDS, "extra"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=10,
)
VALUES = st.sampled_from(
    [
        "unlock",
        "lock",
        "book",
        "force-unlock",
        "provision",
        "FR1540",
        "FR9999",
        "2020-01-01T00:00:00Z",
        "not a time",
        "",
        "x" * 70,
        SHAREE_JSON,
        {"K_seed": "[1, 2]", "K_u": [300]},
        {},
    ]
)
REQUESTS = st.dictionaries(st.sampled_from(FIELDS), VALUES | JSON, max_size=8)
SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(payload=st.binary(max_size=200))
async def test_any_bytes(harness: Harness, payload: bytes) -> None:
    before = [harness.engine.lock_record(lock.bike) for lock in harness.station.locks]
    submission = await harness.engine.submit(payload)
    assert submission.admission in set(Admission)
    assert [harness.engine.lock_record(lock.bike) for lock in harness.station.locks] == before


@SETTINGS
@given(request=REQUESTS)
async def test_any_request_shape(harness: Harness, request: dict[str, Any]) -> None:
    """Whatever the shape, submit answers; anything but a new valid command changes nothing."""
    before = [harness.engine.lock_record(lock.bike) for lock in harness.station.locks]
    calls = len(harness.radio.calls)
    submission = await harness.engine.submit(json.dumps(request).encode())
    await harness.engine.wait_idle(5)
    if submission.admission is Admission.ACCEPTED:
        return
    assert [harness.engine.lock_record(lock.bike) for lock in harness.station.locks] == before
    assert len(harness.radio.calls) == calls


# --- hostile values: what an attacker, not a buggy client, sends ---------------------------------


def _nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
HOSTILE = (
    st.sampled_from(["\ud800", "a\udfffb", "\udc00" * 3])
    | st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0999-06-01T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "2026-01-01T00:00:00.123456789123Z",
            "2026-02-30T00:00:00Z",
            "+12026-01-01T00:00:00Z",
        ]
    )
    | st.integers(min_value=1, max_value=1200).map(_nested)
    | st.sampled_from(["B" * 65, "B" * 5000, "x\x00\u2028y"])
    | st.sampled_from([float("nan"), float("inf"), 10**40])
    | st.text(min_size=1, max_size=30)
)
HOSTILE_KEYS = st.sampled_from([*FIELDS, "\ud800", "k" * 100, "end_rental"])


@st.composite
def hostile_requests(draw: st.DrawFn) -> bytes:
    document: dict[str, Any] = {"id": draw(st.sampled_from(["h1", "h2", "h3"]))}
    document.update(
        draw(st.sampled_from([{"command": "unlock", "bike": "FR1540"}, {"command": "book"}]))
    )
    for key in draw(st.lists(HOSTILE_KEYS, min_size=1, max_size=3)):
        document[key] = draw(HOSTILE)
    try:
        return json.dumps(document).encode()  # lone surrogates become \\udXXX escapes
    except (ValueError, RecursionError):
        return b'{"id": "h9", "bike": "' + b"\\ud800" + b'"}'


@SETTINGS
@given(payload=hostile_requests())
async def test_hostile_values_get_one_clean_answer(harness: Harness, payload: bytes) -> None:
    """Every hostile request gets exactly one answer; everything stored is valid UTF-8 with
    RFC 3339 times, small, and repeating the request never raises."""
    store = harness.store
    before = await store.last_queued_id()
    motions = len(harness.radio.motions)
    submission = await harness.engine.submit(payload)
    middle = await store.last_queued_id()
    again = await harness.engine.submit(payload)
    await harness.engine.wait_idle(5)
    assert again.admission in set(Admission)
    rows = await store.queued(after=before, limit=1000)
    first = [row for row in rows if row.id <= middle]
    # An id an earlier example used is answered with its stored document, at whatever version.
    repeated = submission.admission is Admission.REPEATED
    answers = [
        row
        for row in first
        if (
            row.topic.startswith("commands/")
            and (repeated or json.loads(row.payload)["version"] == 1)
        )
        or row.topic == "errors"
    ]
    assert len(answers) == 1, [row.topic for row in first]
    for row in rows:
        text = row.payload.decode("utf-8")  # strict: no lone surrogate reached the store
        document = json.loads(text)
        for stamp in _times(document):
            assert RFC3339.match(stamp), stamp
        if row.topic == "errors" or document.get("state", {}).get("value") == "ERROR":
            assert len(row.payload) <= 2048, "a refusal echoes nothing large"
    if submission.admission is not Admission.ACCEPTED:
        assert len(harness.radio.motions) == motions
    if submission.command_id is not None:
        record = await store.command(submission.command_id)  # reads back: times parse again
        assert record is not None


def _times(document: Any) -> list[str]:
    found: list[str] = []
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if key in ("timestamp", "timeout_at", "received_at", "time") and isinstance(
                    item, str
                ):
                    found.append(item)
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
    return found


async def test_mqtt_properties_are_kept_only_within_bounds(harness: Harness) -> None:
    """Correlation data and a response topic are the link's, but anyone's in content: over 1 KiB,
    or a topic that is not UTF-8, they are not kept (the document still goes to its topic)."""
    cases = [
        ("p1", Correlation(b"x" * 2000, "reply/" + "t" * 2000)),
        ("p2", Correlation(b"ok", "reply/\udc80")),
        ("p3", Correlation(b"ok", "reply/here")),
    ]
    for command_id, correlation in cases:
        payload = json.dumps({"id": command_id, "command": "book", "bike": "FR9999"}).encode()
        await harness.engine.submit(payload, correlation=correlation)
    kept = {
        row.topic: row.correlation
        for row in await harness.store.queued(after=0, limit=1000)
        if row.topic in ("commands/p1", "commands/p2", "commands/p3")
    }
    assert kept == {
        "commands/p1": Correlation(None, None),
        "commands/p2": Correlation(b"ok", None),
        "commands/p3": Correlation(b"ok", "reply/here"),
    }
