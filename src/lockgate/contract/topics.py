"""The contract's topics, as suffixes after ``{root}/{station}/`` (mqtt-contract.md, Topics).

The one place a topic string is written: the store files each queued message and retained
document under one of these, the MQTT link prefixes them with the root and the station id and
subscribes to :data:`COMMANDS`. Pure strings; nothing here knows the broker.
"""

from __future__ import annotations

STATUS = "status"
"""The station's retained status document."""
EVENTS = "events"
"""Every event, in ``seq`` order."""
COMMANDS = "commands"
"""Where the backend sends its requests (the gateway subscribes here)."""
ERRORS = "errors"
"""Answers to requests that cannot be tied to a command id."""
LOCKS = "locks"
"""The prefix of every lock's retained document."""


def lock(bike: str) -> str:
    """The lock's retained document: ``locks/{bike}``."""
    return f"{LOCKS}/{bike}"


def command(command_id: str) -> str:
    """The command's documents, one per version: ``commands/{id}``."""
    return f"{COMMANDS}/{command_id}"


OUTSIDE = "/"
"""Marks a topic filed in the store that is not under ``{root}/{station}/`` (Home Assistant's
discovery documents): ``/homeassistant/lock/…`` is published as ``homeassistant/lock/…``. The
contract's own topics never start with it."""


def outside(topic: str) -> str:
    """A topic outside the station's prefix, as the store files it."""
    return OUTSIDE + topic


def full(prefix: str, topic: str) -> str:
    """The topic to publish on: ``prefix`` + a contract topic, or an :func:`outside` one as is."""
    return topic.removeprefix(OUTSIDE) if topic.startswith(OUTSIDE) else prefix + topic
