"""The driver's one reach into bleak's private state (lockgate.ble.bleak_internals): still there in
the installed bleak, and named when it moves."""

from __future__ import annotations

import importlib.metadata
import types

import pytest

from lockgate.ble import bleak_internals
from lockgate.ble.bleak_internals import InternalsMovedError, check, forget_bluez


def test_the_installed_bleak_is_the_pinned_one() -> None:
    assert importlib.metadata.version("bleak") == bleak_internals.PINNED


def test_what_the_module_relies_on_is_there() -> None:
    check()


def test_a_bleak_without_its_managers_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = types.SimpleNamespace(BlueZManager=object)
    monkeypatch.setattr(bleak_internals, "_manager", fake)
    with pytest.raises(InternalsMovedError, match="_global_instances"):
        check()


def test_a_manager_without_its_bus_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    class Manager:
        def async_init(self) -> None: ...
        def _handle_bus_disconnect(self) -> None: ...

    fake = types.SimpleNamespace(_global_instances={}, BlueZManager=Manager)
    monkeypatch.setattr(bleak_internals, "_manager", fake)
    with pytest.raises(InternalsMovedError, match="_bus"):
        check()


async def test_forgetting_with_no_manager_is_nothing() -> None:
    assert forget_bluez() is False
