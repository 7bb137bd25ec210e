"""``lockgate ctl`` over TLS with the daemon's own settings: a mosquitto that demands a client
certificate from the test CA lets ctl in with one, and refuses it without (exit 3)."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import aiomqtt
import pytest

from tests.brokers import make_tls, running_mosquitto
from tests.ctl.harness import ctl, watching
from tests.e2e.station import ROOT, STATION

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_ctl_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    engineer = tls.authority.issue("engineer")
    station = tls.authority.issue(STATION)
    ca = str(tls.authority.ca_file)
    certificate = ("--cert-file", str(engineer.cert_file), "--key-file", str(engineer.key_file))
    async with running_mosquitto(tmp_path / "broker", tls=tls) as broker:
        context = ssl.create_default_context(cafile=ca)
        context.load_cert_chain(station.cert_file, station.key_file)
        async with aiomqtt.Client("127.0.0.1", broker.port, tls_context=context) as client:
            status = {"station": STATION, "state": "offline"}
            await client.publish(f"{ROOT}/{STATION}/status", json.dumps(status), qos=1, retain=True)

        async with watching(broker, "--json", "--ca-file", ca, *certificate) as watch:
            line = json.loads(await watch.line())
            assert line == {"topic": "status", "retained": True, "payload": status}
            code, _ = await watch.interrupt()
            assert code == 0

        # Without a client certificate the broker does not let ctl in: no answer, exit 3.
        refused = await ctl(broker, "book", "B1", "--user-id", "u-1", "--ca-file", ca)
        assert refused.code == 3
        assert "cannot reach the broker" in refused.stderr
        # A CA file that is not there is bad usage: nothing is tried.
        missing = await ctl(
            broker, "book", "B1", "--user-id", "u-1", "--ca-file", str(tmp_path / "none.pem")
        )
        assert missing.code == 2
        assert "broker settings" in missing.stderr
