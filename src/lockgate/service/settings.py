"""From the configuration to the plain settings each layer takes.

Only the service reads :mod:`lockgate.config`; the driver takes a
:class:`~lockgate.ble.settings.RadioSettings`, the link a :class:`~lockgate.mqtt.LinkSettings`, and
the engine and store their own keyword arguments. Secrets named by file (the broker password) are
read here, once, at start.
"""

from __future__ import annotations

from dataclasses import replace

from lockgate.ble.discovery import LockIdentity
from lockgate.ble.settings import DEFAULT_RADIO, RadioSettings
from lockgate.config import BleSection, Config
from lockgate.contract.station import RegisteredLock, Station
from lockgate.mqtt import LinkSettings


def radio_settings(ble: BleSection) -> RadioSettings:
    return replace(
        DEFAULT_RADIO,
        adapter=ble.adapter,
        connection_slots=ble.connection_slots,
        connect_timeout_s=ble.connect_timeout_s,
        connect_attempts=ble.connect_attempts,
        sync_interval_s=ble.sync_interval_s,
        watch=ble.watch,
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
