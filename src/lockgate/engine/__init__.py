"""The command engine: the contract's command lifecycle, bookings, recovery and lock state events.

:class:`Engine` ingests raw requests (:meth:`Engine.submit`), runs them per lock in arrival order
through the radio port (:class:`~lockgate.radio.LockRadio`), mirrors what the radio observes
(:meth:`Engine.observe`), and writes every change with its messages to the store, whose outbox the
MQTT link reads. Three modules along its seams: :mod:`~lockgate.engine.ledger` (pure: what a
change is, its events and stamps), :mod:`~lockgate.engine.worker` (one lock's queue and the
commands it runs) and :mod:`~lockgate.engine.engine` (admission, recovery, deadlines, lifecycle).
The booking table is the pure :func:`~lockgate.engine.booking.decide`.
"""

from lockgate.clock import utc_now
from lockgate.engine.booking import Booking, BookingStep, Decision, decide
from lockgate.engine.engine import (
    Clock,
    Engine,
    EngineStateError,
    Recovery,
    Submission,
)

__all__ = [
    "Booking",
    "BookingStep",
    "Clock",
    "Decision",
    "Engine",
    "EngineStateError",
    "Recovery",
    "Submission",
    "decide",
    "utc_now",
]
