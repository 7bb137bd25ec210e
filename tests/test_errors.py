"""One root for lockgate's own errors (src/lockgate/errors.py), each layer's under its own base."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import lockgate
from lockgate.errors import LockgateError
from lockgate.protocol.errors import ProtocolError
from lockgate.radio import Withdrawn
from lockgate.store import SchemaError, StoreError, StoreKeyError
from lockgate.store.command_keys import CommandKeyError
from lockgate.store.database import BadRow, StoreUnusableError

NOT_ERRORS = {Withdrawn}  # a verdict the engine hands the radio, not an error


def own_exceptions() -> set[type[BaseException]]:
    found: set[type[BaseException]] = set()
    for module_info in pkgutil.walk_packages(lockgate.__path__, "lockgate."):
        if module_info.name.endswith(".__main__"):
            continue  # runs the command line
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("lockgate."):
                found.add(value)
    return found


def test_every_error_of_lockgate_derives_from_the_root() -> None:
    found = own_exceptions()
    assert len(found) >= 15  # the walk found the layers' errors, not an empty package
    outside = sorted(
        f"{error.__module__}.{error.__qualname__}"
        for error in found - NOT_ERRORS
        if not issubclass(error, LockgateError)
    )
    assert outside == []


def test_the_store_has_one_root() -> None:
    for error in (SchemaError, StoreKeyError, CommandKeyError, StoreUnusableError, BadRow):
        assert issubclass(error, StoreError), error
    assert issubclass(StoreError, LockgateError)
    assert issubclass(ProtocolError, LockgateError)
