"""Every use the MQTT link makes of aiomqtt's and paho's internals, in one place, pinned.

aiomqtt's public API has no way to do four things the link needs, so it reaches under it here and
nowhere else (:mod:`lockgate.mqtt.link`, :mod:`~lockgate.mqtt.drain` and
:mod:`~lockgate.mqtt.backpressure` go through these functions):

- :func:`paho_of`: aiomqtt's paho client (``Client._client``), to acknowledge a request only once
  the engine stored its answer (paho's ``manual_ack_set`` and ``ack``), to publish a window of
  messages without aiomqtt's per-publish task (paho's ``publish`` and ``on_publish``; aiomqtt's own
  ``on_publish`` is kept and called for the publishes it makes itself), and to read the socket.
- :func:`take_over_reading`: the reader aiomqtt adds to the event loop for paho's socket (in
  ``Client._on_socket_open``: ``loop_read`` until a TLS socket holds no decoded bytes) is replaced
  by the link's backpressure gate, which does the same but stops once enough requests wait.
- :func:`fail_connection`: a socket that breaks under the gate ends the connection as aiomqtt's
  own reader would (``Client._disconnected.set_exception``).
- :func:`last_heard`: when paho last read bytes from the broker (``_last_bytes_received``, on paho's
  clock ``time_func``, which is ``time.monotonic``), so that a PUBACK late behind a flood is told
  from a dead broker.
- :data:`MqttConnectError`: the CONNACK refusal, from ``aiomqtt.exceptions`` (not in aiomqtt's
  ``__all__``), to tell a refused login from other failures.

:data:`PINNED` holds the exact versions this was written against (pyproject.toml pins them), and
:func:`problems` checks that what is relied on is still there: ``tests/mqtt/test_internals.py``
fails, naming what moved, when an upgrade changes it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import inspect
import time
import types
from collections.abc import Callable

import aiomqtt
import aiomqtt.client
import aiomqtt.exceptions
import paho.mqtt.client as paho_client

PINNED = {"aiomqtt": "2.5.1", "paho-mqtt": "2.2.0"}
"""The versions whose internals this module was checked against (pyproject.toml pins them)."""

MqttConnectError = aiomqtt.exceptions.MqttConnectError


def paho_of(client: aiomqtt.Client) -> paho_client.Client:
    """The paho client under an aiomqtt client."""
    return client._client


def fail_connection(client: aiomqtt.Client, error: BaseException) -> None:
    """Ends the connection with ``error``, as aiomqtt's own socket reader does."""
    disconnected = client._disconnected
    if not disconnected.done():
        disconnected.set_exception(error)


def take_over_reading(
    loop: asyncio.AbstractEventLoop, client: aiomqtt.Client, read: Callable[[], None]
) -> int:
    """Replaces aiomqtt's reader of the client's socket with ``read``; the socket's file
    descriptor, or -1 when there is no socket (the connection is gone)."""
    sock = paho_of(client).socket()
    if sock is None:
        return -1
    fd = sock.fileno()
    loop.add_reader(fd, read)  # one reader per descriptor: this one replaces aiomqtt's
    return fd


def last_heard(paho: paho_client.Client) -> float | None:
    """When paho last read bytes from the broker, on :func:`time.monotonic`'s clock."""
    last = getattr(paho, "_last_bytes_received", None)
    return last if isinstance(last, float) else None


def problems(
    aiomqtt_module: types.ModuleType = aiomqtt,
    paho_module: types.ModuleType = paho_client,
    *,
    versions: Callable[[str], str] = importlib.metadata.version,
) -> list[str]:
    """What moved: one line per internal this module relies on that the given aiomqtt and paho
    no longer have (and the versions, where they differ from :data:`PINNED`); empty when all is
    as it was."""
    found = [
        f"{name} is {versions(name)}, not the pinned {pinned}: check lockgate.mqtt.internals"
        for name, pinned in PINNED.items()
        if versions(name) != pinned
    ]
    client_class = getattr(aiomqtt_module, "Client", None)
    if client_class is None:
        return [*found, "aiomqtt.Client is gone"]
    exceptions = getattr(aiomqtt_module, "exceptions", None)
    if not isinstance(getattr(exceptions, "MqttConnectError", None), type):
        found.append("aiomqtt.exceptions.MqttConnectError is gone")
    init = _source(client_class.__init__)
    for attribute, use in (
        ("self._client", "paho_of: the paho client under aiomqtt's"),
        ("self._disconnected", "fail_connection: the future that ends a connection"),
        ("on_publish = self._on_publish", "the drain: aiomqtt's on_publish, kept and called"),
    ):
        if attribute not in init:
            found.append(f"aiomqtt.Client.__init__ no longer sets {attribute} ({use})")
    opened = _source(getattr(client_class, "_on_socket_open", None))
    found += [
        f"aiomqtt.Client._on_socket_open no longer uses {step} "
        "(take_over_reading and the gate copy its reader)"
        for step in ("add_reader", "loop_read", "pending", "_disconnected.set_exception")
        if step not in opened
    ]
    paho_class = getattr(paho_module, "Client", None)
    if paho_class is None:
        return [*found, "paho.mqtt.client.Client is gone"]
    found += [
        f"paho.mqtt.client.Client.{method} is gone"
        for method in ("socket", "loop_read", "publish", "manual_ack_set", "ack")
        if not callable(getattr(paho_class, method, None))
    ]
    if "self._last_bytes_received" not in _source(paho_class.__init__):
        found.append("paho.mqtt.client.Client no longer keeps _last_bytes_received (last_heard)")
    if getattr(paho_module, "time_func", None) is not time.monotonic:
        found.append("paho.mqtt.client.time_func is not time.monotonic (last_heard's clock)")
    return found


def _source(function: object) -> str:
    try:
        return inspect.getsource(function)  # type: ignore[arg-type]
    except (TypeError, OSError):
        return ""
