"""Open-loop SMTP sending: message i is due i / rate seconds after the start, whatever the
server's pace, and each session keeps its own share of that schedule.

A session waits only for the replies SMTP makes it wait for (the 354 and the final reply of
each transaction); when the server is slower than the schedule the session falls behind, and
`Sending` records by how much at every send, so a rate the server cannot take shows as
lateness and messages never sent rather than as a lower rate quietly measured.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bench.load import make_message

TRANSACTION_TIMEOUT = 120.0  # seconds one SMTP transaction may take before the session gives up


@dataclass(frozen=True)
class Plan:
    rate: float  # messages per second offered
    duration: float  # seconds of sending
    sessions: int
    size: int
    aliases: list[str]

    @property
    def scheduled(self) -> int:
        return int(self.rate * self.duration)

    def due(self, index: int) -> float:
        """Seconds after the start at which message `index` is due."""
        return index / self.rate

    def session_share(self, session: int) -> range:
        return range(session, self.scheduled, self.sessions)

    def due_by(self, elapsed: float) -> int:
        """How many messages the schedule has made due `elapsed` seconds after the start."""
        return min(self.scheduled, max(0, int(elapsed * self.rate) + 1))


@dataclass
class Sending:
    """What the sessions did: 250 times by message, lateness against the schedule, refusals."""

    started: float
    accepted: dict[int, float] = field(default_factory=dict)
    lateness: list[float] = field(default_factory=list)  # seconds behind schedule at each send
    failures: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.lateness)


class ServerClosed(ConnectionError):
    """The server ended the session before the message was sent (421, or the connection
    closed): it has not got the message, so sending it again cannot duplicate it."""


class SmtpClientSession:
    """One SMTP session on asyncio streams; MAIL, RCPT and DATA go in one write (PIPELINING).
    A session the server ends between transactions (its per-connection command limit) is
    opened again for the next message, as an MTA would."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def send(self, sender: str, recipient: str, data: bytes) -> str:
        """The server's final reply to one transaction (the first refusal, if any)."""
        reused = self.streams is not None
        try:
            return await self._transaction(sender, recipient, data)
        except ServerClosed:
            await self.close(polite=False)
            if not reused:
                raise
        return await self._transaction(sender, recipient, data)

    async def _transaction(self, sender: str, recipient: str, data: bytes) -> str:
        reader, writer = self.streams or await self._connect()
        writer.write(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode())
        try:
            replies = [await self._reply(reader) for _ in range(3)]
        except ConnectionResetError as exc:
            raise ServerClosed(str(exc)) from None
        if replies[0].startswith("421"):
            raise ServerClosed(replies[0])
        if not replies[2].startswith("354"):
            writer.write(b"RSET\r\n")
            await self._reply(reader)
            return next(r for r in replies if not r.startswith(("250", "354")))
        writer.write(data + b".\r\n")
        return await self._reply(reader)

    async def close(self, *, polite: bool = True) -> None:
        if self.streams is None:
            return
        reader, writer = self.streams
        self.streams = None
        try:
            if polite:
                writer.write(b"QUIT\r\n")
                await self._reply(reader)
            writer.close()
        except OSError:
            pass

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        for command in (b"", b"EHLO sustained.bench\r\n"):  # the greeting, then EHLO
            writer.write(command)
            if not (reply := await self._reply(reader)).startswith(("220", "250")):
                writer.close()
                raise ServerClosed(reply)
        self.streams = (reader, writer)
        return self.streams

    @staticmethod
    async def _reply(reader: asyncio.StreamReader) -> str:
        lines = []
        while True:
            line = (await reader.readline()).decode(errors="replace")
            if not line:
                raise ConnectionResetError("the server closed the connection")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "".join(lines).strip()


async def paced_session(number: int, plan: Plan, smtp: SmtpClientSession,
                        sending: Sending) -> None:
    """Send this session's share of the schedule; nothing starts after the schedule ends."""
    end = sending.started + plan.duration
    for index in plan.session_share(number):
        due = sending.started + plan.due(index)
        if due > time.time():
            await asyncio.sleep(due - time.time())
        if time.time() >= end:
            break  # behind schedule: the rest is reported as never sent
        sending.lateness.append(time.time() - due)
        alias = plan.aliases[index % len(plan.aliases)]
        try:
            async with asyncio.timeout(TRANSACTION_TIMEOUT):
                reply = await smtp.send(f"sender{index % 50}@sender.bench", alias,
                                        make_message(index, plan.size, alias))
        except (OSError, TimeoutError) as exc:
            sending.failures.append(f"{index}: {type(exc).__name__}: {exc}")
            await smtp.close(polite=False)
            continue
        if reply.startswith("250"):
            sending.accepted[index] = time.time()
        else:
            sending.failures.append(f"{index}: {reply}")
    await smtp.close()
