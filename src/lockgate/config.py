"""The station's configuration: one TOML file, every key overridable by the environment.

``LOCKGATE_SECTION__KEY`` overrides ``[section] key`` (``LOCKGATE_BLE__CONNECTION_SLOTS=2``); the
variable's text is read as the key's type (an integer, a finite number, ``true``/``false``, or
text), and an empty value unsets an optional key. Types are strict: ``"60"`` is not a number,
``1`` is not ``true``, and ``inf`` and ``nan`` are no numbers at all. Secrets come from files
(``mqtt.password_file``); every file the configuration names is checked when it is loaded (absolute,
a readable regular file, not empty). :func:`load` validates everything at once and raises
:class:`ConfigError` naming every problem, so an invalid file stops the daemon at start, never
later. Only the service and the command line read this module; the layers below take plain values.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lockgate.ble.settings import DEFAULT_RADIO
from lockgate.clock import TIMESYNCD_MARKER
from lockgate.errors import LockgateError
from lockgate.model import Profile
from lockgate.protocol.identity import guid_to_address, profile_of_name
from lockgate.store import DEFAULT_MAX_OUTBOX, DEFAULT_MAX_REFUSALS

_ID = r"^[A-Za-z0-9_-]{1,64}$"
ENV_PREFIX = "LOCKGATE_"


class ConfigError(LockgateError):
    """The configuration is invalid; ``problems`` names each one as ``location: message``."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _absolute(path: Path) -> Path:
    if not path.is_absolute():
        raise ValueError(f"{str(path)!r} must be an absolute path")
    return path


def _readable_file(path: Path) -> Path:
    """A file the daemon reads at start: there, a regular file, readable, not empty."""
    _absolute(path)
    try:
        info = path.stat()
    except (OSError, ValueError) as err:  # ValueError: a NUL in the name
        raise ValueError(f"{path} cannot be read ({getattr(err, 'strerror', err)})") from err
    if not _is_regular(info.st_mode):
        raise ValueError(f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise ValueError(f"{path} is not readable by this user")
    if info.st_size == 0:
        raise ValueError(f"{path} is empty")
    return path


def _store_file(path: Path) -> Path:
    """The database: absolute, not a directory, in a directory that is there or can be made."""
    _absolute(path)
    try:
        return _creatable(path)
    except OSError as err:  # a name too long, a loop of links: not a usable place either
        raise ValueError(f"{path} cannot be used ({err.strerror})") from err


def _creatable(path: Path) -> Path:
    if path.is_dir():
        raise ValueError(f"{path} is a directory")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"{ancestor} is not a directory, so {path.parent} cannot be made")
    if ancestor != path.parent and not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"{path.parent} does not exist and cannot be made in {ancestor}")
    return path


def _key_file(path: Path) -> Path:
    """The station key's file: made at first start if missing; if there, a non-empty file."""
    _store_file(path)
    if path.exists():  # _store_file has shown that asking does not fail
        _readable_file(path)
    return path


def _is_regular(mode: int) -> bool:
    return (mode & 0o170000) == 0o100000


ReadableFile = Annotated[Path, AfterValidator(_readable_file)]
StorePath = Annotated[Path, AfterValidator(_store_file)]
KeyFile = Annotated[Path, AfterValidator(_key_file)]


class _Section(BaseModel):
    # Strict, and validated from JSON (see :func:`load`): no "60" for 60, no 1 for true.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class StationSection(_Section):
    id: Annotated[str, Field(pattern=_ID)]
    latitude: Annotated[str, Field(pattern=r"^-?\d{1,2}(\.\d+)?$")] = "0.0"
    longitude: Annotated[str, Field(pattern=r"^-?\d{1,3}(\.\d+)?$")] = "0.0"


class MqttSection(_Section):
    url: str = "mqtts://localhost:8883"
    client_id: str = ""
    username: str | None = None
    password_file: ReadableFile | None = None
    ca_file: ReadableFile | None = None
    cert_file: ReadableFile | None = None
    key_file: ReadableFile | None = None
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


