"""The protocol's one exception hierarchy.

Everything the pure protocol core rejects (bytes from a lock, credentials from a request, calls made
in the wrong session state) raises a subclass of :class:`ProtocolError`, never another kind of
exception, so a transport can catch one type at its edge.
"""

from __future__ import annotations

from lockgate.errors import LockgateError


class ProtocolError(LockgateError):
    """Something in the Ilockit protocol is wrong: a frame, a credential, or the session's order."""


class FrameError(ProtocolError):
    """Bytes that do not form a valid frame: length, padding or layout."""


class ChecksumError(FrameError):
    """A frame whose CRC-16 does not match its contents."""


class UnexpectedFrameError(ProtocolError):
    """A well-formed frame that makes no sense in the session's current state."""


class SessionStateError(ProtocolError):
    """The app asked the session for something its current state does not allow."""


class CredentialsError(ProtocolError, ValueError):
    """Key material of the wrong form, length or value. The message never contains key bytes."""
