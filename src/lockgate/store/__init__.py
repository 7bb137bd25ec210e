"""The station's durable memory (SQLite): commands, lock records, sealed credentials, the outbox.

:class:`Store` writes every state change with the messages it causes in one transaction;
:class:`Outbox` is what the MQTT link reads from it; :func:`load_station_key` finds the key that
seals provisioned credentials. Below the engine, above the contract: it imports nothing higher.
"""

from lockgate.store.database import (
    StoreCorruptError,
    StoreMissingError,
    StoreUnusableError,
)
from lockgate.store.errors import StoreError
from lockgate.store.key import StationKey, StoreKeyError, load_station_key
from lockgate.store.outbox import Outbox, OutboxMessage
from lockgate.store.records import (
    Change,
    CommandRecord,
    Correlation,
    LockRecord,
    Provisioning,
    Reply,
)
from lockgate.store.schema import SCHEMA_VERSION, SchemaError
from lockgate.store.store import DEFAULT_MAX_OUTBOX, DEFAULT_MAX_REFUSALS, Applied, Store

__all__ = [
    "DEFAULT_MAX_OUTBOX",
    "DEFAULT_MAX_REFUSALS",
    "SCHEMA_VERSION",
    "Applied",
    "Change",
    "CommandRecord",
    "Correlation",
    "LockRecord",
    "Outbox",
    "OutboxMessage",
    "Provisioning",
    "Reply",
    "SchemaError",
    "StationKey",
    "Store",
    "StoreCorruptError",
    "StoreError",
    "StoreKeyError",
    "StoreMissingError",
    "StoreUnusableError",
    "load_station_key",
]
