"""A command request as it arrives on ``commands``: raw bytes in, a valid command or an answer out.

The bytes are parsed once (:func:`parse_request`, called by the gate in
:mod:`lockgate.contract.envelope`); then two steps, because idempotency sits between them:
:func:`read_envelope` finds the request's ``id`` (without one, the only answer is an error document
on ``errors``) and its fingerprint; the engine looks the id up; only a new id goes through
:func:`validate`, which checks every field by the contract's rules and maps each failure to its
``ERRORS.*`` code with a reason naming the field.
Nothing here raises for bad input, and nothing here ever puts a key byte into a message: the
fingerprint is an HMAC under the station key, and reasons name fields, never values. Every text
that leaves here is valid UTF-8: a request with a lone surrogate anywhere (a JSON ``\\ud800``
escape, which Python's parser accepts) or nested deeper than any request can be is refused before
its fields are read, and a reason echoes a value only when it is short and plain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lockgate.contract.documents import ErrorDocument
from lockgate.contract.station import Station
from lockgate.contract.times import parse_time
from lockgate.model import CommandName, ErrorCode, ForceReason
from lockgate.protocol.credentials import Credentials, parse_credentials
from lockgate.protocol.errors import CredentialsError

MAX_PAYLOAD_BYTES = 16 * 1024
DEFAULT_TIMEOUT = timedelta(seconds=60)
DEFAULT_BOOKING_TIMEOUT = timedelta(hours=1)
MIN_COMMENT_LENGTH = 5
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The deepest a request goes is ``credentials`` holding a list of byte values: three levels.
MAX_DEPTH = 8
MAX_REASON_LENGTH = 200
# What a reason may repeat of a request: a short plain token (a bike id, a field name).
_PLAIN = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII)

# Fields that only some commands take; any other command given one is refused, so that a
# misdirected field (``end_rental`` on an unlock) is never silently ignored.
_ONLY_FOR: dict[str, frozenset[CommandName]] = {
    "end_rental": frozenset({CommandName.LOCK}),
    "reason": frozenset({CommandName.FORCE_UNLOCK}),
    "comment": frozenset({CommandName.FORCE_UNLOCK}),
    "power_cycle": frozenset({CommandName.SYNC_DEVICE}),
}
_NEEDS_USER = frozenset({CommandName.BOOK, CommandName.CANCEL_BOOKING})
# Reported first when several fields are wrong, so the answer names the most basic problem.
FIELDS = (
    "id",
    "command",
    "bike",
    "timeout_at",
    "user_id",
    "credentials",
    "end_rental",
    "reason",
    "comment",
    "power_cycle",
)


class _RequestBody(BaseModel):
    """The request's shape: types only; the rules between fields are in :func:`validate`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: str
    command: str
    bike: str
    timeout_at: str | None = None
    user_id: str | None = Field(default=None, min_length=1, max_length=128)
    credentials: dict[str, Any] | None = None
    end_rental: bool | None = None
    reason: str | None = None
    comment: str | None = Field(default=None, max_length=1000)
    power_cycle: bool | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A request with a usable id: the JSON object and its fingerprint (HMAC of its content)."""

    id: str
    document: dict[str, Any] = field(repr=False)
    fingerprint: str

    @property
    def command(self) -> str | None:
        name = self.document.get("command")
        return name if isinstance(name, str) else None

    @property
    def bike(self) -> str | None:
        bike = self.document.get("bike")
        return bike if isinstance(bike, str) else None


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A valid request: what the engine runs. The credentials never leave memory."""

    id: str
    name: CommandName
    bike: str
    timeout_at: datetime
    fingerprint: str
    user_id: str | None = None
    end_rental: bool = False
    reason: ForceReason | None = None
    comment: str | None = None
    power_cycle: bool = False
    credentials: Credentials | None = field(default=None, repr=False)
    remove_credentials: bool = False  # provision with ``{}``
    relative: bool = False
    """``timeout_at`` is the default deadline: a duration from the receipt, told on the monotonic
    clock (the wall-clock ``timeout_at`` only shows it); else the backend's, on the wall clock."""
    note: str | None = None
    """Why the deadline is not the request's own (the station's clock is not synchronised)."""

    def parameters(self) -> dict[str, Any]:
        """What the store keeps of the request: everything but the credentials, and only the
        fields that are not their default (``None``, ``False``): the command row is then small
        enough to stay in its database page (docs/store.md, writes). ``request_of`` reads a
        missing field as its default."""
        fields = {
            "user_id": self.user_id,
            "end_rental": self.end_rental,
            "reason": self.reason,
            "comment": self.comment,
            "power_cycle": self.power_cycle,
            "remove_credentials": self.remove_credentials,
        }
        return {
            name: value
            for name, value in fields.items()
            if value is not None and value is not False
        }


