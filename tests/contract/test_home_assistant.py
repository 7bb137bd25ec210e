"""The Home Assistant discovery documents hold to Home Assistant's documented schema.

The schema below is data, taken from Home Assistant's documentation of the MQTT lock and MQTT
sensor integrations (their configuration variables, the availability and device maps, the rules
between options): every key published must be one of them, the required ones must be there, and
the values must be ones Home Assistant accepts. The templates are checked by what they produce:
the state mapping is read out of the value template and held against the lock states, and the
command template is filled in as Home Assistant would and read as a request of the contract.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lockgate.contract import topics
from lockgate.contract.home_assistant import discovery_documents
from lockgate.contract.request import ID_PATTERN
from lockgate.contract.station import RegisteredLock
from lockgate.model import HardwareState, Health, LockState, Profile

# --- Home Assistant's documented schema (MQTT lock, MQTT sensor), as data --------------------

COMMON_KEYS = {
    "availability",
    "availability_mode",
    "availability_template",
    "availability_topic",
    "device",
    "enabled_by_default",
    "encoding",
    "entity_category",
    "entity_picture",
    "icon",
    "json_attributes_template",
    "json_attributes_topic",
    "name",
    "object_id",
    "payload_available",
    "payload_not_available",
    "qos",
    "unique_id",
    "value_template",
}
LOCK_KEYS = COMMON_KEYS | {
    "code_format",
    "command_template",
    "command_topic",
    "optimistic",
    "payload_lock",
    "payload_open",
    "payload_reset",
    "payload_unlock",
    "retain",
    "state_jammed",
    "state_locked",
    "state_locking",
    "state_topic",
    "state_unlocked",
    "state_unlocking",
}
LOCK_REQUIRED = {"command_topic"}
SENSOR_KEYS = COMMON_KEYS | {
    "device_class",
    "expire_after",
    "force_update",
    "last_reset_value_template",
    "options",
    "state_class",
    "state_topic",
    "suggested_display_precision",
    "unit_of_measurement",
}
SENSOR_REQUIRED = {"state_topic"}
AVAILABILITY_KEYS = {"payload_available", "payload_not_available", "topic", "value_template"}
AVAILABILITY_REQUIRED = {"topic"}
AVAILABILITY_MODES = {"all", "any", "latest"}
DEVICE_KEYS = {
    "configuration_url",
    "connections",
    "hw_version",
    "identifiers",
    "manufacturer",
    "model",
    "model_id",
    "name",
    "serial_number",
    "suggested_area",
    "sw_version",
    "via_device",
}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
SENSOR_ENTITY_CATEGORIES = {"diagnostic"}  # "must be diagnostic for sensors"
LOCK_ENTITY_CATEGORIES = {"config", "diagnostic"}
LOCK_STATE_KEYS = ("state_locked", "state_unlocked", "state_locking", "state_unlocking")
LOCK_STATE_DEFAULTS = {
    "state_locked": "LOCKED",
    "state_unlocked": "UNLOCKED",
    "state_locking": "LOCKING",
    "state_unlocking": "UNLOCKING",
    "state_jammed": "JAMMED",
}
PAYLOAD_RESET = "None"  # payload_reset's default: the state goes back to unknown
DISCOVERY_TOPIC = re.compile(
    r"^(?P<prefix>[^/]+)/(?P<component>lock|sensor)/(?P<node>[A-Za-z0-9_-]+)"
    r"/(?P<object>[A-Za-z0-9_-]+)/config$"
)

# --- the station under test ---------------------------------------------------------------------

STATION_PREFIX = "lockgate/v1/FR101/"
LOCKS = (
    RegisteredLock(
        "B2200501", "ISHAREIT-2200501", "00000000-0000-0000-0000-fc3c002a2c01", Profile.SHAREE
    ),
    RegisteredLock(
        "B4500302", "ILOCKIT-4500302", "00000000-0000-0000-0000-d41299004602", Profile.NOBOND
    ),
)


def published(commanded: tuple[str, ...] = ()) -> dict[str, dict[str, Any] | None]:
    documents = discovery_documents(
        prefix="homeassistant",
        station="FR101",
        station_prefix=STATION_PREFIX,
        locks=LOCKS,
        commanded=commanded,
    )
    found: dict[str, dict[str, Any] | None] = {}
    for topic, payload in documents.items():
        assert topic.startswith(topics.OUTSIDE)
        broker_topic = topics.full(STATION_PREFIX, topic)
        assert DISCOVERY_TOPIC.match(broker_topic), broker_topic
        found[broker_topic] = json.loads(payload) if payload else None
    return found


def check_common(document: dict[str, Any], allowed: set[str], required: set[str]) -> None:
    assert set(document) <= allowed, set(document) - allowed
    assert required <= set(document)
    assert document["qos"] in (0, 1, 2)
    assert document.get("availability_mode", "latest") in AVAILABILITY_MODES
    assert "availability_topic" not in document  # not together with availability
    for entry in document["availability"]:
        assert set(entry) <= AVAILABILITY_KEYS
        assert set(entry) >= AVAILABILITY_REQUIRED
        # The station's retained status (and its will): state online / offline.
        assert entry["topic"] == STATION_PREFIX + "status"
        assert entry["value_template"] == "{{ value_json.state }}"
        assert entry["payload_available"] == "online"
        assert entry["payload_not_available"] == "offline"
    device = document["device"]
    assert set(device) <= DEVICE_KEYS
    assert device.get("identifiers") or device.get("connections")
    assert document["unique_id"]
    assert document["state_topic"].startswith(STATION_PREFIX + "locks/")


def state_mapping(template: str) -> tuple[str, dict[str, str]]:
    """What the value template makes of a lock document: the jammed payload, and the mapping
    from ``lock_state`` (anything else: reset to unknown)."""
    jammed = re.fullmatch(
        r"\{% if value_json\.hardware_state == 'ERROR' %\}(\w+)\{% else %\}"
        r"\{\{ (\{.*\})\.get\(value_json\.lock_state, 'None'\) \}\}\{% endif %\}",
        template,
    )
    assert jammed, template
    return jammed.group(1), json.loads(jammed.group(2))


def render(template: str, *, value: str, draw: str = "4711") -> str:
    """The command template as Home Assistant fills it: ``value`` and Jinja's ``random``."""
    filled = template.replace("{{ range(100000) | random }}", draw)
    filled = filled.replace("{{ value }}", value)
    assert "{{" not in filled, filled
    assert "{%" not in filled, filled
    return filled


