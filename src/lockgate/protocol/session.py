"""The app side of one Ilockit session, as a state machine with no I/O (docs/protocol.md).

A transport drives it: it writes what :meth:`Session.start` and the command methods return, feeds
every indicated chunk to :meth:`Session.receive`, and acts on the typed events that come back. The
session holds no clock and no randomness: the lock supplies the IV and the nonce.

States, in order: ``IDLE`` → ``AWAITING_IV`` → ``AWAITING_CHALLENGE`` → ``AWAITING_AUTHORISATION`` →
``AUTHORISED``; ``FAILED`` when the lock refused the authorisation (it then drops the link). Every
error raised is a :class:`~lockgate.protocol.errors.ProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from lockgate.model import LockState
from lockgate.protocol.credentials import Credentials
from lockgate.protocol.errors import FrameError, SessionStateError, UnexpectedFrameError
from lockgate.protocol.frames import (
    REQUEST_IV,
    USDIO_MIN_LENGTH,
    LockAction,
    ReadItem,
    Reassembler,
    UsdioCommand,
    UsdioMessage,
    chunks,
    wire_auth_id,
)
from lockgate.protocol.gatt import Channel
from lockgate.protocol.indications import GdioReader, Indication, IvIndicated
from lockgate.protocol.status import (
    AUTH_FAILURES,
    Status,
    config_lock_state,
    meaning_of,
)

NONCE_LENGTH = 32
MAX_COUNTER = 0xFFFF


class SessionState(Enum):
    IDLE = "idle"
    AWAITING_IV = "awaiting IV"
    AWAITING_CHALLENGE = "awaiting challenge"
    AWAITING_AUTHORISATION = "awaiting authorisation"
    AUTHORISED = "authorised"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Write:
    """A frame to write, with response, to one characteristic, in 20-byte chunks."""

    channel: Channel
    frame: bytes

    @property
    def chunks(self) -> list[bytes]:
        return chunks(self.frame)


# --- events -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authorised:
    """The lock accepted the credentials; commands may follow."""


@dataclass(frozen=True, slots=True)
class AuthorisationFailed:
    """The lock refused the credentials with ``status``; it drops the link within a second."""

    status: Status


@dataclass(frozen=True, slots=True)
class StatusReported:
    """A status the lock indicated: motion, a blocked bolt, an alarm, a refused command…

    ``meaning_of(status)`` says what it means for lock_state, hardware_state and the command.
    """

    status: Status


@dataclass(frozen=True, slots=True)
class UnrecognisedStatus:
    """A status byte that the protocol table does not name (a newer firmware's, perhaps)."""

    value: int


@dataclass(frozen=True, slots=True)
class BatteryRead:
    percent: int


@dataclass(frozen=True, slots=True)
class ConfigRead:
    lock_state: LockState
    alarm: bool
    raw_state: int


SessionEvent = (
    Authorised
    | AuthorisationFailed
    | StatusReported
    | UnrecognisedStatus
    | BatteryRead
    | ConfigRead
)


@dataclass(frozen=True, slots=True)
class Output:
    """What one received chunk leads to: events to act on, frames to write next."""

    events: tuple[SessionEvent, ...] = ()
    writes: tuple[Write, ...] = ()


_NOTHING = Output()


class Session:
    """One authorised conversation with one lock, app side."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._state = SessionState.IDLE
        self._iv: bytes | None = None
        self._counter = 0
        self._gdio = GdioReader()
        self._usdio = Reassembler(USDIO_MIN_LENGTH)

    def __repr__(self) -> str:
        return f"Session(state={self._state.value}, auth_id={self._credentials.auth_id})"

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def counter(self) -> int:
        """The counter of the last lock control command sent in this session (0: none yet)."""
        return self._counter

    # --- app to lock --------------------------------------------------------------------------

    def start(self) -> Write:
        """Request a fresh IV; a new IV ends any earlier authorisation and resets the counter."""
        self._state = SessionState.AWAITING_IV
        self._iv = None
        self._counter = 0
        self._gdio.reset()
        self._usdio.reset()
        return Write(Channel.GDIO, REQUEST_IV.encode())

    def unlock(self) -> Write:
        return self._lock_control(LockAction.OPEN)

    def lock(self) -> Write:
        return self._lock_control(LockAction.CLOSE)

    def read_battery(self) -> Write:
        return self._read(ReadItem.BATTERY)

    def read_config(self) -> Write:
        return self._read(ReadItem.CONFIG)

    def _lock_control(self, action: LockAction) -> Write:
        self._require(SessionState.AUTHORISED, "send a lock control command")
        if self._counter >= MAX_COUNTER:
            raise SessionStateError("the session's counter is exhausted: start a new session")
        self._counter += 1
        payload = self._counter.to_bytes(2, "little") + bytes((action,))
        return self._usdio_write(UsdioCommand.LOCK_CONTROL, payload)

    def _read(self, item: ReadItem) -> Write:
        self._require(SessionState.AUTHORISED, f"read {item.name.lower()}")
        return self._usdio_write(UsdioCommand.READ, item.to_bytes(2, "little"))

    def _usdio_write(self, command: int, payload: bytes) -> Write:
        assert self._iv is not None
        message = UsdioMessage(self._credentials.auth_id, command, payload)
        return Write(Channel.USDIO, message.encrypt(self._credentials.key, self._iv))

    def _require(self, state: SessionState, doing: str) -> None:
        if self._state is not state:
            raise SessionStateError(f"cannot {doing} while {self._state.value}")

    # --- lock to app --------------------------------------------------------------------------

    def receive(self, channel: Channel, chunk: bytes) -> Output:
        """Take one indicated chunk; return what it completes, if anything."""
        if self._state is SessionState.IDLE:
            raise UnexpectedFrameError(f"{channel} data before the session started")
        if channel is Channel.GDIO:
            indication = self._gdio.feed(chunk)
            return _NOTHING if indication is None else self._on_gdio(indication)
        frame = self._usdio.feed(chunk)
        return _NOTHING if frame is None else self._on_usdio(frame)

    def _on_gdio(self, indication: Indication) -> Output:
        if isinstance(indication, IvIndicated):
            if self._state is not SessionState.AWAITING_IV:
                raise UnexpectedFrameError(f"IV indicated while {self._state.value}")
            self._iv = indication.iv
            self._state = SessionState.AWAITING_CHALLENGE
            request = self._usdio_write(UsdioCommand.READ, ReadItem.CHALLENGE.to_bytes(2, "little"))
            return Output(writes=(request,))
        status = indication.status
        if not isinstance(status, Status):
            return Output(events=(UnrecognisedStatus(status),))
        return Output(events=(self._on_status(status),))

    def _on_status(self, status: Status) -> SessionEvent:
        waiting = self._state in (
            SessionState.AWAITING_CHALLENGE,
            SessionState.AWAITING_AUTHORISATION,
        )
        if meaning_of(status).authorised:
            if self._state is not SessionState.AWAITING_AUTHORISATION:
                raise UnexpectedFrameError(f"authorised status while {self._state.value}")
            self._state = SessionState.AUTHORISED
            return Authorised()
        if waiting and status in AUTH_FAILURES:
            self._state = SessionState.FAILED
            return AuthorisationFailed(status)
        return StatusReported(status)

    def _on_usdio(self, frame: bytes) -> Output:
        auth_id = wire_auth_id(frame)
        if auth_id != self._credentials.auth_id:
            raise UnexpectedFrameError(f"USDIO frame for auth id {auth_id}, not this session's")
        if self._iv is None:
            raise UnexpectedFrameError(f"USDIO frame while {self._state.value}")
        message = UsdioMessage.decrypt(frame, self._credentials.key, self._iv)
        if message.command == UsdioCommand.CHALLENGE:
            return self._on_challenge(message.payload)
        if self._state is not SessionState.AUTHORISED:
            raise UnexpectedFrameError(
                f"USDIO command {message.command:#06x} while {self._state.value}"
            )
        if message.command == UsdioCommand.BATTERY:
            if not message.payload or message.payload[0] > 100:
                raise FrameError("battery reply does not carry a percentage 0..100")
            return Output(events=(BatteryRead(message.payload[0]),))
        if message.command == UsdioCommand.CONFIG:
            if len(message.payload) < 2:
                raise FrameError("lock config reply carries fewer than 2 bytes")
            state = message.payload[0]
            return Output(
                events=(ConfigRead(config_lock_state(state), bool(message.payload[1]), state),)
            )
        raise UnexpectedFrameError(f"USDIO reply with unknown command {message.command:#06x}")

    def _on_challenge(self, nonce: bytes) -> Output:
        if self._state is not SessionState.AWAITING_CHALLENGE:
            raise UnexpectedFrameError(f"challenge while {self._state.value}")
        if len(nonce) != NONCE_LENGTH:
            raise FrameError(
                f"challenge carries {len(nonce)} bytes, not a {NONCE_LENGTH}-byte nonce"
            )
        self._state = SessionState.AWAITING_AUTHORISATION
        answer = self._usdio_write(UsdioCommand.ANSWER, nonce + self._credentials.identity)
        return Output(writes=(answer,))
