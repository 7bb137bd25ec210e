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
