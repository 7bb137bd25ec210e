"""The broker's side of ``lockgate ctl``: the settings of a run, and the backend client built from
them (:class:`lockgate.client.StationClient`, with the station's own TLS settings)."""

from __future__ import annotations

import ssl
import uuid
from pathlib import Path
from typing import Any

from lockgate.client import StationClient
from lockgate.mqtt.settings import LinkSettings


def settings_for(
    url: str,
    station: str,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    topic_root: str = "lockgate/v1",
) -> LinkSettings:
    """The broker settings of a ``ctl`` run; raises SettingsError for a URL or key pair that
    cannot work. The client id is new each run, so two engineers never push each other off."""
    return LinkSettings(
        url=url,
        station=station,
        client_id=f"lockgate-ctl-{uuid.uuid4().hex[:12]}",
        username=username,
        password=password,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        topic_root=topic_root,
    )


def client_for(
    settings: LinkSettings, context: ssl.SSLContext | None, **options: Any
) -> StationClient:
    """The backend client of a ``ctl`` run; ``options`` go to :class:`StationClient`."""
    return StationClient(
        settings.url,
        settings.station,
        tls_context=context,
        username=settings.username,
        password=settings.password,
        topic_root=settings.topic_root,
        client_id=settings.client_id,
        **options,
    )