_ADAPTER_PATTERN = r"^(hci\d+|[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5})$"


class BleSection(_Section):
    # One adapter (``adapter``), several by name or address (``adapters``), or every adapter BlueZ
    # has (``adapters = "all"``); the default is hci0. Slots are per adapter.
    adapter: Annotated[str, Field(pattern=r"^hci\d+$")] | None = None
    adapters: (
        Annotated[
            list[Annotated[str, Field(pattern=_ADAPTER_PATTERN)]], Field(min_length=1, max_length=8)
        ]
        | Literal["all"]
        | None
    ) = None
    radio_lost_exit_s: Annotated[float, Field(ge=1, le=86400)] = DEFAULT_RADIO.radio_lost_exit_s
    probe_interval_s: Annotated[float, Field(gt=0, le=3600)] = DEFAULT_RADIO.probe_interval_s
    probe_timeout_s: Annotated[float, Field(gt=0, le=60)] = DEFAULT_RADIO.probe_timeout_s
    dbus_address: str = ""
    connection_slots: Annotated[int, Field(ge=1, le=10)] = DEFAULT_RADIO.connection_slots
    connect_timeout_s: Annotated[float, Field(gt=0, le=120)] = DEFAULT_RADIO.connect_timeout_s
    connect_attempts: Annotated[int, Field(ge=1, le=10)] = DEFAULT_RADIO.connect_attempts
    sync_interval_s: Annotated[float, Field(gt=0)] = DEFAULT_RADIO.sync_interval_s
    watch: bool = DEFAULT_RADIO.watch
    keep_booked_ready: bool = DEFAULT_RADIO.keep_booked_ready
    scan_window_s: Annotated[float, Field(gt=0, le=60)] = DEFAULT_RADIO.scan_window_s
    scan_interval_s: Annotated[float, Field(ge=0, le=3600)] = DEFAULT_RADIO.scan_interval_s
    dead_after_s: Annotated[float, Field(gt=0)] = DEFAULT_RADIO.dead_after_s
    long_dead_after_s: Annotated[float, Field(gt=0)] = DEFAULT_RADIO.long_dead_after_s

    @property
    def adapter_keys(self) -> tuple[str, ...]:
        """The adapters to use: names, addresses, or ``("all",)``."""
        if self.adapters == "all":
            return ("all",)
        if self.adapters:
            return tuple(key.upper() if ":" in key else key for key in self.adapters)
        return (self.adapter or DEFAULT_RADIO.adapters[0],)

    @model_validator(mode="after")
    def _one_way_to_name_adapters(self) -> Self:
        if self.adapter is not None and self.adapters is not None:
            raise ValueError("name the adapters with adapter or adapters, not both")
        if isinstance(self.adapters, list) and len(set(self.adapter_keys)) != len(self.adapters):
            raise ValueError("adapters names one adapter twice")
        return self

    @model_validator(mode="after")
    def _dead_before_long_dead(self) -> Self:
        if self.long_dead_after_s < self.dead_after_s:
            raise ValueError("long_dead_after_s must not be shorter than dead_after_s")
        return self


class StoreSection(_Section):
    path: StorePath = Path("/var/lib/lockgate/lockgate.db")
    max_outbox: Annotated[int, Field(ge=100)] = DEFAULT_MAX_OUTBOX
    key_file: KeyFile = Path("/var/lib/lockgate/store.key")
    # Refused requests: at most this many kept, each at most this long (docs/store.md, Budget).
    max_refusals: Annotated[int, Field(ge=100, le=10_000_000)] = DEFAULT_MAX_REFUSALS
    refusal_window_s: Annotated[float, Field(ge=60, le=7 * 24 * 3600)] = 3600.0
    # A hard ceiling on the database file; past it writes fail as on a full disk. None: no ceiling.
    max_size_mb: Annotated[int, Field(ge=1)] | None = None


