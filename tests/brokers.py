"""A real mosquitto for tests: on 127.0.0.1, a free port, its config written to a temporary folder.

As fixtures (import them into a test module or a conftest): ``mosquitto`` (plain) and
``mosquitto_tls`` (TLS, client certificates from ``mosquitto_tls.tls.authority``).

``running_mosquitto(folder)`` starts a plain broker; with ``tls=make_tls(folder)`` it listens with
TLS only and demands a client certificate signed by the test CA; with ``users={"FR101": "secret"}``
it demands a password. ``broker.stop()`` and ``broker.start()`` stop and start it again on the same
port (an outage); leaving the block stops it. The test CA, the broker's certificate and client
certificates are made here with ``cryptography``: nothing outside the test's folder is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import os
import pwd
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

MOSQUITTO = "/usr/sbin/mosquitto"
HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


# --- certificates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class Authority:
    """A test CA that can issue server and client certificates into ``folder``."""

    folder: Path
    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def ca_file(self) -> Path:
        return self.folder / f"{self.name}.pem"

    @classmethod
    def create(cls, folder: Path, name: str = "test-ca") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        authority = cls(folder, name, key, certificate)
        folder.mkdir(parents=True, exist_ok=True)
        authority.ca_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        return authority

    def issue(self, common_name: str, *, server: bool = False) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
                ),
                critical=False,
            )
        certificate = builder.sign(self.key, hashes.SHA256())
        issued = Issued(
            self.folder / f"{common_name}.{self.name}.crt",
            self.folder / f"{common_name}.{self.name}.key",
        )
        issued.cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        issued.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        issued.key_file.chmod(0o600)
        return issued


@dataclass(frozen=True)
class Tls:
    """The broker's side of TLS: the CA it trusts for clients and its own certificate."""

    authority: Authority
    server: Issued
    require_certificate: bool = True


def make_tls(folder: Path, *, require_certificate: bool = True) -> Tls:
    authority = Authority.create(folder / "pki")
    return Tls(authority, authority.issue("localhost", server=True), require_certificate)


# --- the broker -----------------------------------------------------------------------------------


@dataclass
class Mosquitto:
    folder: Path
    port: int
    tls: Tls | None = None
    users: dict[str, str] = field(default_factory=dict)
    persistence: bool = False
    max_inflight: int = 0
    """mosquitto's ``max_inflight_messages`` (0: no limit; its own default is 20, what a station's
    broker keeps: docs/station.md)."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{HOST}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.folder / "mosquitto.log"

    def log(self) -> str:
        return self.log_file.read_text(encoding="utf-8", errors="replace")

    def _write_config(self) -> Path:
        lines = [
            f"listener {self.port} {HOST}",
            # Started as root, mosquitto would become user mosquitto, who cannot read the test's
            # private folder; as anyone else, this line changes nothing.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.folder}/",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            # Small messages out at once, as a station's broker should send them (Nagle's
            # algorithm behind a delayed ACK holds one back up to 40 ms; docs/station.md).
            "set_tcp_nodelay true",
            # A slow test subscriber must not lose QoS 1 messages: no queue limit.
            "max_queued_messages 0",
            f"max_inflight_messages {self.max_inflight}",
        ]
        if self.users:
            password_file = self.folder / "passwords"
            password_file.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    ["/usr/bin/mosquitto_passwd", "-b", str(password_file), user, password],
                    check=True,
                    capture_output=True,
                )
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            lines += [
                f"cafile {self.tls.authority.ca_file}",
                f"certfile {self.tls.server.cert_file}",
                f"keyfile {self.tls.server.key_file}",
                f"require_certificate {'true' if self.tls.require_certificate else 'false'}",
            ]
        config = self.folder / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return config

    async def start(self) -> None:
        assert self.process is None, "already running"
        config = self._write_config()
        self.process = subprocess.Popen(  # noqa: ASYNC220 - started once, waited below
            [MOSQUITTO, "-c", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        async with asyncio.timeout(START_TIMEOUT_S):
            while not await _accepts(self.port):
                if self.process.poll() is not None:
                    error = self.process.stderr.read() if self.process.stderr else b""
                    raise RuntimeError(f"mosquitto did not start: {error.decode()}")
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(START_TIMEOUT_S):
                while process.poll() is None:  # noqa: ASYNC110 - a process has no event to await
                    await asyncio.sleep(0.02)
        except TimeoutError:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


async def _accepts(port: int) -> bool:
    try:
        async with asyncio.timeout(1):
            _, writer = await asyncio.open_connection(HOST, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


@contextlib.asynccontextmanager
async def running_mosquitto(
    folder: Path,
    *,
    tls: Tls | None = None,
    users: dict[str, str] | None = None,
    persistence: bool = False,
    max_inflight: int = 0,
) -> AsyncIterator[Mosquitto]:
    """A mosquitto on a free loopback port, stopped when the block ends. With ``persistence``,
    sessions (a backend's subscription and its queued messages) survive ``stop()``/``start()``."""
    folder.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a test folder, once
    broker = Mosquitto(folder, free_port(), tls, dict(users or {}), persistence, max_inflight)
    await broker.start()
    try:
        yield broker
    finally:
        await broker.stop()


@pytest.fixture
async def mosquitto(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    async with running_mosquitto(tmp_path / "mosquitto") as broker:
        yield broker


@pytest.fixture
async def mosquitto_tls(tmp_path: Path) -> AsyncIterator[Mosquitto]:
    async with running_mosquitto(tmp_path / "mosquitto", tls=make_tls(tmp_path)) as broker:
        yield broker


# --- a cable to cut ------------------------------------------------------------------------------


class Cable:
    """A TCP relay between a client and the broker on its own loopback port. :meth:`cut` drops
    every connection through it at once without a word (no DISCONNECT reaches the broker, so the
    broker publishes the client's will); new connections go through again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._pumps: set[asyncio.Task[None]] = set()
        self.unplugged = False

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"

    async def __aenter__(self) -> Cable:
        self._server = await asyncio.start_server(self._connection, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        self.cut()
        for pump in list(self._pumps):
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._server.wait_closed()

    def cut(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def unplug(self) -> None:
        """Cut, and refuse new connections until :meth:`plug`."""
        self.unplugged = True
        self.cut()

    def plug(self) -> None:
        self.unplugged = False

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.unplugged:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            pump = asyncio.create_task(_pump(source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        sink.transport.abort()


# --- amqtt: the embedded broker of the demo, MQTT 3.1.1 only ------------------------------------


@dataclass
class Amqtt:
    port: int
    tls: None = None

    @property
    def url(self) -> str:
        return f"mqtt://{HOST}:{self.port}"


@contextlib.asynccontextmanager
async def running_amqtt() -> AsyncIterator[Amqtt]:
    """amqtt in this process's event loop, on a free loopback port (it speaks 3.1.1 only)."""
    from amqtt.broker import Broker  # noqa: PLC0415 - the demo's extra, needed by these tests only

    port = free_port()
    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )
    await broker.start()
    try:
        yield Amqtt(port)
    finally:
        await broker.shutdown()
