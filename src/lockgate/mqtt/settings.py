"""What the MQTT link needs to reach the broker: plain values, and the TLS context made from them.

The service reads the ``[mqtt]`` section of the config and hands the link a :class:`LinkSettings`;
nothing here reads a config file. ``mqtts://`` (the default) means TLS with the broker's
certificate and host name checked, against ``ca_file`` or the system's trusted CAs, and a client
certificate when ``cert_file`` and ``key_file`` are given. ``mqtt://`` means plain TCP, and the link
warns about it at start.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from lockgate.errors import LockgateError


class MqttProtocol(StrEnum):
    """The MQTT version to speak; ``auto`` tries 5 and falls back to 3.1.1 when the broker says
    it does not speak 5 (CONNACK "unsupported protocol version")."""

    AUTO = "auto"
    V5 = "5"
    V311 = "3.1.1"


class SettingsError(LockgateError, ValueError):
    """The link's settings cannot work (a URL that is not mqtt:// or mqtts://, half a key pair)."""


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """The link's settings. ``password`` is the secret itself (the service reads
    ``password_file``); it is never logged."""

    url: str
    station: str
    client_id: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    topic_root: str = "lockgate/v1"
    keepalive_s: int = 60
    protocol: MqttProtocol | str = MqttProtocol.AUTO
    window: int = 64
    """QoS 1 publishes in flight at once (awaiting their PUBACK)."""
    batch: int = 500
    """Outbox rows read per query."""
    max_waiting_requests: int = 16
    """Received requests waiting for the intake at which the link stops reading its socket (the
    rest wait at the broker); it reads again when half as many wait."""
    connect_timeout_s: float = 15.0
    publish_timeout_s: float = 30.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 60.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise SettingsError(
                f"mqtt url must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]: {self.url!r}"
            )
        try:
            _ = parts.port
        except ValueError as err:
            raise SettingsError(f"mqtt url has an invalid port: {self.url!r}") from err
        if (self.cert_file is None) != (self.key_file is None):
            raise SettingsError("cert_file and key_file go together")
        if self.window < 1 or self.batch < 1 or self.max_waiting_requests < 1:
            raise SettingsError("window, batch and max_waiting_requests must be at least 1")
        try:  # "auto", "5" and "3.1.1" as plain strings too
            object.__setattr__(self, "protocol", MqttProtocol(self.protocol))
        except ValueError as err:
            raise SettingsError(
                f"mqtt protocol must be auto, 5 or 3.1.1: {self.protocol!r}"
            ) from err

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    @property
    def prefix(self) -> str:
        """``{root}/{station}/``: every topic of this station starts with it."""
        return f"{self.topic_root}/{self.station}/"


def tls_context(settings: LinkSettings) -> ssl.SSLContext | None:
    """The TLS context for ``mqtts://`` (None for ``mqtt://``): server certificate and host name
    checked, client certificate loaded when given. Reading the files may raise OSError or
    ssl.SSLError; the link reports either as the reason it cannot connect."""
    if not settings.tls:
        return None
    context = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=None if settings.ca_file is None else str(settings.ca_file)
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.cert_file is not None and settings.key_file is not None:
        context.load_cert_chain(str(settings.cert_file), str(settings.key_file))
    return context
