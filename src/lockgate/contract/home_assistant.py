"""Home Assistant MQTT discovery documents for a station's locks (docs/station.md, Home Assistant).

Pure: what to publish, retained, on which topic (outside the station's prefix: filed with
:func:`~lockgate.contract.topics.outside`). Per lock, under
``{prefix}/<component>/lockgate_<station>/<bike>_<what>/config``:

- its state, from ``hardware_state`` (``ERROR``: jammed) and ``lock_state``: a ``lock`` entity when
  Home Assistant may command it (``commands`` allowed and the lock's credentials provisioned), else
  a read-only ``sensor`` (enum): Home Assistant's MQTT lock requires a ``command_topic``;
- a battery ``sensor`` (%) and a health ``sensor`` (enum of ``heartbeat_v2.health``).

Every entity reads the lock's retained document (``locks/{bike}``) and is available while the
station's retained ``status`` (its will included) says ``online``. A lock entity commands through
the contract's own ``commands`` topic: its ``command_template`` makes a plain request (a new id per
press, no credentials: the provisioned ones are used). The document not used for a lock (the lock
entity or the read-only sensor) is published empty, which removes it from Home Assistant.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from lockgate.contract import topics
from lockgate.contract.station import RegisteredLock
from lockgate.model import Health, LockState

LOCK_STATES = {
    LockState.LOCKED: "LOCKED",
    LockState.UNLOCKED: "UNLOCKED",
    LockState.LOCKING: "LOCKING",
    LockState.UNLOCKING: "UNLOCKING",
}
"""``lock_state`` → Home Assistant's lock state payloads (``unknown`` resets to unknown)."""
JAMMED = "JAMMED"
"""While ``hardware_state`` is ``ERROR`` (the bolt could not move)."""
SENSOR_STATES = ("locked", "unlocked", "locking", "unlocking", "jammed")
_SAFE = re.compile(r"[^A-Za-z0-9_-]")


def node_id(station: str) -> str:
    return "lockgate_" + _SAFE.sub("_", station)


def _object_id(bike: str, what: str) -> str:
    return f"{_SAFE.sub('_', bike)}_{what}"


def _state_template(*, upper: bool) -> str:
    mapping = {str(k): (v if upper else v.lower()) for k, v in LOCK_STATES.items()}
    jammed = JAMMED if upper else JAMMED.lower()
    return (
        f"{{% if value_json.hardware_state == 'ERROR' %}}{jammed}"
        f"{{% else %}}{{{{ {json.dumps(mapping)}.get(value_json.lock_state, 'None') }}}}"
        "{% endif %}"
    )


def _command_template(bike: str) -> str:
    """A plain request for the pressed button (``value``: ``lock`` or ``unlock``). The id joins
    three draws of Jinja's ``random`` (ranges are capped at 100 000 in a sandbox): a repeat of an
    id within the station's memory would be answered with the old command's document."""
    draw = "{{ range(100000) | random }}"
    return (
        f'{{"id": "ha-{_SAFE.sub("_", bike)}-{draw}-{draw}-{draw}",'
        f' "command": "{{{{ value }}}}", "bike": {json.dumps(bike)}}}'
    )


def discovery_documents(
    *,
    prefix: str,
    station: str,
    station_prefix: str,
    locks: Iterable[RegisteredLock],
    commanded: Iterable[str] = (),
) -> dict[str, bytes]:
    """Every discovery document of ``locks``, by topic as the store files it: ``commanded``
    bikes get a lock entity (and an empty read-only sensor), the others the read-only sensor (and
    an empty lock entity). ``station_prefix`` is ``{root}/{station}/``."""
    allowed = set(commanded)
    node = node_id(station)
    availability = {
        "availability": [
            {
                "topic": station_prefix + topics.STATUS,
                "value_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
    }
    documents: dict[str, bytes] = {}

    def put(component: str, what: str, bike: str, document: Mapping[str, Any] | None) -> None:
        topic = f"{prefix}/{component}/{node}/{_object_id(bike, what)}/config"
        documents[topics.outside(topic)] = (
            b"" if document is None else json.dumps(document, separators=(",", ":")).encode()
        )

    for lock in locks:
        bike = lock.bike
        common: dict[str, Any] = {
            "state_topic": station_prefix + topics.lock(bike),
            "qos": 1,
            **availability,
            "device": {
                "identifiers": [f"{node}_{_SAFE.sub('_', bike)}"],
                "name": f"Bike {bike}",
                "manufacturer": "Ilockit",
                "model": f"{lock.name} ({lock.profile})",
                "serial_number": lock.hardware_id,
            },
        }
        lock_entity = {
            "name": "Lock",
            "unique_id": f"{node}_{_object_id(bike, 'lock')}",
            **common,
            "value_template": _state_template(upper=True),
            "state_locked": "LOCKED",
            "state_unlocked": "UNLOCKED",
            "state_locking": "LOCKING",
            "state_unlocking": "UNLOCKING",
            "state_jammed": JAMMED,
            "command_topic": station_prefix + topics.COMMANDS,
            "command_template": _command_template(bike),
            "payload_lock": "lock",
            "payload_unlock": "unlock",
            "retain": False,
            "optimistic": False,
        }
        state_sensor = {
            "name": "Lock",
            "unique_id": f"{node}_{_object_id(bike, 'lock_state')}",
            **common,
            "device_class": "enum",
            "options": list(SENSOR_STATES),
            "value_template": _state_template(upper=False),
            "icon": "mdi:lock",
        }
        if bike in allowed:
            put("lock", "lock", bike, lock_entity)
            put("sensor", "lock_state", bike, None)
        else:
            put("lock", "lock", bike, None)
            put("sensor", "lock_state", bike, state_sensor)
        put(
            "sensor",
            "battery",
            bike,
            {
                "name": "Battery",
                "unique_id": f"{node}_{_object_id(bike, 'battery')}",
                **common,
                "device_class": "battery",
                "unit_of_measurement": "%",
                "state_class": "measurement",
                "entity_category": "diagnostic",
                "value_template": "{{ value_json.battery }}",
            },
        )
        put(
            "sensor",
            "health",
            bike,
            {
                "name": "Health",
                "unique_id": f"{node}_{_object_id(bike, 'health')}",
                **common,
                "device_class": "enum",
                "options": [str(health) for health in Health],
                "entity_category": "diagnostic",
                "value_template": "{{ value_json.heartbeat_v2.health }}",
            },
        )
    return documents


__all__ = ["JAMMED", "LOCK_STATES", "SENSOR_STATES", "discovery_documents", "node_id"]
