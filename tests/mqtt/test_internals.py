"""The aiomqtt and paho internals the link relies on (lockgate.mqtt.internals) are still there.

An upgrade of aiomqtt or paho that moves one fails here, naming it, rather than somewhere deep in
a flood test or on a station. The fakes show that the check does fail when one is gone.
"""

from __future__ import annotations

import re
import types
from typing import Any

import aiomqtt
import paho.mqtt.client as paho_client

from lockgate.mqtt import internals
from lockgate.mqtt.internals import PINNED, problems


def pinned(name: str) -> str:
    return PINNED[name]


def test_the_installed_aiomqtt_and_paho_have_what_the_link_relies_on() -> None:
    assert problems() == []


def test_pyproject_pins_the_checked_versions() -> None:
    from tests.test_doc_paths import ROOT  # noqa: PLC0415

    text = (ROOT / "pyproject.toml").read_text()
    for name, version in PINNED.items():
        assert f'"{name}=={version}"' in text


class _ClientWithoutDisconnected:
    """aiomqtt's client as a version might write it: no ``_disconnected`` future."""

    def __init__(self) -> None:
        self._client = paho_client.Client(paho_client.CallbackAPIVersion.VERSION2)
        self._client.on_publish = self._on_publish

    def _on_publish(self, *args: Any) -> None:
        pass

    def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
        def callback() -> None:
            client.loop_read()
            if sock.pending() > 0:
                self._disconnected.set_exception(OSError())

        asyncio_loop: Any = None
        asyncio_loop.add_reader(sock, callback)


def fake_aiomqtt(client: type) -> types.ModuleType:
    module = types.ModuleType("aiomqtt")
    module.Client = client  # type: ignore[attr-defined]
    module.exceptions = aiomqtt.exceptions  # type: ignore[attr-defined]
    return module


def test_an_aiomqtt_without_the_disconnected_future_is_named() -> None:
    found = problems(fake_aiomqtt(_ClientWithoutDisconnected), versions=pinned)
    assert found == [
        (
            "aiomqtt.Client.__init__ no longer sets self._disconnected "
            "(fail_connection: the future that ends a connection)"
        )
    ]


def test_an_aiomqtt_that_reads_its_socket_otherwise_is_named() -> None:
    class Client(_ClientWithoutDisconnected):
        def __init__(self) -> None:
            self._client = paho_client.Client(paho_client.CallbackAPIVersion.VERSION2)
            self._client.on_publish = self._on_publish
            self._disconnected: Any = None

        def _on_socket_open(self, client: Any, userdata: Any, sock: Any) -> None:
            pass  # reads through a transport now: no reader on the loop to take over

    found = problems(fake_aiomqtt(Client), versions=pinned)
    assert len(found) == 4
    assert all("_on_socket_open no longer uses" in line for line in found)
    assert "add_reader" in found[0]


def test_a_paho_without_its_last_read_time_and_another_version_are_named() -> None:
    class Client(paho_client.Client):
        def __init__(self) -> None:
            pass

    paho = types.ModuleType("paho.mqtt.client")
    paho.Client = Client  # type: ignore[attr-defined]
    paho.time_func = paho_client.time_func  # type: ignore[attr-defined]
    versions = {"aiomqtt": "3.0.0", "paho-mqtt": PINNED["paho-mqtt"]}
    found = problems(aiomqtt, paho, versions=versions.__getitem__)
    assert found == [
        f"aiomqtt is 3.0.0, not the pinned {PINNED['aiomqtt']}: check lockgate.mqtt.internals",
        "paho.mqtt.client.Client no longer keeps _last_bytes_received (last_heard)",
    ]


def test_the_link_reaches_under_aiomqtt_only_through_the_module() -> None:
    from tests.test_doc_paths import ROOT  # noqa: PLC0415

    package = ROOT / "src" / "lockgate" / "mqtt"
    for path in package.glob("*.py"):
        if path.name == "internals.py":
            continue
        text = path.read_text()
        # the paho client under aiomqtt's (client._client), its future, paho's clock
        for private in (r"client\._client\b", r"\._disconnected\b", r"_last_bytes_received"):
            assert re.search(private, text) is None, (path.name, private)
        assert "aiomqtt.exceptions" not in text, path.name
    assert internals.MqttConnectError is aiomqtt.exceptions.MqttConnectError
