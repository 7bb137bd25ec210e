"""The store's error root, under the project's (:class:`lockgate.errors.LockgateError`)."""

from __future__ import annotations

from lockgate.errors import LockgateError


class StoreError(LockgateError):
    """The store could not do what was asked (disk, timeout, a schema it does not know, a key)."""
