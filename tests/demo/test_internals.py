"""The amqtt and textual internals the demo relies on (lockgate.demo.internals) are still there;
a fake amqtt without the method the demo's broker overrides shows the check naming it."""

from __future__ import annotations

import types

import amqtt.broker

from lockgate.demo.internals import PINNED, problems


def pinned(name: str) -> str:
    return PINNED[name]


def test_the_installed_amqtt_and_textual_have_what_the_demo_relies_on() -> None:
    assert problems() == []


def test_pyproject_pins_the_checked_versions() -> None:
    from tests.test_doc_paths import ROOT  # noqa: PLC0415

    text = (ROOT / "pyproject.toml").read_text()
    for name, version in PINNED.items():
        assert f'"{name}=={version}"' in text


def test_an_amqtt_whose_broker_admits_otherwise_is_named() -> None:
    class Broker(amqtt.broker.Broker):  # type: ignore[misc]
        _authenticate = None  # admission moved elsewhere

    module = types.ModuleType("amqtt.broker")
    module.Broker = Broker  # type: ignore[attr-defined]
    assert problems(module, versions=pinned) == [
        "amqtt.broker.Broker._authenticate is gone or no coroutine"
    ]
