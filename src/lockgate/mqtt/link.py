"""The MQTT link: the station as the backend sees it, kept up through broker restarts and outages.

It sits between the broker and two things below it: the store's :class:`~lockgate.store.Outbox`
(every event, command document and retained document, oldest first, removed only on the broker's
PUBACK) and the intake (the engine's ``submit``, which stores an answer to each request on
``commands``). One :class:`Link` owns one TaskGroup: a task that connects and reconnects forever,
and a task that keeps :class:`LinkState` fresh for the daemon's status. Each connection is one
aiomqtt client with a will (``status`` offline, retained) and its own TaskGroup: a drain
(:mod:`lockgate.mqtt.drain`: a window of QoS 1 publishes in flight, acknowledged to the outbox in
batches as PUBACKs come) and an intake loop (one request at a time; its PUBACK sent only once the
engine has stored the answer), which reads the socket only while few requests wait for it
(:mod:`lockgate.mqtt.backpressure`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal, Self

import aiomqtt
import structlog

from lockgate.clock import utc_now
from lockgate.contract import topics
from lockgate.mqtt.backpressure import ReadGate
from lockgate.mqtt.drain import drain, publish_properties
from lockgate.mqtt.internals import MqttConnectError, paho_of
from lockgate.mqtt.settings import LinkSettings, MqttProtocol, tls_context
from lockgate.store import Correlation, Outbox, OutboxMessage, StoreError

_log = structlog.get_logger(__name__)

_NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
"""Every message here is small and someone waits for it (a receipt, a SUCCESS, a PUBACK): without
this, Nagle's algorithm holds a publish back until the broker acknowledges the previous segment,
which a delayed ACK puts off for up to 40 ms."""

Intake = Callable[[bytes, Correlation], Awaitable[object]]
"""Takes one raw request from ``commands``; returns once its answer is stored. Raising
:class:`~lockgate.store.StoreError` means nothing was stored: the message is not acknowledged."""

StatusDocument = Callable[[Literal["online", "offline"]], bytes]
"""The retained ``status`` payload for the given state (the will carries the offline one)."""

_UNSUPPORTED_PROTOCOL = frozenset({1, 132})  # CONNACK codes of 3.1.1 and 5 for "not this version"
_REFUSED_LOGIN = frozenset({4, 134})
_NOT_AUTHORISED = frozenset({5, 135})
_STATE_INTERVAL_S = 1.0
_FLUSH_POLL_S = 0.05


@dataclass(frozen=True, slots=True)
class LinkState:
    """What the daemon shows of the link (status documents, systemd STATUS)."""

    connected: bool
    backlog: int
    """Messages waiting in the outbox (queued ones; retained documents not counted)."""
    oldest_unsent_age_s: float | None
    last_error: str | None
    """Why the last connection failed or ended; kept after the link is back up."""
    since: datetime | None
    """When the link last came up or went down."""
    protocol: MqttProtocol | None = None
    """The MQTT version of the current connection."""
    requests_waiting: int = 0
    """Received requests waiting for the intake (the socket is not read beyond a few)."""
    requests_waiting_peak: int = 0
    """The most that ever waited at once since the link started."""


def backoff_delay(attempt: int, *, initial_s: float, cap_s: float, jitter: float) -> float:
    """Capped exponential backoff with jitter: ``jitter`` in [0, 1) spreads the delay over its
    upper half, so that stations restarted together do not reconnect together."""
    ceiling = min(cap_s, initial_s * 2.0 ** min(attempt, 32))
    return ceiling * (0.5 + jitter / 2)


def describe(error: BaseException, socket_error: str | None = None) -> str:
    """One line saying why a connection failed, for the log and ``LinkState.last_error``.

    ``socket_error`` is what paho last reported about the socket: a broker that refuses a client
    certificate under TLS 1.3 does so after the handshake, and paho only logs it, so aiomqtt sees
    nothing but a CONNACK that never came."""
    if isinstance(error, BaseExceptionGroup):
        causes = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)]
        return describe(causes[0], socket_error) if causes else "cancelled"
    if isinstance(error, MqttConnectError):
        code = _code(error.rc)
        if code in _REFUSED_LOGIN:
            return "the broker refused the login: bad user name or password"
        if code in _NOT_AUTHORISED:
            return "the broker refused the login: not authorised"
        return f"the broker refused the connection: {error}"
    if isinstance(error, StoreError):
        return f"the store failed: {error}"
    text = str(error) or type(error).__name__
    if socket_error is not None and "timed out" in text:
        text = socket_error
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return f"the broker's certificate was not accepted: {text}"
    if "CERTIFICATE_REQUIRED" in text:
        return f"the broker demands a client certificate (cert_file, key_file): {text}"
    if any(alert in text for alert in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
        return f"the broker refused this station's client certificate: {text}"
    if "SSL" in text:
        return f"TLS failed: {text}"
    return f"{type(error).__name__}: {text}"


class _SocketErrors(logging.Handler):
    """Keeps the last error paho logged about its socket (see :func:`describe`)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.last = record.getMessage()


