"""The station's configuration: one TOML file, every key overridable by the environment.

``LOCKGATE_SECTION__KEY`` overrides ``[section] key`` (``LOCKGATE_BLE__CONNECTION_SLOTS=2``).
Secrets may come from files (``mqtt.password_file``). :func:`load` validates everything at once
and raises :class:`ConfigError` naming every problem, so an invalid file stops the daemon at start,
never later. Only the service and the command line read this module; the layers below take plain
values.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from lockgate.ble.settings import DEFAULT_RADIO
from lockgate.model import Profile
from lockgate.protocol.identity import guid_to_address, profile_of_name
from lockgate.store import DEFAULT_MAX_OUTBOX

_ID = r"^[A-Za-z0-9_-]{1,64}$"


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` names each one as ``location: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StationSection(_Section):
    id: Annotated[str, Field(pattern=_ID)]
    latitude: Annotated[str, Field(pattern=r"^-?\d{1,2}(\.\d+)?$")] = "0.0"
    longitude: Annotated[str, Field(pattern=r"^-?\d{1,3}(\.\d+)?$")] = "0.0"


class MqttSection(_Section):
    url: str = "mqtts://localhost:8883"
    client_id: str = ""
    username: str | None = None
    password_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    topic_root: Annotated[str, Field(pattern=r"^[^#+\s]+$")] = "lockgate/v1"
    keepalive_s: Annotated[int, Field(ge=5, le=3600)] = 60

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError("must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")
        try:
            _ = parts.port
        except ValueError as err:
            raise ValueError("has an invalid port") from err
        return value

    @model_validator(mode="after")
    def _client_certificate(self) -> Self:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self

    @property
    def tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts"

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or (8883 if self.tls else 1883)

    def password(self) -> str | None:
        """The broker password, read from ``password_file`` when asked (never kept in config)."""
        if self.password_file is None:
            return None
        return self.password_file.read_text(encoding="utf-8").strip()


class BleSection(_Section):
    adapter: Annotated[str, Field(pattern=r"^hci\d+$")] = DEFAULT_RADIO.adapter
    dbus_address: str = ""
    connection_slots: Annotated[int, Field(ge=1, le=10)] = DEFAULT_RADIO.connection_slots
    connect_timeout_s: Annotated[float, Field(gt=0, le=120)] = DEFAULT_RADIO.connect_timeout_s
    connect_attempts: Annotated[int, Field(ge=1, le=10)] = DEFAULT_RADIO.connect_attempts
    sync_interval_s: Annotated[float, Field(gt=0)] = DEFAULT_RADIO.sync_interval_s
    watch: bool = DEFAULT_RADIO.watch
    dead_after_s: Annotated[float, Field(gt=0)] = DEFAULT_RADIO.dead_after_s
    long_dead_after_s: Annotated[float, Field(gt=0)] = DEFAULT_RADIO.long_dead_after_s

    @model_validator(mode="after")
    def _dead_before_long_dead(self) -> Self:
        if self.long_dead_after_s < self.dead_after_s:
            raise ValueError("long_dead_after_s must not be shorter than dead_after_s")
        return self


class StoreSection(_Section):
    path: Path = Path("/var/lib/lockgate/lockgate.db")
    max_outbox: Annotated[int, Field(ge=100)] = DEFAULT_MAX_OUTBOX
    key_file: Path = Path("/var/lib/lockgate/store.key")


class LockSection(_Section):
    bike: Annotated[str, Field(pattern=_ID)]
    name: str
    guid: str
    profile: Profile

    @field_validator("guid")
    @classmethod
    def _guid(cls, value: str) -> str:
        guid_to_address(value)
        return value.lower()

    @model_validator(mode="after")
    def _name_matches_profile(self) -> Self:
        named = profile_of_name(self.name)
        if named is None:
            raise ValueError(f"name {self.name!r} is not ISHAREIT-<digits> or ILOCKIT-<digits>")
        if named is not self.profile:
            raise ValueError(f"name {self.name!r} is a {named} lock, but profile is {self.profile}")
        return self

    @property
    def address(self) -> str:
        return guid_to_address(self.guid)


class Config(BaseSettings):
    """The whole station configuration."""

    model_config = SettingsConfigDict(
        env_prefix="LOCKGATE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    station: StationSection
    mqtt: MqttSection = MqttSection()
    ble: BleSection = BleSection()
    store: StoreSection = StoreSection()
    locks: list[LockSection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_locks(self) -> Self:
        problems = []
        for attribute in ("bike", "name", "guid"):
            seen: set[str] = set()
            for lock in self.locks:
                value = getattr(lock, attribute)
                if value in seen:
                    problems.append(f"{attribute} {value!r} appears twice")
                seen.add(value)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which :func:`load` passes as init values; no
        # dotenv and no secrets directory: secrets come from the files the config names.
        del settings_cls, dotenv_settings, file_secret_settings
        return (env_settings, init_settings)


def load(path: Path) -> Config:
    """Read and validate the file at ``path``; :class:`ConfigError` names every problem."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError([f"{path}: cannot be read ({err.strerror})"]) from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}: not valid TOML ({err})"]) from err
    try:
        return Config(**data)
    except ValidationError as err:
        raise ConfigError([_describe(e) for e in err.errors()]) from err


def _describe(error: Any) -> str:
    location = ".".join(str(part) for part in error["loc"]) or "(file)"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}"
