"""The MQTT link (docs/mqtt-contract.md): publishes the store's outbox, feeds ``commands`` to the
engine, and keeps the station's ``status`` true on the broker. It imports the store (the outbox,
``Correlation``), never the engine or the radio: the service wires it.
"""

from lockgate.mqtt.link import Intake, Link, LinkState, StatusDocument, backoff_delay, describe
from lockgate.mqtt.settings import LinkSettings, MqttProtocol, SettingsError, tls_context

__all__ = [
    "Intake",
    "Link",
    "LinkSettings",
    "LinkState",
    "MqttProtocol",
    "SettingsError",
    "StatusDocument",
    "backoff_delay",
    "describe",
    "tls_context",
]
