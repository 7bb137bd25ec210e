"""The replayed flag set in an event's stored bytes agrees with parsing and writing them again."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from lockgate.contract.documents import Event, HealthEvent, LockStateEvent
from lockgate.model import Cause, LockState
from lockgate.store.outbox import mark_replayed

# Text that tries to look like the key: quotes, backslashes, the key itself, other scripts.
_HOSTILE = st.one_of(
    st.text(),
    st.sampled_from(['"replayed":false', '\\"replayed\\":false', "\\", '"', '"replayed":', "é☃"]),
    st.lists(st.sampled_from(['"', "\\", "replayed", ":", "false", ",", "{", "}"])).map("".join),
)


def _events() -> st.SearchStrategy[Event]:
    common = {
        "event_id": _HOSTILE,
        "station": _HOSTILE,
        "boot_id": _HOSTILE,
        "seq": st.integers(min_value=0, max_value=2**53),
        "bike": st.none() | _HOSTILE,
        "at": st.just(datetime(2026, 11, 23, 12, 0, tzinfo=UTC)),
        "cause": st.none() | st.sampled_from(Cause),
        "command_id": st.none() | _HOSTILE,
        "latitude": _HOSTILE,
        "longitude": _HOSTILE,
    }
    lock_state = st.builds(
        LockStateEvent,
        **common,
        lock_state=st.sampled_from(LockState),
        previous=st.sampled_from(LockState),
    )
    health = st.builds(HealthEvent, **common, reason=st.none() | _HOSTILE)
    return st.one_of(lock_state, health)


@given(_events())
def test_marking_the_bytes_equals_parsing_and_writing_them(event: Event) -> None:
    stored = event.to_bytes()
    marked = mark_replayed(stored)
    assert json.loads(marked) == {**json.loads(stored), "replayed": True}
    assert mark_replayed(marked) == marked


def test_a_payload_of_another_form_is_parsed() -> None:
    assert json.loads(mark_replayed(b'{"seq": 1, "replayed" : false}')) == {
        "seq": 1,
        "replayed": True,
    }
    assert json.loads(mark_replayed(b'{"seq":1}')) == {"seq": 1, "replayed": True}