class ClockSection(_Section):
    """Where the station learns whether its wall clock is synchronised (docs/station.md, "Time on a
    station without an RTC"): ``kernel`` (adjtimex; refused under the hardened unit), ``timesyncd``
    (the file ``synchronized_file``, there once systemd-timesyncd synchronised the clock), or
    ``auto``: the kernel where it answers, else the file."""

    source: Literal["auto", "kernel", "timesyncd"] = "auto"
    synchronized_file: Annotated[Path, AfterValidator(_absolute)] = TIMESYNCD_MARKER


class CommandsSection(_Section):
    """Signed and sealed commands (docs/mqtt-contract.md). ``require_signed = false`` is for the
    demo only: the station then accepts unsigned requests too, and says at start that it is open."""

    require_signed: bool = False
    backend_keys: list[ReadableFile] = Field(default_factory=list)  # Ed25519 public: JWK or PEM
    station_key_file: KeyFile = Path("/var/lib/lockgate/station.jwk")

    @model_validator(mode="after")
    def _keys_when_required(self) -> Self:
        if self.require_signed and not self.backend_keys:
            raise ValueError("require_signed needs at least one file in backend_keys")
        return self


class HomeAssistantSection(_Section):
    """Home Assistant MQTT discovery (docs/station.md, Home Assistant). Off by default;
    ``commands`` lets Home Assistant lock and unlock the locks with provisioned credentials."""

    enabled: bool = False
    prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$")] = "homeassistant"
    commands: bool = False


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


class Config(BaseModel):
    """The whole station configuration.

    A plain model rather than pydantic-settings' ``BaseSettings``: that one validates through its
    own ``__init__`` (Python mode, where strict mode refuses ``"/etc/x"`` as a path), and
    :func:`load` reads the environment itself to name the variable behind each problem.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    station: StationSection
    mqtt: MqttSection = MqttSection()
    ble: BleSection = BleSection()
    store: StoreSection = StoreSection()
    commands: CommandsSection = CommandsSection()
    home_assistant: HomeAssistantSection = HomeAssistantSection()
    clock: ClockSection = ClockSection()
    locks: list[LockSection] = Field(default_factory=list)

    @model_validator(mode="after")
    def _home_assistant_cannot_sign(self) -> Self:
        if self.home_assistant.commands and self.commands.require_signed:
            raise ValueError(
                "home_assistant.commands needs commands.require_signed = false:"
                " Home Assistant sends unsigned requests, which a signed-only station refuses"
            )
        return self

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


def load(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the file at ``path`` with the overrides in ``environ`` (default: the
    process's environment); :class:`ConfigError` names every problem."""
    environ = os.environ if environ is None else environ
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([f"{path}: cannot be read ({err.strerror})"]) from err
    except UnicodeDecodeError as err:
        raise ConfigError([f"{path}: not UTF-8 text ({err.reason})"]) from err
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except (ValueError, RecursionError) as err:
        # TOMLDecodeError is a ValueError; so is an integer too long to convert, and arrays
        # nested too deep exhaust tomllib's recursion: all of them a file that is not a config.
        raise ConfigError([f"{path}: not valid TOML ({err})"]) from err
    try:
        problems = _dates(data, ())
    except RecursionError as err:  # arrays nested nearly as deep as tomllib could follow
        raise ConfigError([f"{path}: nested too deep to be a configuration"]) from err
    _fill_defaults(data)
    overridden, env_problems = _apply_environment(data, environ)
    problems += env_problems
    try:
        # Through JSON, so that strict mode still takes "/etc/x" as a path and "sharee" as a
        # profile, the way the file spells them, while refusing every other coercion.
        config = Config.model_validate_json(json.dumps(data))
    except ValidationError as err:  # before ValueError, which it is
        problems += [_describe(error, overridden) for error in err.errors()]
    except (ValueError, RecursionError) as err:
        raise ConfigError([*problems, f"{path}: cannot be checked ({err})"]) from err
    if problems:
        raise ConfigError(problems)
    return config


