"""One station seen from the backend: :class:`StationClient` (docs/mqtt-contract.md, A backend
client library).

One MQTT connection (3.1.1, clean session: every broker speaks it) and one reader task. The reader
subscribes to the station's ``status``, ``locks/+``, ``events``, ``commands/+`` and ``errors`` —
never ``commands`` itself, where requests carry lock keys — and hands each message to whoever
waits for it: the cache of the retained documents (status, one document per lock), the streams of
events and messages, and the commands being sent. :meth:`StationClient.send` makes a request's
bytes once (credentials sealed to the station's key and the request signed, when the client holds
a backend key), publishes them with QoS 1 until the receipt comes (any document of the command's
id; a PUBACK is not the receipt), and follows the command to its end.

Only the contract is spoken here: no part of the station daemon is imported.

Why one module of about 650 lines: the reader, the cache it fills and the waiters it wakes share
one connection's state (what was received, what each send still waits for), and every method of
the client reads or waits on that state; the plain values it hands out are small and at the top.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urlsplit

import aiomqtt
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from lockgate.client.errors import (
    BrokerLostError,
    CannotSealError,
    CommandRefusedError,
    CommandTimedOutError,
    NoAnswerError,
)
from lockgate.contract import topics
from lockgate.contract.request import DEFAULT_BOOKING_TIMEOUT, DEFAULT_TIMEOUT, ID_PATTERN
from lockgate.contract.signing import seal_credentials, sign_request
from lockgate.contract.times import format_time, parse_time

RESEND_S = 3.0
"""How long :meth:`StationClient.send` waits for the receipt before the same bytes go again."""
WAIT_S = 15.0
"""How long a receipt (or the retained status) is waited for, by default."""
CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 10.0
EVENT_IDS_KEPT = 10_000
"""How many ``event_id`` an event stream remembers to drop duplicates."""
FINAL = frozenset({"SUCCESS", "ERROR"})
SUBSCRIBED = (
    topics.STATUS,
    f"{topics.LOCKS}/+",
    topics.EVENTS,
    f"{topics.COMMANDS}/+",
    topics.ERRORS,
)
"""The station's topics the client reads."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Message:
    """One message of the station: ``topic`` after ``{root}/{station}/``, the payload parsed
    (``None`` when it is not a JSON object: the station never sends one, someone else might)."""

    topic: str
    payload: dict[str, Any] | None
    retained: bool


@dataclass(frozen=True, slots=True)
class Event:
    """One event, first copy only. ``missed`` holds the ``seq`` numbers that were skipped just
    before it (empty when none): events the stream did not see, lost or still to be replayed."""

    document: dict[str, Any]
    missed: range = range(0)

    @property
    def seq(self) -> int | None:
        seq = self.document.get("seq")
        return seq if isinstance(seq, int) else None

    @property
    def type(self) -> str | None:
        kind = self.document.get("type")
        return kind if isinstance(kind, str) else None


