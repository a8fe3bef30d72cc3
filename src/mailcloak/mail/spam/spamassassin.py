"""SpamAssassin through spamd's protocol (SPAMC/SPAMD 1.5): REPORT to scan, TELL to learn.

    REPORT SPAMC/1.5            SPAMD/1.1 0 EX_OK
    Content-length: 1234        Content-length: 878
                                Spam: True ; 15.3 / 5.0
    <message>
                                <report: a table of rule, points and description>

spamd sees only the message, so the hop that reached us is written in front of it as a Received
header (and the envelope sender as Return-Path), as an MTA would before handing a message to
spamc: SpamAssassin's relay, SPF and rDNS rules read them. SpamAssassin's points are our scale,
so our thresholds decide the action. Learning (TELL, `Set: local`) needs spamd's --allow-tell.

Anything that keeps spamd from giving a verdict (refused connection, timeout, an error code, an
unreadable reply) raises EngineUnavailable: the sender is told to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.spam.engine import (
    quarantine_pattern_enabled,
    quarantine_test_pattern,
    verified_hostname,
)
from mailcloak.mail.spam.verdict import (
    EngineUnavailable,
    Reason,
    ScanRequest,
    Thresholds,
    Verdict,
)

PROTOCOL = b"SPAMC/1.5"
MAX_REPLY = 4 * 1024 * 1024  # a report is a few kB
EX_OK = 0

_STATUS = re.compile(rb"^SPAMD/\d+\.\d+ +(\d+) *(.*)$")
_SPAM = re.compile(r"^\s*(True|False|Yes|No)\s*;\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)\s*$", re.I)
_RULE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Za-z0-9_]+)\s+(.*?)\s*$")
_CONTINUATION = re.compile(r"^\s{20,}(\S.*?)\s*$")
_TABLE_RULE = re.compile(r"^-{3,} -{3,} -{3,}")


@dataclass(frozen=True)
class SpamdReply:
    code: int
    message: str
    headers: dict[str, str]
    body: str


class SpamAssassinEngine:
    name = "spamassassin"

    def __init__(self, host: str, port: int = 783, *, timeout: float = 10.0,
                 hostname: str = "localhost", test_patterns: bool = False) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.hostname = hostname  # our mail name, for the Received header we add
        self.test_patterns = test_patterns  # the quarantine test pattern works

    @classmethod
    def from_settings(cls, config: mailcloak_settings.Config) -> SpamAssassinEngine:
        address = config.spamd_address
        return cls(address.host, address.port, timeout=float(config.spam_timeout),
                   hostname=config.hostname, test_patterns=quarantine_pattern_enabled(config))

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def scan(self, request: ScanRequest, thresholds: Thresholds) -> Verdict:
        if self.test_patterns and (forced := quarantine_test_pattern(request.raw, thresholds,
                                                                     engine=self.name)):
            return forced
        message = await self.trace_headers(request) + request.raw
        reply = await self._exchange(b"REPORT", [], message)
        score = _score(reply)
        return Verdict(score=score, action=thresholds.action_for(score),
                       reasons=parse_report(reply.body), engine=self.name)

    async def learn(self, raw: bytes, *, is_spam: bool) -> None:
        kind = "spam" if is_spam else "ham"
        # No DidSet header means SpamAssassin had already learned it so: nothing to do.
        await self._exchange(b"TELL", [("Message-class", kind), ("Set", "local")], raw)

    async def trace_headers(self, request: ScanRequest) -> bytes:
        """Return-Path and Received for the hop that brought the message to us."""
        lines = []
        if request.mail_from:
            lines.append(f"Return-Path: <{_one_line(request.mail_from)}>")
        if request.peer_ip:
            rdns = await verified_hostname(request.peer_ip)
            helo = _one_line(request.helo) or f"[{request.peer_ip}]"
            lines.append(f"Received: from {helo} ({rdns} [{request.peer_ip}])\r\n"
                         f"\tby {self.hostname} (Mailcloak) with ESMTP;\r\n"
                         f"\t{format_datetime(datetime.now(UTC))}")
        return "".join(line + "\r\n" for line in lines).encode()

    async def _exchange(self, command: bytes, headers: list[tuple[str, str]],
                        message: bytes) -> SpamdReply:
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self._send(command, headers, message)
        except TimeoutError:
            raise EngineUnavailable(f"spamd at {self.address} did not answer within "
                                    f"{self.timeout:g}s") from None
        except OSError as exc:
            raise EngineUnavailable(f"spamd at {self.address} is unreachable: {exc}") from None
        if reply.code != EX_OK:
            raise EngineUnavailable(f"spamd at {self.address} refused {command.decode()}: "
                                    f"{reply.code} {reply.message}")
        return reply

    async def _send(self, command: bytes, headers: list[tuple[str, str]],
                    message: bytes) -> SpamdReply:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            head = [command + b" " + PROTOCOL, b"Content-length: %d" % len(message)]
            head += [f"{name}: {value}".encode() for name, value in headers]
            writer.write(b"\r\n".join(head) + b"\r\n\r\n" + message)
            await writer.drain()
            writer.write_eof()
            return parse_reply(await _read_all(reader))
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    data = bytearray()
    while chunk := await reader.read(65536):
        data += chunk
        if len(data) > MAX_REPLY:
            raise OSError("reply too large")
    return bytes(data)


# --- parsing -------------------------------------------------------------------------------------


def parse_reply(data: bytes) -> SpamdReply:
    """Split spamd's reply into status, headers and body; OSError if it is not spamd's."""
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    status = _STATUS.match(status_line)
    if not status:
        raise OSError("the reply is not spamd's protocol")
    headers = {}
    for line in header_lines:
        name, sep, value = line.decode("utf-8", "replace").partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return SpamdReply(int(status[1]), status[2].decode("utf-8", "replace").strip(), headers,
                      body.decode("utf-8", "replace"))


def _score(reply: SpamdReply) -> float:
    match = _SPAM.match(reply.headers.get("spam", ""))
    if not match:
        raise EngineUnavailable("spamd's reply has no Spam: header with a score")
    return round(float(match[2]), 2)


def parse_report(report: str) -> tuple[Reason, ...]:
    """The rules that scored, from the report's table (`pts rule name description`).

    Only the table is read: the rest of the report quotes the message."""
    rows: list[list[str]] = []
    in_table = False
    for line in report.splitlines():
        if _TABLE_RULE.match(line):
            in_table = True
        elif in_table and (rule := _RULE.match(line)):
            rows.append([rule[1], rule[2], rule[3]])
        elif in_table and rows and (more := _CONTINUATION.match(line)):
            rows[-1][2] += " " + more[1]
        elif in_table and line.strip():
            in_table = False
    return tuple(Reason(code=name, text=_readable(name, text), score=float(points))
                 for points, name, text in rows if float(points) != 0)


def _readable(name: str, description: str) -> str:
    if not description or description.startswith("No description available"):
        return name.replace("_", " ").capitalize()
    return description


def _one_line(value: str) -> str:
    return " ".join(value.split())
