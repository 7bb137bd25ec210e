"""The engine's pure ledger: how a lock's record and a command's record change, and the events
that announce each change.

No I/O, no clock, no lock: the per-lock worker (:mod:`lockgate.engine.worker`) and the engine
(:mod:`lockgate.engine.engine`) decide *when* something happened and write what this module
computes to the store in one transaction. Here are the lock state transitions, the booking steps
of :func:`~lockgate.engine.booking.decide`, what a reading or an observation of the radio changes,
the stamps of every event (through :func:`lockgate.contract.stamps.stamp`), the command events
(``REQUEST_*``, ``RESPONSE_*``, ``STATE_*``), how a command that asked the radio ends
(:meth:`Ledger.conclude`, whether it ran or was settled by a read) and the record of a refused
request. A command's next version is always :meth:`~lockgate.store.records.CommandRecord.advanced`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from lockgate.contract.documents import (
    AlarmEvent,
    BatteryEvent,
    BookingEvent,
    CommandEvent,
    Event,
    HealthEvent,
    LockStateEvent,
    device_state,
)
from lockgate.contract.request import CommandRequest, RejectedRequest
from lockgate.contract.stamps import EventStamp, stamp
from lockgate.contract.station import Station
from lockgate.engine.booking import Booking, BookingStep, decide
from lockgate.model import Cause, CommandName, CommandState, ErrorCode, ForceReason, LockState
from lockgate.radio import (
    HealthObserved,
    Observation,
    Operation,
    Outcome,
    Reading,
    ReadingObserved,
    Result,
    StateObserved,
)
from lockgate.store.records import CommandRecord, Correlation, LockRecord

Update = tuple[LockRecord, list[Event]]
"""A lock's new record and the events that announce the change (none if nothing to say)."""


@dataclass(frozen=True, slots=True)
class Concluded:
    """A command's end: the lock's new record, the events announcing its change, and the
    command's final version; written in one transaction."""

    record: LockRecord
    events: list[Event]
    command: CommandRecord


@dataclass(frozen=True, slots=True)
class Settling:
    """A command concluded by a read rather than by its own motion: after a restart, or after
    the store failed mid-command (``store_failed``)."""

    store_failed: bool = False


MOTION_ENDS = {Operation.UNLOCK: LockState.UNLOCKED, Operation.LOCK: LockState.LOCKED}
"""Where a motion that ended OK left the bolt, when the radio did not say."""
UNMOVED = {Operation.UNLOCK: LockState.LOCKED, Operation.LOCK: LockState.UNLOCKED}
"""Where the bolt stayed when the lock said it could not move it (blocked, or the bike moved):
docs/protocol.md's "unchanged" is the state before the motion, not the ``unlocking`` or ``locking``
the lock may have indicated as it tried."""
UNMOVED_OUTCOMES = frozenset({Outcome.BLOCKED, Outcome.MOVED})
"""The lock answered that it could not move the bolt: the bolt stayed where it was."""


