"""TLS and logins against a mosquitto that demands client certificates from a test CA (made in
the test with ``cryptography``): the right certificate gets in, a wrong one or none is refused,
and the link says why (``LinkState.last_error`` and its log line) and keeps retrying."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import structlog

from tests.brokers import Authority, Mosquitto, make_tls, running_mosquitto
from tests.mqtt.backend import backend
from tests.mqtt.station import Gateway, running_station

pytestmark = pytest.mark.integration


async def refused(station: Gateway) -> str:
    """The first reason the link gives for not getting in (it keeps retrying meanwhile)."""
    async with asyncio.timeout(30):
        while station.link.state.last_error is None:  # noqa: ASYNC110 - a state, not an event
            await asyncio.sleep(0.05)
    assert not station.link.state.connected
    print(station.link.state.last_error)
    return station.link.state.last_error or ""


def tls_url(broker: Mosquitto) -> str:
    return broker.url.replace("127.0.0.1", "localhost")  # the host name the certificate names


async def test_the_right_client_certificate_gets_in(
    tmp_path: Path, mosquitto_tls: Mosquitto
) -> None:
    broker = mosquitto_tls
    assert broker.tls is not None
    tls = broker.tls
    station_cert = tls.authority.issue("FR101")
    backend_cert = tls.authority.issue("backend")
    async with (
        backend(broker, cert=(str(backend_cert.cert_file), str(backend_cert.key_file))) as seen,
        running_station(
            tmp_path,
            tls_url(broker),
            ca_file=tls.authority.ca_file,
            cert_file=station_cert.cert_file,
            key_file=station_cert.key_file,
        ) as station,
    ):
        await station.link.wait_connected(30)
        await seen.wait_for(lambda: bool(seen.on("status")))
        assert seen.on("status")[-1].json()["state"] == "online"
        assert station.link.state.last_error is None


async def test_a_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    stranger = Authority.create(tmp_path / "other", "other-ca").issue("FR101")
    async with (
        running_mosquitto(tmp_path / "broker", tls=tls) as broker,
        running_station(
            tmp_path,
            tls_url(broker),
            ca_file=tls.authority.ca_file,
            cert_file=stranger.cert_file,
            key_file=stranger.key_file,
            connect_timeout_s=3,
        ) as station,
    ):
        reason = await refused(station)
        assert reason.startswith("the broker refused this station's client certificate"), reason


async def test_no_client_certificate_is_refused(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    async with (
        running_mosquitto(tmp_path / "broker", tls=tls) as broker,
        running_station(
            tmp_path, tls_url(broker), ca_file=tls.authority.ca_file, connect_timeout_s=3
        ) as station,
    ):
        reason = await refused(station)
        assert reason.startswith("the broker demands a client certificate"), reason


async def test_a_broker_the_station_does_not_trust_is_refused(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    mine = Authority.create(tmp_path / "mine", "station-ca")
    certificate = tls.authority.issue("FR101")
    async with (
        running_mosquitto(tmp_path / "broker", tls=tls) as broker,
        running_station(
            tmp_path,
            tls_url(broker),
            ca_file=mine.ca_file,
            cert_file=certificate.cert_file,
            key_file=certificate.key_file,
        ) as station,
    ):
        reason = await refused(station)
        assert "the broker's certificate was not accepted" in reason, reason


async def test_a_wrong_password_is_refused_and_said(tmp_path: Path) -> None:
    async with (
        running_mosquitto(tmp_path / "broker", users={"FR101": "right"}) as broker,
        running_station(tmp_path, broker.url, username="FR101", password="wrong") as station,
    ):
        with structlog.testing.capture_logs() as logs:
            reason = await refused(station)
        assert reason.startswith("the broker refused the login"), reason
        assert "wrong" not in str(logs)


async def test_plain_mqtt_warns_at_start(tmp_path: Path) -> None:
    async with running_mosquitto(tmp_path / "broker") as broker:
        with structlog.testing.capture_logs() as logs:
            async with running_station(tmp_path, broker.url) as station:
                await station.link.wait_connected(30)
        assert any("without TLS" in entry["event"] for entry in logs)