def state_of(document: Mapping[str, Any]) -> str | None:
    """A command document's ``state.value``; None for anything else."""
    state = document.get("state")
    value = state.get("value") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def request(
    command: str,
    bike: str,
    *,
    command_id: str | None = None,
    timeout_s: float | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A request of the contract: ``id`` (a new one unless given), ``command``, ``bike``,
    ``timeout_at`` when ``timeout_s`` is given, and the other fields as given (``None`` left
    out). The station checks every rule; this checks none but the id's form."""
    body: dict[str, Any] = {
        "id": command_id if command_id is not None else uuid.uuid4().hex,
        "command": str(command),
        "bike": bike,
    }
    if not ID_PATTERN.match(body["id"]):
        raise ValueError("id: must be 1 to 64 of A-Z a-z 0-9 _ -")
    if timeout_s is not None:
        body["timeout_at"] = format_time(datetime.now(UTC) + timedelta(seconds=timeout_s))
    body.update({key: value for key, value in fields.items() if value is not None})
    return body


class _Stream(Generic[T]):
    """Items handed over by the reader, until the client ends."""

    def __init__(self, client: StationClient, streams: list[Any]) -> None:
        self._client = client
        self._streams = streams
        self._queue: asyncio.Queue[T | None] = asyncio.Queue()
        streams.append(self)

    def _put(self, item: T | None) -> None:
        self._queue.put_nowait(item)

    def close(self) -> None:
        with contextlib.suppress(ValueError):
            self._streams.remove(self)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        while True:
            item = await self._queue.get()
            if item is None:
                self.close()
                self._client._raise_lost()
                raise StopAsyncIteration
            taken = self._take(item)
            if taken is not None:
                return taken

    def _take(self, item: T) -> T | None:
        return item

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class MessageStream(_Stream[Message]):
    """Every message of the station as it comes; the retained status and lock documents the
    client already holds come first."""


class EventStream(_Stream[Event]):
    """The station's events as they come: each ``event_id`` once (a replayed copy of an event
    already seen is dropped), each with the ``seq`` numbers missed before it."""

    def __init__(self, client: StationClient, streams: list[Any]) -> None:
        super().__init__(client, streams)
        self._last_seq: int | None = None
        self._seen: set[str] = set()
        self._order: deque[str] = deque()

    def _take(self, item: Event) -> Event | None:
        event_id = item.document.get("event_id")
        if isinstance(event_id, str):
            if event_id in self._seen:
                return None
            self._seen.add(event_id)
            self._order.append(event_id)
            while len(self._order) > EVENT_IDS_KEPT:
                self._seen.discard(self._order.popleft())
        seq = item.seq
        if seq is None:
            return item
        last = self._last_seq
        self._last_seq = seq if last is None else max(last, seq)
        if last is not None and seq > last + 1:
            return Event(item.document, range(last + 1, seq))
        return item


class StationClient:
    """The backend's side of one station: ``async with StationClient(url, station) as client``.

    ``broker`` is ``mqtt://HOST[:PORT]`` or ``mqtts://HOST[:PORT]`` (TLS with ``tls_context``,
    else the system's CAs). ``signing_key`` (the backend's Ed25519 private key) signs every
    request and seals its credentials; ``seal`` seals them without signing. They are sealed to
    ``station_key`` (the station's public JWK) or else to the ``sealing_key`` of its retained
    status. ``wait_s`` bounds the wait for a receipt or the status; ``resend_s`` is the time
    between two sends of a request without receipt.
    """

    def __init__(
        self,
        broker: str,
        station: str,
        *,
        tls_context: ssl.SSLContext | None = None,
        username: str | None = None,
        password: str | None = None,
        topic_root: str = "lockgate/v1",
        client_id: str | None = None,
        signing_key: OKPKey | None = None,
        signing_kid: str | None = None,
        station_key: Mapping[str, Any] | None = None,
        seal: bool = False,
        wait_s: float = WAIT_S,
        resend_s: float = RESEND_S,
    ) -> None:
        parts = urlsplit(broker)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker must be mqtt://HOST[:PORT] or mqtts://HOST[:PORT]: {broker}")
        tls = parts.scheme == "mqtts"
        self.station = station
        self.host = parts.hostname
        self.port = parts.port or (8883 if tls else 1883)
        self.prefix = f"{topic_root}/{station}/"
        self.wait_s = wait_s
        self.resend_s = resend_s
        self._tls = (tls_context or ssl.create_default_context()) if tls else None
        self._username = username
        self._password = password
        self._client_id = client_id or f"lockgate-client-{uuid.uuid4().hex[:12]}"
        self._signing_key = signing_key
        self._signing_kid = signing_kid
        self._station_key = station_key
        self._seal = seal
        self._mqtt: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._status: dict[str, Any] | None = None
        self._locks: dict[str, dict[str, Any]] = {}
        self._waiters: dict[str, list[asyncio.Queue[dict[str, Any] | None]]] = {}
        self._event_streams: list[EventStream] = []
        self._message_streams: list[MessageStream] = []
        self._tick = asyncio.Event()
        self._ended = False
        self._lost: BrokerLostError | None = None

    # --- the connection ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        mqtt = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self._client_id,
            username=self._username,
            password=self._password,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            timeout=CONNECT_TIMEOUT_S,
            tls_context=self._tls,
        )
        try:
            await mqtt.__aenter__()
        except aiomqtt.MqttError as err:
            raise NoAnswerError(
                f"cannot reach the broker at {self.host}:{self.port}: {err}"
            ) from err
        self._mqtt = mqtt
        self._reader = asyncio.create_task(self._read(), name="lockgate.client.reader")
        try:
            await mqtt.subscribe([(self.prefix + topic, 1) for topic in SUBSCRIBED])
        except aiomqtt.MqttError as err:
            await self.__aexit__(None, None, None)
            raise BrokerLostError(f"the broker dropped the connection: {err}") from err
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        mqtt, self._mqtt = self._mqtt, None
        if mqtt is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await mqtt.__aexit__(None, None, None)
        self._end()

    async def _read(self) -> None:
        assert self._mqtt is not None
        try:
            async for raw in self._mqtt.messages:
                self._take(_parse(raw, self.prefix))
            self._lost = BrokerLostError("the broker closed the connection")
        except aiomqtt.MqttError as err:
            self._lost = BrokerLostError(f"the broker dropped the connection: {err}")
        finally:
            self._end()

    def _end(self) -> None:
        if self._ended:
            return
        self._ended = True
        for queues in self._waiters.values():
            for queue in queues:
                queue.put_nowait(None)
        for events in self._event_streams:
            events._put(None)
        for messages in self._message_streams:
            messages._put(None)
        self._changed()

    def _raise_lost(self) -> None:
        if self._lost is not None:
            raise self._lost

    def _changed(self) -> None:
        self._tick.set()
        self._tick = asyncio.Event()

    def _take(self, message: Message) -> None:
        document, topic = message.payload, message.topic
        for stream in self._message_streams:
            stream._put(message)
        if document is None:
            return
        if topic == topics.STATUS:
            self._status = document
        elif topic.startswith(topics.LOCKS + "/"):
            self._locks[topic.removeprefix(topics.LOCKS + "/")] = document
        elif topic == topics.EVENTS:
            for events in self._event_streams:
                events._put(Event(document))
        elif topic.startswith(topics.COMMANDS + "/"):
            for queue in self._waiters.get(topic.removeprefix(topics.COMMANDS + "/"), ()):
                queue.put_nowait(document)
        elif topic == topics.ERRORS:
            for queue in self._waiters.get(str(document.get("correlation_id")), ()):
                queue.put_nowait(document)
        self._changed()

    # --- what the station says -----------------------------------------------------------------

    @property
    def status(self) -> dict[str, Any] | None:
        """The station's retained status document, as last seen (None before it came)."""
        return self._status

    @property
    def locks(self) -> dict[str, dict[str, Any]]:
        """Each lock's retained document, by bike, as last seen."""
        return dict(self._locks)

    def lock_document(self, bike: str) -> dict[str, Any] | None:
        return self._locks.get(bike)

    async def wait_status(
        self, *, online: bool | None = None, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """The station's status once it came (``online``: once its ``state`` says so). Raises
        :class:`NoAnswerError` when none comes within ``timeout_s`` (default ``wait_s``)."""

        def ready() -> dict[str, Any] | None:
            status = self._status
            if status is None:
                return None
            if online is not None and (status.get("state") == "online") != online:
                return None
            return status

        wait_s = self.wait_s if timeout_s is None else timeout_s
        try:
            return await self.wait_for(ready, timeout_s=wait_s)
        except TimeoutError:
            raise NoAnswerError(
                f"no status document of station {self.station} within {wait_s:g} s"
            ) from None

    async def wait_lock(
        self,
        bike: str,
        until: Callable[[dict[str, Any]], bool] = lambda _: True,
        *,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """The lock's document once ``until(document)`` holds (raises ``TimeoutError``)."""

        def found() -> dict[str, Any] | None:
            document = self._locks.get(bike)
            return document if document is not None and until(document) else None

        return await self.wait_for(found, timeout_s=self.wait_s if timeout_s is None else timeout_s)

    async def wait_for(self, check: Callable[[], T | None], *, timeout_s: float) -> T:
        """Until ``check()`` (called after every message) returns something other than None.
        Raises ``TimeoutError`` after ``timeout_s``, :class:`BrokerLostError` if the connection
        goes first."""
        async with asyncio.timeout(timeout_s):
            while (result := check()) is None:
                if self._ended:
                    self._raise_lost()
                    raise NoAnswerError("the client is closed")
                await self._tick.wait()
        return result

    def events(self) -> EventStream:
        """The events from now on: ``async for event in client.events()``. It ends (raising
        :class:`BrokerLostError` if the broker went) when the client does."""
        return EventStream(self, self._event_streams)

    def messages(self) -> MessageStream:
        """Every message on the subscribed topics from now on, the retained documents the client
        holds first."""
        stream = MessageStream(self, self._message_streams)
        if self._status is not None:
            stream._put(Message(topics.STATUS, self._status, retained=True))
        for bike, document in self._locks.items():
            stream._put(Message(topics.lock(bike), document, retained=True))
        if self._ended:
            stream._put(None)
        return stream

    # --- commands ------------------------------------------------------------------------------

    async def prepare(self, body: Mapping[str, Any]) -> bytes:
        """The bytes that go on ``commands`` for this request: plain JSON, or with its credentials
        sealed and the whole signed. Made once per :meth:`send`: every re-send is the same."""
        outgoing = dict(body)
        credentials = outgoing.get("credentials")
        signing = self._signing_key is not None
        if (signing or self._seal) and isinstance(credentials, Mapping) and credentials:
            key = self._station_key
            if key is None:
                status = await self.wait_status()
                found = status.get("sealing_key")
                if not isinstance(found, dict):
                    raise CannotSealError(
                        f"station {self.station} publishes no sealing_key: cannot seal"
                    )
                key = found
            try:
                outgoing["credentials"] = seal_credentials(credentials, key)
            except (JoseError, ValueError, TypeError, KeyError) as err:
                raise CannotSealError(f"cannot seal the credentials: {err}") from err
        if self._signing_key is not None:
            try:
                return sign_request(
                    outgoing,
                    key=self._signing_key,
                    station=self.station,
                    now=datetime.now(UTC),
                    kid=self._signing_kid,
                )
            except (JoseError, ValueError, TypeError, KeyError) as err:
                raise CannotSealError(f"cannot sign the request: {err}") from err
        return json.dumps(outgoing).encode()

    async def send(
        self,
        body: Mapping[str, Any],
        *,
        on_document: Callable[[dict[str, Any]], None] | None = None,
        wait_s: float | None = None,
        follow_s: float | None = None,
    ) -> dict[str, Any]:
        """Sends the request until its receipt, follows it to its end, returns its SUCCESS
        document.

        ``on_document`` sees every document of the command as it comes. The receipt is waited
        for ``wait_s`` (default: the client's); the end, ``follow_s`` from the receipt (default:
        until the request's ``timeout_at``, the station's default without one, and ``wait_s``
        more for the last word). Raises :class:`CommandRefusedError` for an ERROR (or an error
        document of its id), :class:`NoAnswerError` without a receipt, :class:`BrokerLostError`
        when the connection goes, :class:`CommandTimedOutError` without an end in time."""
        command_id = body.get("id")
        if not isinstance(command_id, str) or not ID_PATTERN.match(command_id):
            raise ValueError("id: must be 1 to 64 of A-Z a-z 0-9 _ -")
        wait = self.wait_s if wait_s is None else wait_s
        follow = _lifetime(body) + wait if follow_s is None else follow_s
        payload = await self.prepare(body)
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._waiters.setdefault(command_id, []).append(queue)
        try:
            return await self._follow(
                command_id,
                payload=payload,
                queue=queue,
                wait_s=wait,
                follow_s=follow,
                on_document=on_document,
            )
        finally:
            queues = self._waiters.get(command_id, [])
            queues.remove(queue)
            if not queues:
                self._waiters.pop(command_id, None)

    async def _follow(
        self,
        command_id: str,
        *,
        payload: bytes,
        queue: asyncio.Queue[dict[str, Any] | None],
        wait_s: float,
        follow_s: float,
        on_document: Callable[[dict[str, Any]], None] | None,
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        resend_at = loop.time()
        answered = False
        last: dict[str, Any] | None = None
        while True:
            if self._ended:
                self._raise_lost()
                raise NoAnswerError("the client is closed")
            if not answered and loop.time() >= resend_at:
                await self._publish(payload)
                resend_at = loop.time() + self.resend_s
            until = deadline if answered else min(deadline, resend_at)
            try:
                async with asyncio.timeout(max(0.0, until - loop.time())):
                    document = await queue.get()
            except TimeoutError:
                if loop.time() < deadline:
                    continue
                if answered:
                    raise CommandTimedOutError(command_id, follow_s, last) from None
                raise NoAnswerError(
                    f"station {self.station} did not answer within {wait_s:g} s"
                    f" (no receipt of command {command_id})"
                ) from None
            if document is None:
                continue  # the client ended: said at the top
            if "error_message" in document:
                raise CommandRefusedError(document)
            if not answered:
                answered = True
                deadline = loop.time() + follow_s
            last = document
            if on_document is not None:
                on_document(document)
            state = state_of(document)
            if state == "SUCCESS":
                return document
            if state == "ERROR":
                raise CommandRefusedError(document)

    async def _publish(self, payload: bytes) -> None:
        if self._mqtt is None:
            raise NoAnswerError("the client is not connected (use async with)")
        try:
            await self._mqtt.publish(
                self.prefix + topics.COMMANDS, payload, qos=1, timeout=PUBLISH_TIMEOUT_S
            )
        except aiomqtt.MqttError as err:
            raise BrokerLostError(f"the broker did not take the request: {err}") from err

    # --- one method per command ----------------------------------------------------------------

    async def unlock(
        self,
        bike: str,
        *,
        user_id: str | None = None,
        credentials: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        return await self._command(
            "unlock", bike, user_id=user_id, credentials=credentials, **options
        )

    async def lock(
        self,
        bike: str,
        *,
        user_id: str | None = None,
        end_rental: bool | None = None,
        credentials: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        return await self._command(
            "lock", bike, user_id=user_id, end_rental=end_rental, credentials=credentials, **options
        )

    async def book(self, bike: str, *, user_id: str, **options: Any) -> dict[str, Any]:
        return await self._command("book", bike, user_id=user_id, **options)

    async def cancel_booking(self, bike: str, *, user_id: str, **options: Any) -> dict[str, Any]:
        return await self._command("cancel-booking", bike, user_id=user_id, **options)

    async def sync_device(
        self, bike: str, *, power_cycle: bool | None = None, **options: Any
    ) -> dict[str, Any]:
        return await self._command("sync-device", bike, power_cycle=power_cycle, **options)

    async def provision(
        self, bike: str, credentials: Mapping[str, Any], **options: Any
    ) -> dict[str, Any]:
        """Stores the lock's credentials at the station (``{}`` removes them)."""
        return await self._command("provision", bike, credentials=dict(credentials), **options)

    async def _command(self, command: str, bike: str, **fields: Any) -> dict[str, Any]:
        on_document = fields.pop("on_document", None)
        wait_s = fields.pop("wait_s", None)
        follow_s = fields.pop("follow_s", None)
        body = request(command, bike, **fields)
        return await self.send(body, on_document=on_document, wait_s=wait_s, follow_s=follow_s)


def _lifetime(body: Mapping[str, Any]) -> float:
    """Seconds until the request's ``timeout_at`` (the station's default without one)."""
    timeout_at = body.get("timeout_at")
    if not isinstance(timeout_at, str):
        booking = body.get("command") == "book"
        return (DEFAULT_BOOKING_TIMEOUT if booking else DEFAULT_TIMEOUT).total_seconds()
    try:
        return max((parse_time(timeout_at) - datetime.now(UTC)).total_seconds(), 0.0)
    except ValueError:
        return 0.0  # the station refuses it at once


def _parse(message: aiomqtt.Message, prefix: str) -> Message:
    payload = message.payload
    document: Any = None
    if isinstance(payload, bytes | bytearray):
        with contextlib.suppress(UnicodeDecodeError, ValueError, RecursionError):
            document = json.loads(bytes(payload).decode("utf-8"))
    return Message(
        topic=str(message.topic).removeprefix(prefix),
        payload=document if isinstance(document, dict) else None,
        retained=bool(message.retain),
    )


__all__ = [
    "EVENT_IDS_KEPT",
    "RESEND_S",
    "WAIT_S",
    "Event",
    "EventStream",
    "Message",
    "MessageStream",
    "StationClient",
    "request",
    "state_of",
]
