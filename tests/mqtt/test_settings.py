"""The link's pure parts: settings, backoff, and the reasons it gives."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from aiomqtt.exceptions import MqttConnectError, MqttError
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from lockgate.mqtt import (
    LinkSettings,
    MqttProtocol,
    SettingsError,
    backoff_delay,
    describe,
    tls_context,
)
from tests.brokers import Authority


def test_urls() -> None:
    plain = LinkSettings(url="mqtt://broker.example", station="FR101")
    assert (plain.tls, plain.host, plain.port) == (False, "broker.example", 1883)
    secure = LinkSettings(url="mqtts://broker.example", station="FR101")
    assert (secure.tls, secure.port) == (True, 8883)
    assert LinkSettings(url="mqtts://h:9999", station="X").port == 9999
    assert secure.prefix == "lockgate/v1/FR101/"
    assert tls_context(plain) is None


@pytest.mark.parametrize("url", ["http://broker", "mqtt://", "broker:1883", "mqtt://h:99999"])
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(SettingsError):
        LinkSettings(url=url, station="FR101")


def test_protocol_names() -> None:
    assert LinkSettings(url="mqtt://h", station="X", protocol="3.1.1").protocol is MqttProtocol.V311
    assert LinkSettings(url="mqtt://h", station="X").protocol is MqttProtocol.AUTO
    with pytest.raises(SettingsError, match="protocol"):
        LinkSettings(url="mqtt://h", station="X", protocol="4")


def test_the_password_stays_out_of_repr() -> None:
    settings = LinkSettings(url="mqtts://h", station="FR101", username="FR101", password="s3cret")
    assert "s3cret" not in repr(settings)


def test_a_certificate_needs_its_key() -> None:
    with pytest.raises(SettingsError, match="go together"):
        LinkSettings(url="mqtts://h", station="FR101", cert_file=Path("c.pem"))


def test_tls_checks_the_host_name(tmp_path: Path) -> None:
    authority = Authority.create(tmp_path)
    issued = authority.issue("FR101")
    settings = LinkSettings(
        url="mqtts://h",
        station="FR101",
        ca_file=authority.ca_file,
        cert_file=issued.cert_file,
        key_file=issued.key_file,
    )
    context = tls_context(settings)
    assert context is not None
    assert context.check_hostname
    assert context.verify_mode is ssl.CERT_REQUIRED


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    delays = [backoff_delay(n, initial_s=0.5, cap_s=60, jitter=0.0) for n in range(12)]
    assert delays[:4] == [0.25, 0.5, 1.0, 2.0]
    assert max(delays) == 30.0
    assert backoff_delay(40, initial_s=0.5, cap_s=60, jitter=0.999) < 60
    assert backoff_delay(1000, initial_s=0.5, cap_s=60, jitter=0.5) == 45.0


def test_reasons() -> None:
    login = MqttConnectError(ReasonCode(PacketTypes.CONNACK, identifier=134))
    assert describe(login) == "the broker refused the login: bad user name or password"
    assert describe(MqttConnectError(5)) == "the broker refused the login: not authorised"
    timed_out = MqttError("Operation timed out")
    alert = "failed to receive on socket: [SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] alert"
    assert describe(timed_out, alert).startswith("the broker demands a client certificate")
    assert describe(timed_out) == "MqttError: Operation timed out"
    group = ExceptionGroup("connection", [MqttError("[Errno 111] Connection refused")])
    assert describe(group) == "MqttError: [Errno 111] Connection refused"
