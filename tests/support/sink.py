"""A scriptable SMTP sink for tests: a real aiosmtpd server on a loopback address.

    with SmtpSink("127.0.0.3", tls=tls_server_context()) as sink:
        ...deliver to sink.host:sink.port...
        assert sink.messages[0].tls

It runs its own event loop in a thread, so sync and async tests use it alike. Everything it
saw is recorded (envelopes, raw bytes, connections); what it answers is scripted through
attributes that tests may change at any time:

- `tempfail_first`: answer 451 to that many RCPT commands (greylisting), then accept;
- `reject`: recipients answered 550 5.1.1;
- `drop_in_data`: for that many messages, close the connection after the data arrives and
  before the reply (the client cannot know whether it was delivered);
- `delay`: seconds to wait before answering DATA; `hold()` / `release()`: keep every DATA
  reply waiting until released (to observe concurrency);
- `tls`: offer STARTTLS with this server context (see `tls_server_context`);
- `auth`: (user, password) to offer and require AUTH after STARTTLS.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass
class ReceivedMessage:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    tls: bool
    connection: int  # 1 for the sink's first connection, 2 for the next...
    login: str | None = None


def tls_server_context(*hostnames: str, ca: trustme.CA | None = None) -> ssl.SSLContext:
    """A server context with a certificate from a test CA (`ca`, or a fresh one)."""
    authority = ca or trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(*(hostnames or ("sink.test",))).configure_cert(context)
    return context


class _SinkSMTP(SMTP):
    """aiosmtpd's server, counting connections for the sink."""

    def __init__(self, sink: SmtpSink, **kwargs: Any) -> None:
        super().__init__(sink, **kwargs)
        self.sink = sink
        self.number = 0  # the sink's count of connections when this one arrived
        self.login: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # called again after STARTTLS
        if self.number == 0:
            self.number = self.sink._connected(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.sink._disconnected(self)


@dataclass
class _Script:
    tempfail_first: int = 0
    reject: set[str] = field(default_factory=set)
    drop_in_data: int = 0
    delay: float = 0.0


class SmtpSink:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 tls: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None,
                 tempfail_first: int = 0, reject: Iterable[str] = (), drop_in_data: int = 0,
                 delay: float = 0.0, hostname: str = "sink.test") -> None:
        self.host = host
        self.port = port
        self.hostname = hostname
        self.tls = tls
        self.auth = auth
        self.tempfail_first = tempfail_first
        self.reject = {address.lower() for address in reject}
        self.drop_in_data = drop_in_data
        self.delay = delay
        self.messages: list[ReceivedMessage] = []
        self.rcpt_replies: list[tuple[str, int]] = []  # (recipient, code) for every RCPT
        self.connections = 0
        self.active = 0
        self.max_active = 0
        self.in_data = 0
        self.open_sessions: set[_SinkSMTP] = set()
        self._released = threading.Event()
        self._released.set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    # --- control ------------------------------------------------------------------------------

    def start(self) -> SmtpSink:
        loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(
            loop.create_server(self._protocol, self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True,
                                        name=f"test-smtp-sink-{self.host}")
        self._thread.start()
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return
        self.release()

        async def shutdown() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hold(self) -> None:
        """Keep every DATA reply waiting until release()."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def drop_connections(self) -> None:
        """Close every open session from the server's side, as a restarting MTA would."""
        assert self._loop is not None
        with self._lock:
            transports = [server.transport for server in self.open_sessions]
        for transport in transports:
            if transport is not None:
                self._loop.call_soon_threadsafe(transport.close)

    def wait_for(self, condition: Callable[[SmtpSink], bool], timeout: float = 5.0) -> bool:
        """Poll until `condition(sink)` holds; False if it did not within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self):
                return True
            time.sleep(0.01)
        return condition(self)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    # --- the server side ----------------------------------------------------------------------

    def _protocol(self) -> SMTP:
        kwargs: dict[str, Any] = {}
        if self.auth is not None:
            kwargs.update(authenticator=self._authenticate, auth_require_tls=True)
        return _SinkSMTP(self, hostname=self.hostname, tls_context=self.tls,
                         enable_SMTPUTF8=True, decode_data=False, timeout=30, **kwargs)

    def _connected(self, server: _SinkSMTP) -> int:
        with self._lock:
            self.open_sessions.add(server)
            self.connections += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            return self.connections

    def _disconnected(self, server: _SinkSMTP) -> None:
        with self._lock:
            self.open_sessions.discard(server)
            self.active -= 1

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        assert self.auth is not None
        ok = (isinstance(auth_data, LoginPassword)
              and (auth_data.login.decode(), auth_data.password.decode()) == self.auth)
        if ok and isinstance(server, _SinkSMTP):
            server.login = auth_data.login.decode()
        return AuthResult(success=ok)

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if self.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if self.tempfail_first > 0:
            self.tempfail_first -= 1
            self.rcpt_replies.append((address, 451))
            return "451 4.7.1 Greylisted, please try again later"
        if address.lower() in self.reject:
            self.rcpt_replies.append((address, 550))
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        self.rcpt_replies.append((address, 250))
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.in_data += 1
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            while not self._released.is_set():
                await asyncio.sleep(0.01)
        finally:
            self.in_data -= 1
        if self.drop_in_data > 0:
            self.drop_in_data -= 1
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()
            return "421 4.4.2 Connection dropped"
        assert isinstance(server, _SinkSMTP)
        content = envelope.original_content or b""
        self.messages.append(ReceivedMessage(
            mail_from=envelope.mail_from or "", rcpt_tos=list(envelope.rcpt_tos),
            content=content, mail_options=list(envelope.mail_options),
            tls=session.ssl is not None, connection=server.number, login=server.login))
        return "250 2.0.0 Ok: queued"
