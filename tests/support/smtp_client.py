"""Testing Mailcloak's own SMTP server: run it in a thread, talk to it with raw sockets.

    with RunningServer(options) as server:
        with smtplib.SMTP(server.host, server.port) as client: ...
        with RawClient(server.host, server.port) as raw: raw.send(b"EHLO x\\r\\n") ...

The server thread uses the database, so tests need the `transactional_db` fixture (the
server's connections only see committed rows).
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import replace
from typing import Any

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.eventloop import loop_factory
from mailcloak.mail.smtpd import ServerOptions, SmtpServer


def test_options(**changes: Any) -> ServerOptions:
    """Server options from the test settings, with `changes` applied."""
    return replace(ServerOptions.from_config(mailcloak_settings.get()), **changes)


test_options.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest


class RunningServer:
    """A Mailcloak SMTP server on 127.0.0.1 (ephemeral port) in its own event loop thread."""

    host = "127.0.0.1"

    def __init__(self, options: ServerOptions | None = None) -> None:
        self.options = options or test_options()
        # The loop `mailcloak smtpd` would run on (MAILCLOAK_EVENT_LOOP).
        self.loop = loop_factory(mailcloak_settings.get().event_loop)()
        self.server = SmtpServer(self.options)
        self._thread = threading.Thread(target=self.loop.run_forever, name="smtpd-test",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self.server.port

    def __enter__(self) -> RunningServer:
        self._thread.start()
        self.call(self.server.start(self.host, 0))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.server.stop(grace=5))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()

    def call(self, coroutine: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)


class RawClient:
    """A plain socket for what smtplib will not send: pipelined commands, bare line ends."""

    def __init__(self, host: str, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self._buffer = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> str:
        """The next complete reply (all its lines), as text."""
        lines = []
        while True:
            line = self._line()
            lines.append(line)
            if line[3:4] != "-":
                return "\n".join(lines)

    def replies(self, count: int) -> list[str]:
        return [self.reply() for _ in range(count)]

    def command(self, line: str) -> str:
        self.send(line.encode() + b"\r\n")
        return self.reply()

    def closed(self) -> bool:
        """Whether the server has closed the connection (after any replies already read)."""
        try:
            return self.sock.recv(1) == b"" and not self._buffer
        except ConnectionResetError:
            return True

    def _line(self) -> str:
        while b"\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"closed by the server; unread: {self._buffer!r}")
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line.decode()
