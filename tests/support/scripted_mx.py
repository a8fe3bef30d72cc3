"""A misbehaving remote MX for fault tests: a raw asyncio SMTP server on a loopback address.

    with ScriptedMx("127.0.0.3") as mx:
        mx.end_of_data = "451 4.3.0 try later"   # every message is deferred after its data
        ...deliver...
        mx.end_of_data = OK                      # and now accepted
        assert mx.delivered == [...]

Unlike tests.support.sink (a well-behaved aiosmtpd), each step's answer is scripted and may be
something no healthy server does: a reply line, CLOSE (drop the connection at that point),
SILENT (say nothing more and keep the connection open), or, for STARTTLS, GARBAGE (agree,
then send bytes that are no TLS handshake). Tests may change the script at any time; a new
connection reads it as it is then.

`delivered` holds what the server answered 2xx to at the end of data, with the recipients it
had accepted: the messages a real MX would now be responsible for.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

OK = "250 2.0.0 Ok"
CLOSE = "<close>"
SILENT = "<silent>"
GARBAGE = "<garbage>"
TLS_GARBAGE = b"\x15\x03\x03\x00\x02\x02\x28this is not a TLS handshake\r\n" * 4


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    connection: int


@dataclass
class _Transaction:
    mail_from: str = ""
    rcpt_tos: list[str] = field(default_factory=list)


class ScriptedMx:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 hostname: str = "mx.scripted.test") -> None:
        self.host = host
        self.port = port
        self.hostname = hostname
        # The script: what each step answers.
        self.greeting = f"220 {hostname} ESMTP"
        self.starttls: str | None = None  # None: STARTTLS not offered
        self.mail = "250 2.1.0 Ok"
        self.rcpt: Callable[[str], str] = lambda _address: "250 2.1.5 Ok"
        self.data = "354 End data with <CR><LF>.<CR><LF>"
        self.during_data = ""  # CLOSE or SILENT: act once the first data line arrives
        self.end_of_data = OK
        # What happened.
        self.connections = 0
        self.delivered: list[Received] = []
        self.commands: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._sessions: set[asyncio.Task[None]] = set()

    # --- control ------------------------------------------------------------------------------

    def start(self) -> ScriptedMx:
        loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(
            asyncio.start_server(self._session, self.host, self.port))
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, daemon=True,
                                        name=f"test-scripted-mx-{self.host}")
        self._thread.start()
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def shutdown() -> None:
            server.close()
            for task in list(self._sessions):
                task.cancel()
            await asyncio.gather(*self._sessions, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=5)
        loop.close()
        self._loop = None

    def __enter__(self) -> ScriptedMx:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def accept_everything(self) -> None:
        """Back to a healthy server's script."""
        self.greeting = f"220 {self.hostname} ESMTP"
        self.starttls = None
        self.mail = "250 2.1.0 Ok"
        self.rcpt = lambda _address: "250 2.1.5 Ok"
        self.data = "354 End data with <CR><LF>.<CR><LF>"
        self.during_data = ""
        self.end_of_data = OK

    # --- the server side ----------------------------------------------------------------------

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._sessions.add(task)
        self.connections += 1
        number = self.connections
        try:
            await self._converse(reader, writer, number)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._sessions.discard(task)
            writer.transport.abort()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        number: int) -> None:
        if not await _answer(reader, writer, self.greeting) or self.greeting[:1] != "2":
            return
        transaction = _Transaction()
        while line := (await reader.readline()).decode("utf-8", "replace").rstrip("\r\n"):
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            self.commands.append(verb)
            if verb in ("EHLO", "HELO"):
                offers = ["8BITMIME", "SMTPUTF8"] + (["STARTTLS"] if self.starttls else [])
                reply = "\r\n".join([f"250-{self.hostname}"]
                                    + [f"250-{name}" for name in offers[:-1]]
                                    + [f"250 {offers[-1]}"])
            elif verb == "STARTTLS" and self.starttls:
                reply = self.starttls
            elif verb == "MAIL":
                transaction = _Transaction(mail_from=_path(argument))
                reply = self.mail
            elif verb == "RCPT":
                address = _path(argument)
                reply = self.rcpt(address)
                if reply[:1] == "2":
                    transaction.rcpt_tos.append(address)
            elif verb == "DATA":
                if not await self._data(reader, writer, transaction, number):
                    return
                transaction = _Transaction()
                continue
            elif verb == "QUIT":
                await _answer(reader, writer, "221 2.0.0 Bye")
                return
            else:  # RSET, NOOP and anything else
                transaction = _Transaction() if verb == "RSET" else transaction
                reply = "250 2.0.0 Ok"
            if not await _answer(reader, writer, reply):
                return

    async def _data(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    transaction: _Transaction, number: int) -> bool:
        """DATA up to the final reply; False when the script ends the connection."""
        if not await _answer(reader, writer, self.data) or self.data[:1] != "3":
            return self.data[:1] in ("4", "5")
        lines: list[bytes] = []
        while (line := await reader.readline()) != b".\r\n":
            if not line:
                return False
            if self.during_data and not lines:
                return await _answer(reader, writer, self.during_data)
            lines.append(line[1:] if line.startswith(b".") else line)
        reply = self.end_of_data
        if reply[:1] == "2":
            self.delivered.append(Received(transaction.mail_from, list(transaction.rcpt_tos),
                                           b"".join(lines), number))
        return await _answer(reader, writer, reply)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: str) -> bool:
    """Send `reply` (or act it out); False when the connection is over."""
    if reply == CLOSE:
        return False
    if reply == SILENT:
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the client gives up and closes
        return False
    if reply == GARBAGE:
        writer.write(b"220 2.0.0 Ready to start TLS\r\n")
        writer.write(TLS_GARBAGE)
        await writer.drain()
        await asyncio.sleep(0.2)  # let the client read it before the connection goes
        return False
    writer.write(reply.encode() + b"\r\n")
    await writer.drain()
    return True


def _path(argument: str) -> str:
    """The address of `FROM:<a@b> SIZE=1` or `TO:<a@b>`."""
    _, _, rest = argument.partition(":")
    return rest.strip().split(" ", 1)[0].strip("<>")
