"""The backend's side of the MQTT contract, for ``lockgate ctl``: one command sent and followed.

``lockgate ctl`` stands where a backend stands (docs/mqtt-contract.md): it connects to the broker
with the station's own TLS settings (:class:`~lockgate.mqtt.settings.LinkSettings`), subscribes to
the command's documents before it publishes, publishes the request with QoS 1 and re-sends the same
bytes until the receipt (any document on ``commands/{id}``, or an error document on ``errors`` for
its id) — a PUBACK is not the receipt — and then follows ``commands/{id}`` to SUCCESS or ERROR.
``ctl watch`` reads a station's topics through :func:`station_messages`. Nothing here parses
arguments or prints: :mod:`lockgate.cli.ctl` does, and this module never sees a key in clear
except inside the payload it publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt

from lockgate.contract import topics
from lockgate.errors import LockgateError
from lockgate.model import CommandState
from lockgate.mqtt.settings import LinkSettings

RESEND_S = 3.0
"""How long to wait for the receipt before the same request goes out again."""
PUBLISH_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 10.0
WATCH_TOPICS = (
    topics.STATUS,
    f"{topics.LOCKS}/+",
    topics.EVENTS,
    f"{topics.COMMANDS}/+",
    topics.ERRORS,
)
"""What ``ctl watch`` follows. Never ``commands`` itself: a plain request there holds lock keys."""


class NoAnswerError(LockgateError):
    """The broker could not be reached, or the station did not answer in time."""


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a station: the topic after ``{root}/{station}/`` and the parsed payload
    (``None`` when it is not a JSON object; the station never sends one, someone else might)."""

    topic: str
    payload: dict[str, Any] | None
    retained: bool


def state_of(document: dict[str, Any]) -> str | None:
    """A command document's ``state.value``; None for anything else."""
    state = document.get("state")
    value = state.get("value") if isinstance(state, dict) else None
    return value if isinstance(value, str) else None


def settings_for(
    url: str,
    station: str,
    *,
    username: str | None = None,
    password: str | None = None,
    ca_file: Path | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    topic_root: str = "lockgate/v1",
) -> LinkSettings:
    """The broker settings of a ``ctl`` run; raises SettingsError for a URL or key pair that
    cannot work. The client id is new each run, so two engineers never push each other off."""
    return LinkSettings(
        url=url,
        station=station,
        client_id=f"lockgate-ctl-{uuid.uuid4().hex[:12]}",
        username=username,
        password=password,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        topic_root=topic_root,
    )


@contextlib.asynccontextmanager
async def connected(
    settings: LinkSettings, context: ssl.SSLContext | None
) -> AsyncIterator[aiomqtt.Client]:
    """A clean-session MQTT 3.1.1 connection (every broker speaks it, the demo's amqtt only it).
    A broker that cannot be reached is :class:`NoAnswerError`."""
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=settings.client_id,
        username=settings.username,
        password=settings.password,
        protocol=aiomqtt.ProtocolVersion.V311,
        clean_session=True,
        timeout=CONNECT_TIMEOUT_S,
        tls_context=context,
    )
    try:
        await client.__aenter__()
    except aiomqtt.MqttError as err:
        raise NoAnswerError(
            f"cannot reach the broker at {settings.host}:{settings.port}: {err}"
        ) from err
    try:
        yield client
    finally:
        with contextlib.suppress(aiomqtt.MqttError):
            await client.__aexit__(None, None, None)


def parse(message: aiomqtt.Message, prefix: str) -> Message:
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


async def retained_status(
    client: aiomqtt.Client, settings: LinkSettings, wait_s: float
) -> dict[str, Any]:
    """The station's retained ``status`` document (the broker sends it on subscribing). Raises
    :class:`NoAnswerError` when none comes within ``wait_s``: no such station on this broker."""
    topic = settings.prefix + topics.STATUS
    await client.subscribe(topic, qos=1)
    try:
        async with asyncio.timeout(wait_s):
            async for raw in client.messages:
                message = parse(raw, settings.prefix)
                if message.topic == topics.STATUS and message.payload is not None:
                    return message.payload
    except TimeoutError:
        pass
    finally:
        await client.unsubscribe(topic)
    raise NoAnswerError(f"no status document of station {settings.station} within {wait_s:g} s")


async def send_and_follow(
    client: aiomqtt.Client,
    settings: LinkSettings,
    *,
    command_id: str,
    payload: bytes,
    wait_s: float,
    follow_s: float,
    on_document: Callable[[dict[str, Any]], None],
    resend_s: float = RESEND_S,
) -> dict[str, Any]:
    """Publish ``payload`` until its receipt, then follow its documents to the end.

    Returns the final command document, or the error document on ``errors`` that names this id
    (a conflict, a refused signature). ``on_document`` sees every command document as it comes.
    Raises :class:`NoAnswerError` when no receipt comes within ``wait_s``, or no final document
    within ``follow_s`` of the receipt; ``aiomqtt.MqttError`` when the broker drops the connection.
    """
    documents = settings.prefix + topics.command(command_id)
    errors = settings.prefix + topics.ERRORS
    await client.subscribe([(documents, 1), (errors, 1)])
    loop = asyncio.get_running_loop()
    answered = asyncio.Event()

    async def resend() -> None:
        while not answered.is_set():
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                await client.publish(settings.prefix + topics.COMMANDS, payload, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(resend_s):
                    await answered.wait()

    final: dict[str, Any] | None = None
    try:
        async with asyncio.timeout(wait_s) as deadline:
            try:
                async with asyncio.TaskGroup() as tasks:
                    sender = tasks.create_task(resend(), name="ctl-resend")
                    async for raw in client.messages:
                        message = parse(raw, settings.prefix)
                        document = message.payload
                        if document is None:
                            continue
                        if message.topic == topics.ERRORS:
                            if document.get("correlation_id") == command_id:
                                final = document
                                break
                            continue
                        if message.topic != topics.command(command_id):
                            continue  # a status that came before the subscription changed
                        if not answered.is_set():
                            answered.set()
                            deadline.reschedule(loop.time() + follow_s)
                        on_document(document)
                        if state_of(document) in (CommandState.SUCCESS, CommandState.ERROR):
                            final = document
                            break
                    sender.cancel()
            except ExceptionGroup as group:
                # The TaskGroup wraps what failed: the reading (a dropped connection) or the
                # resend (a publish the broker did not acknowledge in time).
                if (broken := group.subgroup(aiomqtt.MqttError)) is not None:
                    raise aiomqtt.MqttError(str(broken.exceptions[0])) from None
                if group.subgroup(TimeoutError) is not None:
                    raise aiomqtt.MqttError("the broker did not acknowledge the request") from None
                raise
    except TimeoutError:
        if answered.is_set():
            raise NoAnswerError(
                f"command {command_id} did not end within {follow_s:g} s of its receipt"
            ) from None
        raise NoAnswerError(
            f"station {settings.station} did not answer within {wait_s:g} s"
            f" (no receipt of command {command_id})"
        ) from None
    if final is None:
        raise aiomqtt.MqttError("the broker closed the connection")
    return final


async def station_messages(
    client: aiomqtt.Client, settings: LinkSettings
) -> AsyncIterator[Message]:
    """Every message of the station on :data:`WATCH_TOPICS`, as it comes (retained ones first)."""
    await client.subscribe([(settings.prefix + topic, 1) for topic in WATCH_TOPICS])
    async for raw in client.messages:
        yield parse(raw, settings.prefix)