def _code(rc: object) -> int | None:
    value = getattr(rc, "value", rc)
    return value if isinstance(value, int) else None


class Link:
    """The station's MQTT link. ``async with link:`` starts connecting in the background and
    returns at once; :meth:`stop` ends it cleanly (leaving the block without it stops without
    flushing; leaving it with an exception cancels, and the broker publishes the will)."""

    def __init__(
        self,
        settings: LinkSettings,
        *,
        outbox: Outbox,
        intake: Intake,
        status: StatusDocument,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._intake = intake
        self._status = status
        self._rng = rng
        self._protocol = (
            MqttProtocol.V311 if settings.protocol is MqttProtocol.V311 else MqttProtocol.V5
        )
        self._settled = False  # a connection has worked: auto mode keeps its version
        self._group: asyncio.TaskGroup | None = None
        self._socket_errors = _SocketErrors()
        self._up = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._flush_timeout_s = 0.0
        self._gate: ReadGate | None = None
        self._peak_before = 0  # requests_waiting_peak of the connections before this one
        self._state = LinkState(
            connected=False, backlog=0, oldest_unsent_age_s=None, last_error=None, since=None
        )
        self._log = _log.bind(broker=f"{settings.host}:{settings.port}", station=settings.station)

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def requests_waiting(self) -> int:
        """Received requests waiting for the intake now (``state`` has it once a second)."""
        return 0 if self._gate is None else self._gate.waiting

    @property
    def requests_waiting_peak(self) -> int:
        """The most received requests that waited for the intake at once, since the start."""
        return max(self._peak_before, 0 if self._gate is None else self._gate.peak)

    async def __aenter__(self) -> Self:
        if not self._settings.tls:
            self._log.warning("plain mqtt:// without TLS: anyone on the path can read and send")
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._group.create_task(self._run(), name="lockgate.mqtt.connection")
        self._group.create_task(self._watch_backlog(), name="lockgate.mqtt.backlog")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._group is not None
        if not self._stopped.is_set():
            self._stopping.set()
            self._flush_timeout_s = 0.0
        await self._group.__aexit__(*exc_info)  # type: ignore[arg-type]

    async def wait_connected(self, timeout_s: float) -> None:
        """Until the link is up (status and retained documents published, commands subscribed)."""
        async with asyncio.timeout(timeout_s):
            await self._up.wait()

    async def stop(self, flush_timeout_s: float = 5.0) -> None:
        """Unsubscribes ``commands``, publishes what the outbox holds (until it is empty or
        ``flush_timeout_s`` passed), publishes ``status`` offline, disconnects."""
        self._flush_timeout_s = flush_timeout_s
        self._stopping.set()
        await self._stopped.wait()

    # --- connecting, forever -------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        try:
            while not self._stopping.is_set():
                try:
                    await self._connection()
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # noqa: BLE001 - any failure of one connection is logged and retried
                    if self._fallback(error):
                        continue
                    reason = describe(error, self._socket_errors.last)
                    if self._state.connected:
                        attempt = 0
                    self._set(connected=False, last_error=reason, since=utc_now())
                    self._up.clear()
                    delay = backoff_delay(
                        attempt,
                        initial_s=self._settings.backoff_initial_s,
                        cap_s=self._settings.backoff_max_s,
                        jitter=self._rng(),
                    )
                    attempt += 1
                    self._log.warning("mqtt link down", reason=reason, retry_in_s=round(delay, 2))
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._stopping.wait()
                else:
                    return
        finally:
            self._set(connected=False, since=utc_now())
            self._up.clear()
            self._stopped.set()

    def _fallback(self, error: Exception) -> bool:
        """``auto`` mode, until a connection has worked: a broker that answers MQTT 5 with
        "unsupported protocol version" is asked again in 3.1.1 at once (True). One that gives no
        CONNACK at all is asked in the other version next time (some 3.1.1 brokers, amqtt among
        them, misread an MQTT 5 CONNECT that carries a will and wait for bytes that never come)."""
        if self._settings.protocol is not MqttProtocol.AUTO or self._settled:
            return False
        if (
            self._protocol is MqttProtocol.V5
            and isinstance(error, MqttConnectError)
            and _code(error.rc) in _UNSUPPORTED_PROTOCOL
        ):
            self._log.info("the broker does not speak MQTT 5: using 3.1.1")
            self._protocol = MqttProtocol.V311
            return True
        if isinstance(error, aiomqtt.MqttError) and "timed out" in str(error):
            self._protocol = (
                MqttProtocol.V311 if self._protocol is MqttProtocol.V5 else MqttProtocol.V5
            )
            self._log.info(
                "no CONNACK: trying the other MQTT version", protocol=str(self._protocol)
            )
        return False

    def _client(self) -> aiomqtt.Client:
        settings = self._settings
        v5 = self._protocol is MqttProtocol.V5
        self._socket_errors = _SocketErrors()
        paho_log = logging.Logger("lockgate.mqtt.paho", logging.ERROR)  # one per connection
        paho_log.addHandler(self._socket_errors)
        client = aiomqtt.Client(
            settings.host,
            settings.port,
            username=settings.username,
            password=settings.password,
            identifier=settings.client_id or None,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            will=aiomqtt.Will(self._topic("status"), self._status("offline"), qos=1, retain=True),
            clean_session=None if v5 else True,
            keepalive=settings.keepalive_s,
            timeout=settings.connect_timeout_s,
            max_inflight_messages=settings.window,
            tls_context=tls_context(settings),
            logger=paho_log,
            socket_options=_NO_DELAY,
        )
        # aiomqtt has no switch for it, so its paho client is told directly: a request's PUBACK is
        # sent by _take (after the engine stored its answer), not by paho on arrival.
        paho_of(client).manual_ack_set(on=True)
        client.pending_calls_threshold = settings.window + 16  # a full window is not a warning
        return client

    async def _connection(self) -> None:
        """One connection, from CONNECT to DISCONNECT; returns only when asked to stop."""
        client = self._client()
        async with client:
            self._log.info("mqtt connected", protocol=str(self._protocol))
            gate = ReadGate(
                client,
                limit=self._settings.max_waiting_requests,
                max_pause_s=self._settings.keepalive_s / 2,
            )
            gate.install()
            self._gate = gate
            try:
                await self._connected(client, gate)
            finally:
                gate.close()
                self._peak_before = max(self._peak_before, gate.peak)
                self._gate = None

    async def _connected(self, client: aiomqtt.Client, gate: ReadGate) -> None:
        """The connection's life once the broker accepted it."""
        self._settled = True
        await self._outbox.set_retained("status", self._status("online"))
        await self._outbox.connected()
        retained = [m for m in await self._outbox.next_batch(0) if m.retain]
        statuses = [m for m in retained if m.topic == "status"]
        # Every lock document, then ``commands`` (its SUBACK awaited), and only then "online":
        # a backend that sends on seeing "online" finds the station subscribed.
        await self._publish_retained(client, [m for m in retained if m.topic != "status"])
        await client.subscribe(self._topic("commands"), qos=1)
        await self._publish_retained(client, statuses)
        # Its own status too: a will can come after this connection's "online" (the broker
        # ends a session it had not yet seen die when the station, back from a power cut,
        # takes it over), and the retained status must not stay "offline" while it is up.
        # After "online", so that the retained status it finds is this one. QoS 0: a broker may
        # send the retained status before its SUBACK and wait for that message's PUBACK (amqtt
        # does), while requests are acknowledged only once taken.
        await client.subscribe(self._topic("status"), qos=0)
        self._set(connected=True, since=utc_now(), protocol=self._protocol)
        self._up.set()
        async with asyncio.TaskGroup() as group:
            drain = group.create_task(self._drain(client), name="lockgate.mqtt.drain")
            intake = group.create_task(self._take(client, gate), name="lockgate.mqtt.intake")
            await self._stopping.wait()
            await client.unsubscribe(self._topic("commands"))
            await client.unsubscribe(self._topic("status"))
            intake.cancel()
            await self._flush()
            drain.cancel()
        await client.publish(self._topic("status"), self._status("offline"), qos=1, retain=True)
        self._log.info("mqtt link stopped: status offline")

    async def _flush(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._flush_timeout_s):
                while await self._outbox.next_batch(1):  # noqa: ASYNC110 - PUBACKs come in batches
                    await asyncio.sleep(_FLUSH_POLL_S)

    # --- publishing the outbox -----------------------------------------------------------------

    async def _publish_retained(
        self, client: aiomqtt.Client, retained: list[OutboxMessage]
    ) -> None:
        """Retained documents (lock documents, the status) at once, each awaited to its PUBACK."""
        await asyncio.gather(*(self._publish(client, m) for m in retained))
        await self._outbox.acknowledge(*retained)

    async def _drain(self, client: aiomqtt.Client) -> None:
        await drain(
            client,
            self._outbox,
            window=self._settings.window,
            batch=self._settings.batch,
            timeout_s=self._settings.publish_timeout_s,
            prefix=self._settings.prefix,
            v5=self._protocol is MqttProtocol.V5,
        )

    async def _publish(self, client: aiomqtt.Client, message: OutboxMessage) -> None:
        await client.publish(
            self._topic(message.topic),
            message.payload,
            qos=message.qos,
            retain=message.retain,
            properties=publish_properties(message, v5=self._protocol is MqttProtocol.V5),
            timeout=self._settings.publish_timeout_s,
        )

    # --- taking requests -----------------------------------------------------------------------

    async def _take(self, client: aiomqtt.Client, gate: ReadGate) -> None:
        """Each request goes to the intake; its PUBACK follows the stored answer."""
        try:
            await self._take_each(client, gate)
        finally:
            gate.release()  # no intake any more (a stop): read on, for the flush's PUBACKs

    async def _take_each(self, client: aiomqtt.Client, gate: ReadGate) -> None:
        status = self._topic("status")
        async for message in client.messages:
            gate.taken()
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if message.topic.matches(status):
                await self._contradicted(payload)
                paho_of(client).ack(message.mid, message.qos)
                continue
            properties = message.properties
            correlation = Correlation(
                getattr(properties, "CorrelationData", None),
                getattr(properties, "ResponseTopic", None),
            )
            try:
                await self._intake(payload, correlation)
            except StoreError:
                # Not acknowledged, and the connection is dropped: an unacknowledged message
                # holds one of the broker's in-flight slots for this client until it goes, and a
                # few would stall ``commands``. The backend re-sends until it sees the receipt.
                self._log.error("request not stored: not acknowledged, reconnecting")
                raise
            except Exception:  # noqa: BLE001 - a request must never take the link down
                # Sending it again would fail the same way: acknowledged, and said.
                self._log.exception("request failed inside the station")
            paho_of(client).ack(message.mid, message.qos)

    async def _contradicted(self, payload: bytes) -> None:
        """The broker says the station is offline while this link is up: a stale will (or
        someone else's publish). The online document goes out again through the outbox."""
        try:
            said = json.loads(payload)
        except ValueError:
            said = None
        if isinstance(said, dict) and said.get("state") == "online":
            return
        self._log.warning(
            "status said offline while connected: online again",
            boot_id=said.get("boot_id") if isinstance(said, dict) else None,
        )
        await self._outbox.set_retained("status", self._status("online"))

    # --- state ---------------------------------------------------------------------------------

    async def _watch_backlog(self) -> None:
        while not self._stopped.is_set():
            try:
                backlog = await self._outbox.depth()
                oldest = await self._outbox.oldest_created_at()
            except StoreError as error:
                self._log.warning("outbox depth unknown", reason=str(error))
            else:
                age = None if oldest is None else max(0.0, (utc_now() - oldest).total_seconds())
                self._set(
                    backlog=backlog,
                    oldest_unsent_age_s=age,
                    requests_waiting=self.requests_waiting,
                    requests_waiting_peak=self.requests_waiting_peak,
                )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_STATE_INTERVAL_S):
                    await self._stopped.wait()

    def _set(self, **changes: object) -> None:
        self._state = replace(self._state, **changes)  # type: ignore[arg-type]

    def _topic(self, topic: str) -> str:
        return topics.full(self._settings.prefix, topic)
