"""The MQTT contract's payloads (docs/mqtt-contract.md), as pydantic models at the gateway's edge.

Requests are parsed and validated here (:mod:`lockgate.contract.request`); every document the
gateway publishes is built from the models of :mod:`lockgate.contract.documents`, every event
stamped by :func:`~lockgate.contract.stamps.stamp`, and filed under a topic of
:mod:`lockgate.contract.topics`. The layer is pure: it imports only the model and the protocol,
and does no I/O.
"""

from lockgate.contract.documents import (
    AdapterDocument,
    AlarmEvent,
    BatteryEvent,
    BleStatus,
    BookingEvent,
    BookingStatus,
    CommandDocument,
    CommandEvent,
    CommandStatus,
    DeviceStatus,
    ErrorDocument,
    Event,
    HealthEvent,
    Heartbeat,
    LockDocument,
    LockStateEvent,
    RadioEvent,
    StationStatus,
    device_state,
)
from lockgate.contract.request import (
    CommandRequest,
    Envelope,
    RejectedRequest,
    read_envelope,
    validate,
)
from lockgate.contract.stamps import EventStamp, stamp
from lockgate.contract.station import RegisteredLock, Station
from lockgate.contract.times import Timestamp, format_time, parse_time

__all__ = [
    "AdapterDocument",
    "AlarmEvent",
    "BatteryEvent",
    "BleStatus",
    "BookingEvent",
    "BookingStatus",
    "CommandDocument",
    "CommandEvent",
    "CommandRequest",
    "CommandStatus",
    "DeviceStatus",
    "Envelope",
    "ErrorDocument",
    "Event",
    "EventStamp",
    "HealthEvent",
    "Heartbeat",
    "LockDocument",
    "LockStateEvent",
    "RadioEvent",
    "RegisteredLock",
    "RejectedRequest",
    "Station",
    "StationStatus",
    "Timestamp",
    "device_state",
    "format_time",
    "parse_time",
    "read_envelope",
    "stamp",
    "validate",
]