class Ledger:
    """The station's ledger: every new lock record and its events, stamped for this station."""

    def __init__(self, station: Station) -> None:
        self._station = station

    def stamp(
        self, bike: str, at: datetime, cause: Cause | None, command_id: str | None
    ) -> EventStamp:
        return stamp(self._station, at, bike=bike, cause=cause, command_id=command_id)

    def transition(
        self,
        record: LockRecord,
        lock_state: LockState,
        at: datetime,
        cause: Cause,
        command_id: str | None,
    ) -> Update | None:
        """The lock's record after it showed ``lock_state``, with its event; None if no change."""
        if lock_state is record.lock_state:
            return None
        new = _device_changed(record, replace(record, lock_state=lock_state), at)
        event = LockStateEvent(
            **self.stamp(record.bike, at, cause, command_id),
            lock_state=lock_state,
            previous=record.lock_state,
        )
        return new, [event]

    def book(
        self,
        record: LockRecord,
        step: BookingStep,
        at: datetime,
        command_id: str | None,
        reason: str | None,
    ) -> Update:
        """The lock's record with the booking of ``step``, and its ``booking`` event."""
        previous_user = record.booking_user
        new = replace(
            record,
            booking=step.booking.state,
            booking_user=step.booking.user,
            booking_timeout_at=step.booking.timeout_at,
        )
        new = _device_changed(record, new, at)
        event = BookingEvent(
            **self.stamp(record.bike, at, Cause.COMMAND if command_id else None, command_id),
            booking_state=step.change,
            user_id=step.booking.user or previous_user,
            timeout_at=step.booking.timeout_at,
            reason=reason,
        )
        return new, [event]

    def absorb(
        self,
        record: LockRecord,
        reading: Reading,
        at: datetime,
        command_id: str | None,
        result: Result | None,
    ) -> Update:
        """Battery, firmware, RSSI, alarm and hardware state from a reading, with their events."""
        cause = Cause.COMMAND if command_id else Cause.SYNC
        events: list[Event] = []
        new = record
        if reading.battery is not None and reading.battery != record.battery:
            new = replace(new, battery=reading.battery)
            events.append(
                BatteryEvent(
                    **self.stamp(record.bike, at, cause, command_id), battery=reading.battery
                )
            )
        if reading.alarm is not None and reading.alarm != record.alarm:
            new = replace(new, alarm=reading.alarm)
            events.append(
                AlarmEvent(**self.stamp(record.bike, at, cause, command_id), alarm=reading.alarm)
            )
        if reading.firmware is not None:
            new = replace(new, firmware=reading.firmware)
        if reading.rssi is not None:
            new = replace(new, rssi=reading.rssi)
        if result is not None and result.hardware_state is not None:
            if result.hardware_state is not record.hardware_state:
                events.append(
                    HealthEvent(
                        **self.stamp(record.bike, at, cause, command_id),
                        health=record.health,
                        hardware_state=result.hardware_state,
                    )
                )
            new = replace(new, hardware_state=result.hardware_state)
        return new, events

    def conclude(
        self,
        record: LockRecord,
        command: CommandRecord,
        request: CommandRequest,
        result: Result,
        now: datetime,
        *,
        operation: Operation | None = None,
        on_success: BookingStep | None = None,
        settling: Settling | None = None,
    ) -> Concluded:
        """The one way a command that asked the radio ends, whether it ran (``operation``, and
        ``on_success``, the booking step its success makes) or was settled by a read
        (``settling``): where the bolt is and its event, what the reading says, the command's
        final version, and the booking step of a success."""
        if settling is None:
            seen = _where_the_bolt_is(result, operation)
            cause = Cause.COMMAND
        else:
            seen = result.reading.lock_state
            cause = Cause.COMMAND if settling.store_failed else Cause.STARTUP
        events: list[Event] = []
        moved = False
        if seen is not None:
            update = self.transition(record, seen, now, cause, command.id)
            if update is not None:
                record, events = update
                moved = True
        record, read_events = self.absorb(record, result.reading, now, command.id, result)
        events += read_events
        if settling is None:
            ending = _ran_ending(request, result, now, seen if moved else None)
        else:
            ending = settled_ending(request.name, result, now, store_failed=settling.store_failed)
            on_success = None
            if ending.state is CommandState.SUCCESS and seen is not None:
                decision = decide(
                    request.name,
                    booking_of(record),
                    user=request.user_id,
                    end_rental=request.end_rental,
                )
                if decision.refusal is None:
                    on_success = decision.on_success
        command_events = ending.events
        if ending.state is CommandState.SUCCESS and on_success is not None:
            record, booking_events = self.book(
                record, on_success, now, command.id, "the rental ended"
            )
            events += booking_events
            command_events += (booking_event(on_success, now),)
        final = command.advanced(
            ending.state,
            now,
            events=command_events,
            error_code=ending.error_code,
            reason=ending.reason,
        )
        return Concluded(record, events, final)

    def observed(self, record: LockRecord, observation: Observation) -> Update:
        """The lock's record after what the radio saw between commands, with its events."""
        if isinstance(observation, StateObserved):
            update = self.transition(
                record, observation.lock_state, observation.at, observation.cause, None
            )
            return update if update is not None else (record, [])
        if isinstance(observation, HealthObserved):
            changed = (
                record.health is not observation.health
                or record.hardware_state is not observation.hardware_state
            )
            new = replace(
                record,
                health=observation.health,
                hardware_state=observation.hardware_state,
                last_seen=observation.last_seen,
                dead_since=observation.dead_since,
            )
            if not changed:
                return new, []
            event = HealthEvent(
                **self.stamp(record.bike, observation.at, None, None),
                health=observation.health,
                hardware_state=observation.hardware_state,
            )
            return new, [event]
        assert isinstance(observation, ReadingObserved)
        events: list[Event] = []
        reading = observation.reading
        if reading.lock_state is not None:
            update = self.transition(record, reading.lock_state, observation.at, Cause.SYNC, None)
            if update is not None:
                record, events = update
        record, read_events = self.absorb(record, reading, observation.at, None, None)
        return record, events + read_events