def test_without_commands_each_lock_is_read_only() -> None:
    documents = published()
    assert len(documents) == 4 * len(LOCKS)
    for lock in LOCKS:
        node = "homeassistant/{}/lockgate_FR101/" + lock.bike + "_{}/config"
        assert documents[node.format("lock", "lock")] is None  # removed: no command_topic here
        state = documents[node.format("sensor", "lock_state")]
        assert state is not None
        check_common(state, SENSOR_KEYS, SENSOR_REQUIRED)
        assert state["state_topic"] == f"{STATION_PREFIX}locks/{lock.bike}"
        assert state["device_class"] == "enum"
        jammed, mapping = state_mapping(state["value_template"])
        assert set(mapping.values()) | {jammed} == set(state["options"])
        assert "state_class" not in state
        assert "unit_of_measurement" not in state
        assert not any("command" in key for key in state)


def test_battery_and_health_sensors() -> None:
    for lock in LOCKS:
        documents = published()
        battery = documents[f"homeassistant/sensor/lockgate_FR101/{lock.bike}_battery/config"]
        health = documents[f"homeassistant/sensor/lockgate_FR101/{lock.bike}_health/config"]
        assert battery is not None
        assert health is not None
        for sensor in (battery, health):
            check_common(sensor, SENSOR_KEYS, SENSOR_REQUIRED)
            assert sensor["entity_category"] in SENSOR_ENTITY_CATEGORIES
        assert battery["device_class"] == "battery"
        assert battery["unit_of_measurement"] == "%"
        assert battery["state_class"] in STATE_CLASSES
        assert battery["value_template"] == "{{ value_json.battery }}"
        assert health["device_class"] == "enum"
        assert health["options"] == [str(h) for h in Health]
        assert "state_class" not in health
        assert "unit_of_measurement" not in health
        assert health["value_template"] == "{{ value_json.heartbeat_v2.health }}"
        # One device per lock, the same in every document.
        assert battery["device"] == health["device"]
        assert battery["unique_id"] != health["unique_id"]


def test_a_commanded_lock_is_a_lock_entity_whose_commands_are_requests() -> None:
    documents = published(commanded=("B2200501",))
    entity = documents["homeassistant/lock/lockgate_FR101/B2200501_lock/config"]
    assert entity is not None
    assert documents["homeassistant/sensor/lockgate_FR101/B2200501_lock_state/config"] is None
    # The other lock (not provisioned) stays read-only.
    assert documents["homeassistant/lock/lockgate_FR101/B4500302_lock/config"] is None
    check_common(entity, LOCK_KEYS, LOCK_REQUIRED)
    assert entity["retain"] is False
    assert entity["optimistic"] is False
    assert "payload_open" not in entity  # no open: these locks have one bolt
    assert "code_format" not in entity
    states = {key: entity.get(key, LOCK_STATE_DEFAULTS[key]) for key in LOCK_STATE_DEFAULTS}
    assert len(set(states.values())) == len(states)
    jammed, mapping = state_mapping(entity["value_template"])
    assert jammed == states["state_jammed"]
    # Every lock state but unknown is one of the lock's states; unknown resets.
    assert set(mapping) == {str(s) for s in LockState} - {LockState.UNKNOWN}
    assert set(mapping.values()) == {states[key] for key in LOCK_STATE_KEYS}
    assert PAYLOAD_RESET not in mapping.values()
    assert HardwareState.ERROR == "ERROR"  # the value the template tests for jammed
    # A press is a plain request on the contract's commands topic, a new id each time.
    assert entity["command_topic"] == STATION_PREFIX + "commands"
    assert entity["payload_lock"] != entity["payload_unlock"]
    for value, command in ((entity["payload_lock"], "lock"), (entity["payload_unlock"], "unlock")):
        request = json.loads(render(entity["command_template"], value=value))
        assert request == {"id": request["id"], "command": command, "bike": "B2200501"}
        assert ID_PATTERN.match(request["id"])
    first = json.loads(render(entity["command_template"], value="lock", draw="1"))
    second = json.loads(render(entity["command_template"], value="lock", draw="2"))
    assert first["id"] != second["id"]


def test_no_document_carries_a_key_or_a_secret() -> None:
    for document in published(commanded=("B2200501",)).values():
        text = json.dumps(document)
        for word in ("credentials", "K_u", "K_seed", "ltk", "sealing"):
            assert word not in text