@dataclass(frozen=True, slots=True)
class RejectedRequest:
    """A request with a usable id that breaks a rule: it ends in ERROR and changes nothing."""

    id: str
    name: str | None
    bike: str | None
    timeout_at: datetime | None
    fingerprint: str
    error_code: ErrorCode
    reason: str


def fingerprint(document: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 of the request's canonical JSON: equal for equal content, and keyed, so the
    stored fingerprint of a request with credentials gives nothing to whoever reads the store."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hmac.new(key, canonical.encode("utf-8"), hashlib.sha256).hexdigest()


def parse_request(payload: bytes) -> dict[str, Any] | str:
    """The request's JSON object, or what keeps the payload from being one (for its error
    document). The one place a request's bytes are parsed: the gate (signed and sealed requests,
    :mod:`lockgate.contract.envelope`) parses with it and hands the object on."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        return f"payload is larger than {MAX_PAYLOAD_BYTES} bytes"
    try:
        document = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "payload is not valid JSON"
    if not isinstance(document, dict):
        return "payload is not a JSON object"
    return document


def read_envelope(
    request: bytes | dict[str, Any] | str, *, fingerprint_key: bytes
) -> Envelope | ErrorDocument:
    """The request's id and fingerprint, or the error document for a request with no usable id.

    ``request``: what :func:`parse_request` made of the payload (the engine passes the gate's,
    so the request is parsed once), or the raw payload, parsed here."""
    parsed = parse_request(request) if isinstance(request, bytes) else request
    if isinstance(parsed, str):
        return _error_document(parsed, None)
    document = parsed
    raw_id = document.get("id")
    usable_id = raw_id if isinstance(raw_id, str) and ID_PATTERN.match(raw_id) else None
    problem = hostile_structure(document)
    if problem is not None:
        return _error_document(f"payload: {problem}", usable_id)
    if raw_id is None:
        return _error_document("id: required", None)
    if usable_id is None:
        # The contract echoes a broken string id too, so the backend can match the answer.
        echo = raw_id if isinstance(raw_id, str) and len(raw_id) <= 256 else None
        return _error_document("id: must be 1 to 64 of A-Z a-z 0-9 _ -", echo)
    try:
        digest = fingerprint(document, fingerprint_key)
    except (ValueError, TypeError, RecursionError):
        return _error_document("payload is not valid JSON", usable_id)
    return Envelope(usable_id, document, digest)


def hostile_structure(document: object) -> str | None:
    """What makes a parsed request unusable before any field is read: text that is not valid
    Unicode (a lone surrogate, in a key or a value) or nesting deeper than :data:`MAX_DEPTH`.
    Walked with an explicit stack, so a deep document cannot exhaust Python's recursion."""
    stack: list[tuple[object, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not _is_unicode(value):
                return "text that is not valid Unicode (a lone surrogate)"
        elif isinstance(value, dict | list):
            if depth >= MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and not _is_unicode(key):
                    return "text that is not valid Unicode (a lone surrogate)"
                stack.append((item, depth + 1))
    return None


def plain(value: object) -> str | None:
    """``value`` if it is short plain text a reason or a document may repeat, else ``None``."""
    return value if isinstance(value, str) and _PLAIN.fullmatch(value) else None


def safe_reason(reason: str) -> str:
    """A reason as it may be stored, logged and published: valid UTF-8, at most
    :data:`MAX_REASON_LENGTH` characters (the checks above already keep values out of it)."""
    text = reason.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= MAX_REASON_LENGTH else text[: MAX_REASON_LENGTH - 1] + "…"


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def default_timeout(name: CommandName) -> timedelta:
    """The deadline of a request without ``timeout_at``: an hour for a booking, else 60 s."""
    return DEFAULT_BOOKING_TIMEOUT if name is CommandName.BOOK else DEFAULT_TIMEOUT


def validate(
    envelope: Envelope, *, station: Station, now: datetime, clock_synced: bool = True
) -> CommandRequest | RejectedRequest:
    """Every rule of the contract in a fixed order: the first broken one answers. While the
    station's clock is not synchronised (``clock_synced`` false), a ``timeout_at`` is checked for
    its form but not judged against that clock: the request gets the default deadline instead
    (a clock days off would refuse, or expire at once, what a synchronised one takes)."""

    def reject(code: ErrorCode, reason: str, timeout_at: datetime | None = None) -> RejectedRequest:
        return RejectedRequest(
            envelope.id,
            envelope.command,
            plain(envelope.bike),
            timeout_at,
            envelope.fingerprint,
            code,
            safe_reason(reason),
        )

    try:
        body = _RequestBody.model_validate(envelope.document)
    except ValidationError as err:
        field_name, message = _first_error(err)
        code = ErrorCode.INVALID_TIMEOUT_AT if field_name == "timeout_at" else ErrorCode.BAD_REQUEST
        return reject(code, f"{field_name}: {message}")

    try:
        name = CommandName(body.command)
    except ValueError:
        known = ", ".join(name.value for name in CommandName)
        return reject(ErrorCode.BAD_REQUEST, f"command: unknown command, expected one of {known}")
    lock = station.lock(body.bike)
    if lock is None:
        shown = plain(body.bike)
        named = f"{shown} is" if shown is not None else "is"
        return reject(ErrorCode.NOT_FOUND, f"bike: {named} not registered at this station")

    for field_name, commands in _ONLY_FOR.items():
        if getattr(body, field_name) is not None and name not in commands:
            allowed = ", ".join(sorted(commands))
            return reject(ErrorCode.BAD_REQUEST, f"{field_name}: only for {allowed}")
    if name in _NEEDS_USER and body.user_id is None:
        return reject(ErrorCode.BAD_REQUEST, f"user_id: required for {name}")

    reason: ForceReason | None = None
    if name is CommandName.FORCE_UNLOCK:
        if body.reason is None:
            return reject(ErrorCode.BAD_REQUEST, "reason: required for force-unlock")
        try:
            reason = ForceReason(body.reason)
        except ValueError:
            return reject(ErrorCode.BAD_REQUEST, "reason: not one of the force-unlock reasons")
        comment = (body.comment or "").strip()
        if reason.needs_comment and len(comment) < MIN_COMMENT_LENGTH:
            return reject(
                ErrorCode.BAD_REQUEST,
                f"comment: at least {MIN_COMMENT_LENGTH} characters when reason is {reason}",
            )

    relative = body.timeout_at is None
    note: str | None = None
    if body.timeout_at is not None:
        try:
            timeout_at = parse_time(body.timeout_at)
        except ValueError:
            return reject(ErrorCode.INVALID_TIMEOUT_AT, "timeout_at: not an RFC 3339 date-time")
        if not clock_synced:
            relative = True
            seconds = int(default_timeout(name).total_seconds())
            note = (
                "timeout_at not judged: the station's clock is not synchronised; "
                f"the default deadline of {seconds} s applies"
            )
    if relative:
        timeout_at = now + default_timeout(name)
    elif timeout_at <= now:
        return reject(ErrorCode.INVALID_TIMEOUT_AT, "timeout_at: must be in the future", timeout_at)

    credentials: Credentials | None = None
    remove = False
    if name is CommandName.PROVISION and body.credentials is None:
        return reject(ErrorCode.BAD_REQUEST, "credentials: required for provision", timeout_at)
    if name is CommandName.PROVISION and body.credentials == {}:
        remove = True
    elif body.credentials is not None:
        try:
            credentials = parse_credentials(lock.profile, body.credentials)
        except CredentialsError as err:
            # The message names the field and its form, never a key byte (credentials.py).
            return reject(ErrorCode.BAD_REQUEST, f"credentials: {err}", timeout_at)

    if name is CommandName.TAKE_PHOTO:
        return reject(
            ErrorCode.COMMAND_NOT_SUPPORTED,
            "take-photo: these locks have no camera",
            timeout_at,
        )

    return CommandRequest(
        id=envelope.id,
        name=name,
        bike=body.bike,
        timeout_at=timeout_at,
        fingerprint=envelope.fingerprint,
        user_id=body.user_id,
        end_rental=bool(body.end_rental),
        reason=reason,
        comment=body.comment,
        power_cycle=bool(body.power_cycle),
        credentials=credentials,
        remove_credentials=remove,
        relative=relative,
        note=note,
    )


def _first_error(err: ValidationError) -> tuple[str, str]:
    """The most basic broken field and what is wrong with it; never the value itself."""

    def rank(error: Any) -> int:
        location = error["loc"][0] if error["loc"] else ""
        return FIELDS.index(location) if location in FIELDS else len(FIELDS)

    error = min(err.errors(include_input=False, include_url=False), key=rank)
    location = str(error["loc"][0]) if error["loc"] else "request"
    if location not in FIELDS and error["type"] != "extra_forbidden":
        location = "request"
    if error["type"] == "missing":
        return location, "required"
    if error["type"] == "extra_forbidden":
        return plain(location) or "request", "not a field of the contract"
    return location, str(error["msg"])


def _error_document(message: str, correlation_id: str | None) -> ErrorDocument:
    return ErrorDocument(
        error_message=message,
        status_code=400,
        correlation_id=correlation_id if correlation_id is not None else str(uuid.uuid4()),
        error_code=ErrorCode.BAD_REQUEST,
    )