# --- a command's record and events -------------------------------------------------------------


def booking_of(record: LockRecord) -> Booking:
    return Booking(record.booking, record.booking_user, record.booking_timeout_at)


def settled_state(name: CommandName) -> LockState | None:
    """Where the bolt must be for a command recovered after a restart to count as done."""
    if name in (CommandName.UNLOCK, CommandName.FORCE_UNLOCK):
        return LockState.UNLOCKED
    if name in (CommandName.LOCK, CommandName.FORCE_LOCK):
        return LockState.LOCKED
    return None  # a read (sync-device) is settled by any answer


@dataclass(frozen=True, slots=True)
class Ending:
    """How a command ends, before any booking step its success causes: its final state, the
    events of its document, and its error code and reason."""

    state: CommandState
    events: tuple[CommandEvent, ...] = ()
    error_code: ErrorCode | None = None
    reason: str | None = None


def settled_ending(
    name: CommandName, result: Result, now: datetime, *, store_failed: bool = False
) -> Ending:
    """A recovered command's end after the settling read (``store_failed``: settled because the
    store failed mid-command, not after a restart)."""
    what = "the store failed" if store_failed else "the gateway restarted"
    wanted = settled_state(name)
    lock_state = result.reading.lock_state
    if lock_state is None:
        missing = result.outcome is Outcome.MISSING_CREDENTIALS or result.ok
        code = (
            ErrorCode.MISSING_CREDENTIALS
            if missing
            else (result.outcome.error_code or ErrorCode.INTERNAL)
        )
        return Ending(
            CommandState.ERROR,
            error_code=code,
            reason=f"{what} during the command and the lock could not be read "
            f"to settle it: {result.reason}",
        )
    if wanted is None or lock_state is wanted:
        return Ending(
            CommandState.SUCCESS,
            (state_event(lock_state, now),),
            reason=f"settled after {'a store failure' if store_failed else 'a restart'}: "
            f"the lock is {lock_state}",
        )
    return Ending(
        CommandState.ERROR,
        (state_event(lock_state, now),),
        error_code=ErrorCode.INTERRUPTED,
        reason=f"the gateway restarted during the command; the lock is {lock_state}",
    )


def command_event(
    prefix: str, name: CommandName | str | None, at: datetime, value: str | None = None
) -> CommandEvent:
    """``REQUEST_<NAME>`` or ``RESPONSE_<NAME>`` of the command document."""
    return CommandEvent(name=f"{prefix}_{_event_name(name)}", value=value, timestamp=at)


def state_event(lock_state: LockState, at: datetime) -> CommandEvent:
    return CommandEvent(name=f"STATE_{lock_state.upper()}", timestamp=at)


