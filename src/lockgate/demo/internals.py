"""Every use the demo makes of amqtt's and textual's internals, in one place, pinned.

- amqtt (the demo's broker, :mod:`lockgate.demo.broker`): the broker holds a client at CONNECT by
  overriding ``Broker._authenticate`` (:data:`AUTHENTICATE`, called with the session and the
  listener; no plugin hook can wait), takes over ``Broker.stream_connected`` (the method a
  listener calls per connection) to read each CONNECT first, and hands the connection on through
  the public ``Broker.external_connected``. amqtt leaves a delivery whose PUBACK it did not see as
  a task nobody awaits, running ``ProtocolHandler.mqtt_publish`` (:data:`ABANDONED_DELIVERY`),
  whose traceback the demo keeps off the screen.
- textual (the view, :mod:`lockgate.demo.app`): the screen as plain text is the screen's
  compositor's full update (:func:`screen_renderable`); textual's public screenshot is SVG only.

:data:`PINNED` holds the versions this was checked against (pyproject.toml pins them in the demo
extra); :func:`problems` names what moved, and ``tests/demo/test_internals.py`` fails on it.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import types
from collections.abc import Callable

import amqtt.broker
import amqtt.mqtt.protocol.handler
import textual.screen
from rich.console import RenderableType

PINNED = {"amqtt": "0.12.1", "textual": "8.2.8"}
"""The versions whose internals this module was checked against."""

AUTHENTICATE = "_authenticate"
"""amqtt's ``Broker`` method that admits a session; the demo's broker overrides it."""

ABANDONED_DELIVERY = "ProtocolHandler.mqtt_publish"
"""The qualified name of the coroutine an abandoned amqtt delivery runs."""


def screen_renderable(screen: textual.screen.Screen[object]) -> RenderableType | None:
    """The whole screen, as rich renders it (for a plain-text capture)."""
    return screen._compositor.render_update(full=True)


def problems(
    broker_module: types.ModuleType = amqtt.broker,
    handler_module: types.ModuleType = amqtt.mqtt.protocol.handler,
    screen_module: types.ModuleType = textual.screen,
    *,
    versions: Callable[[str], str] = importlib.metadata.version,
) -> list[str]:
    """What moved, one line each; empty when amqtt and textual are as this module expects."""
    found = [
        f"{name} is {versions(name)}, not the pinned {pinned}: check lockgate.demo.internals"
        for name, pinned in PINNED.items()
        if versions(name) != pinned
    ]
    broker = getattr(broker_module, "Broker", None)
    for method, parameters in (
        (AUTHENTICATE, 3),  # self, session, listener
        ("stream_connected", 4),  # self, reader, writer, listener_name
        ("external_connected", 4),  # self, reader, writer, listener_name
    ):
        function = getattr(broker, method, None)
        if not inspect.iscoroutinefunction(function):
            found.append(f"amqtt.broker.Broker.{method} is gone or no coroutine")
        elif len(inspect.signature(function).parameters) != parameters:
            found.append(f"amqtt.broker.Broker.{method} takes other parameters now")
    class_name, method_name = ABANDONED_DELIVERY.split(".")
    handler = getattr(getattr(handler_module, class_name, None), method_name, None)
    if getattr(getattr(handler, "__code__", None), "co_qualname", None) != ABANDONED_DELIVERY:
        found.append(f"amqtt's {ABANDONED_DELIVERY} is gone (the demo quiets its tracebacks)")
    screen = getattr(screen_module, "Screen", None)
    init = inspect.getsource(screen.__init__) if screen is not None else ""
    if "self._compositor = Compositor()" not in init:
        found.append("textual.screen.Screen no longer has a _compositor (screen_renderable)")
    compositor = getattr(screen_module, "Compositor", None)
    render_update = getattr(compositor, "render_update", None)
    if render_update is None or "full" not in inspect.signature(render_update).parameters:
        found.append("textual's Compositor.render_update(full=) is gone (screen_renderable)")
    return found