def _dates(value: Any, location: tuple[str, ...]) -> list[str]:
    """Name every TOML date or time (no key takes one) and drop it, so JSON can carry the rest."""
    problems = []
    items: list[tuple[Any, Any]]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return []
    for key, item in items:
        here = (*location, str(key))
        if isinstance(item, datetime.date | datetime.time):
            problems.append(f"{'.'.join(here)}: a date or time is not a valid value here")
            if isinstance(value, dict):
                del value[key]  # named once here; its default stands in for the rest of the check
            else:
                value[key] = None
        else:
            problems += _dates(item, here)
    return problems


_SECTIONS: dict[str, type[BaseModel]] = {
    "station": StationSection,
    "mqtt": MqttSection,
    "ble": BleSection,
    "store": StoreSection,
    "commands": CommandsSection,
    "home_assistant": HomeAssistantSection,
}


def _apply_environment(
    data: dict[str, Any], environ: Mapping[str, str]
) -> tuple[dict[tuple[str, str], str], list[str]]:
    """Put every ``LOCKGATE_SECTION__KEY`` into ``data``, read as the key's type.

    Returns which (section, key) came from which variable, and the variables that are wrong.
    """
    overridden: dict[tuple[str, str], str] = {}
    problems: list[str] = []
    for variable in sorted(environ):
        if not variable.upper().startswith(ENV_PREFIX) or "__" not in variable:
            continue  # LOCKGATE_SOMETHING without a section is not a configuration override
        section, _, key = variable[len(ENV_PREFIX) :].lower().partition("__")
        model = _SECTIONS.get(section)
        if model is None:
            known = ", ".join(_SECTIONS)
            if section == "locks":
                problems.append(f"{variable}: locks are set in the file only")
            else:
                problems.append(f"{variable}: no section {section!r} (there are {known})")
            continue
        field = model.model_fields.get(key)
        if field is None:
            problems.append(f"{variable}: [{section}] has no key {key!r}")
            continue
        try:
            value = _from_text(environ[variable], field.annotation)
        except ValueError as err:
            problems.append(f"{variable}: {err}")
            continue
        if value == "" and str not in _kinds(field.annotation):
            problems.append(f"{variable}: empty, and [{section}] {key} cannot be unset")
            continue
        target = data.setdefault(section, {})
        if not isinstance(target, dict):
            problems.append(f"{variable}: {section} in the file is not a table")
            continue
        target[key] = value
        overridden[(section, key)] = variable
    return overridden, problems


def _fill_defaults(data: dict[str, Any]) -> None:
    """Write every default the file leaves out into ``data``, so it is validated like the file.

    A default names files as much as the file does (the store's paths), and is held to the same
    strict types.
    """
    for name, model in _SECTIONS.items():
        section = data.setdefault(name, {})
        if not isinstance(section, dict):
            continue  # named as not a table by the validation
        for key, field in model.model_fields.items():
            if not field.is_required() and key not in section:
                default = field.get_default(call_default_factory=True)
                section[key] = str(default) if isinstance(default, Path) else default


_INTEGER = re.compile(r"^[+-]?[0-9]+$")


def _from_text(text: str, annotation: Any) -> Any:
    """An environment variable's text as the value of a key of type ``annotation``."""
    kinds = _kinds(annotation)
    if text == "" and type(None) in kinds:
        return None
    if bool in kinds:
        if text not in ("true", "false"):
            raise ValueError(f"{text!r} is not true or false")
        return text == "true"
    if int in kinds:
        if not _INTEGER.match(text.strip()):
            raise ValueError(f"{text!r} is not an integer")
        return int(text)
    if float in kinds:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{text!r} is not a finite number")
        return number
    return text


def _kinds(annotation: Any) -> set[Any]:
    """The plain types an annotation allows: ``Annotated[int, ...] | None`` → {int, NoneType}."""
    if get_origin(annotation) is Annotated:
        return _kinds(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return set().union(*(_kinds(arg) for arg in get_args(annotation)))
    return {annotation}


def _describe(error: Any, overridden: Mapping[tuple[str, str], str]) -> str:
    parts = tuple(str(part) for part in error["loc"])
    location = ".".join(parts) or "(file)"
    variable = overridden.get((parts[0], parts[1])) if len(parts) >= 2 else None
    if variable is not None:
        location = f"{location} (from {variable})"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}"