def booking_event(step: BookingStep, at: datetime) -> CommandEvent:
    return CommandEvent(name=f"STATE_{step.change.upper()}", timestamp=at)


def known_command(name: str | None) -> CommandName | None:
    try:
        return CommandName(name or "")
    except ValueError:
        return None


def rejected(verdict: RejectedRequest, now: datetime, correlation: Correlation) -> CommandRecord:
    """The final record of a refused request: its receipt and its refusal at once."""
    return CommandRecord(
        id=verdict.id,
        fingerprint=verdict.fingerprint,
        # Echo only what is a known command and a plausible bike id: a refused request's
        # strings are anyone's, and the document is kept and published.
        name=known_command(verdict.name),
        bike=verdict.bike if verdict.bike is not None and len(verdict.bike) <= 64 else None,
        state=CommandState.ERROR,
        version=1,
        received_at=now,
        timeout_at=verdict.timeout_at,
        error_code=verdict.error_code,
        reason=verdict.reason,
        events=(
            command_event("REQUEST", verdict.name, now),
            command_event("RESPONSE", verdict.name, now, verdict.reason),
        ),
        correlation=correlation,
        ended_at=now,
    )


def request_of(record: CommandRecord) -> CommandRequest | None:
    """The request again from its stored record, without credentials (never stored)."""
    name = known_command(record.name)
    if name is None or record.bike is None or record.timeout_at is None:
        return None
    parameters = record.parameters
    reason = parameters.get("reason")
    return CommandRequest(
        id=record.id,
        name=name,
        bike=record.bike,
        timeout_at=record.timeout_at,
        fingerprint=record.fingerprint,
        user_id=parameters.get("user_id"),
        end_rental=bool(parameters.get("end_rental")),
        reason=ForceReason(reason) if reason else None,
        comment=parameters.get("comment"),
        power_cycle=bool(parameters.get("power_cycle")),
        remove_credentials=bool(parameters.get("remove_credentials")),
    )


def _event_name(name: CommandName | str | None) -> str:
    known = name if isinstance(name, CommandName) else known_command(name)
    return (known or "command").upper().replace("-", "_")


def _where_the_bolt_is(result: Result, operation: Operation | None) -> LockState | None:
    """Where a command's own motion left the bolt: as read, else as the motion's outcome says."""
    seen = result.reading.lock_state
    if result.ok and seen is None and operation in MOTION_ENDS:
        return MOTION_ENDS[operation]  # ok means the lock reported the end
    if seen is None and result.outcome in UNMOVED_OUTCOMES and operation in UNMOVED:
        return UNMOVED[operation]  # the bolt is where it was
    return seen


def _ran_ending(
    request: CommandRequest, result: Result, now: datetime, moved_to: LockState | None
) -> Ending:
    """The end of a command that ran: the state its motion reached (``moved_to``, when the lock's
    record changed), the answer, and a note for a power cycle."""
    state_events = () if moved_to is None else (state_event(moved_to, now),)
    power_cycle = (
        (
            CommandEvent(
                name="RESPONSE_POWER_CYCLE",
                value="Ilockit locks have no power switch: read on a new connection",
                timestamp=now,
            ),
        )
        if request.power_cycle
        else ()
    )
    if not result.ok:
        return Ending(
            CommandState.ERROR,
            (
                *state_events,
                *power_cycle,
                command_event("RESPONSE", request.name, now, result.reason),
            ),
            error_code=result.outcome.error_code or ErrorCode.INTERNAL,
            reason=result.reason,
        )
    # The answer after the state the motion ended in (the lock's), before the booking.
    return Ending(
        CommandState.SUCCESS,
        (*state_events, command_event("RESPONSE", request.name, now, "ok"), *power_cycle),
    )


def _device_changed(before: LockRecord, after: LockRecord, at: datetime) -> LockRecord:
    if device_state(before.lock_state, before.booking) is device_state(
        after.lock_state, after.booking
    ):
        return after
    return replace(after, state_changed_at=at)
