"""From the configuration to the plain settings each layer takes.

Only the service reads :mod:`lockgate.config`; the driver takes a
:class:`~lockgate.ble.settings.RadioSettings`, the link a :class:`~lockgate.mqtt.LinkSettings`, and
the engine and store their own keyword arguments. Secrets named by file (the broker password, the
keys of signed and sealed commands) are read here, once, at start.
"""

from __future__ import annotations

from dataclasses import replace

from lockgate.ble.discovery import LockIdentity
from lockgate.ble.settings import DEFAULT_RADIO, RadioSettings
from lockgate.config import BleSection, CommandsSection, Config
from lockgate.contract.envelope import CommandGate
from lockgate.contract.station import RegisteredLock, Station
from lockgate.mqtt import LinkSettings
from lockgate.store.command_keys import CommandKeyError, load_backend_keys, load_station_jwk


def radio_settings(ble: BleSection) -> RadioSettings:
    return replace(
        DEFAULT_RADIO,
        adapters=ble.adapter_keys,
        radio_lost_exit_s=ble.radio_lost_exit_s,
        probe_interval_s=ble.probe_interval_s,
        probe_timeout_s=ble.probe_timeout_s,
        connection_slots=ble.connection_slots,
        connect_timeout_s=ble.connect_timeout_s,
        connect_attempts=ble.connect_attempts,
        sync_interval_s=ble.sync_interval_s,
        watch=ble.watch,
        keep_booked_ready=ble.keep_booked_ready,
        scan_window_s=ble.scan_window_s,
        scan_interval_s=ble.scan_interval_s,
        dead_after_s=ble.dead_after_s,
        long_dead_after_s=ble.long_dead_after_s,
    )


def link_settings(config: Config) -> LinkSettings:
    mqtt = config.mqtt
    return LinkSettings(
        url=mqtt.url,
        station=config.station.id,
        client_id=mqtt.client_id or f"lockgate-{config.station.id}",
        username=mqtt.username,
        password=mqtt.password(),
        ca_file=mqtt.ca_file,
        cert_file=mqtt.cert_file,
        key_file=mqtt.key_file,
        topic_root=mqtt.topic_root,
        keepalive_s=mqtt.keepalive_s,
    )


def station(config: Config, boot_id: str) -> Station:
    return Station(
        config.station.id,
        config.station.latitude,
        config.station.longitude,
        tuple(
            RegisteredLock(lock.bike, lock.name, lock.guid, lock.profile) for lock in config.locks
        ),
        boot_id,
    )


def identities(config: Config) -> list[LockIdentity]:
    return [LockIdentity(lock.bike, lock.name, lock.address, lock.profile) for lock in config.locks]


def command_gate(commands: CommandsSection) -> CommandGate:
    """The engine's gate: the backend keys from their files and the station's sealing key (the
    systemd credential, else ``station_key_file``, made on first start). Any problem with a key,
    including a key file that cannot be made, is a :class:`CommandKeyError` naming the file."""
    backend_keys = load_backend_keys(commands.backend_keys)
    try:
        station_key = load_station_jwk(commands.station_key_file)
    except OSError as err:  # the key file could not be made (a read-only or missing directory)
        path = commands.station_key_file
        raise CommandKeyError(f"{path}: cannot be created ({err.strerror})") from err
    return CommandGate(backend_keys, station_key, commands.require_signed)
