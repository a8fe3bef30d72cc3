"""Rspamd: scans through the normal worker's HTTP protocol, learns through its controller.

A scan POSTs the message to `/checkv2` with the envelope in request headers (IP, Helo, Hostname,
From, Rcpt, and User for mail leaving through an alias, so Rspamd treats it as outbound). Rspamd's
score is on the same points scale as ours, so our thresholds decide the action, not Rspamd's;
only an action Rspamd forces before scoring (its test patterns, a pre-filter) is taken as it is.
Learning POSTs to the controller's `/learnspam` or `/learnham` with the Password header.

Anything that keeps Rspamd from giving a verdict (refused connection, timeout, an error status,
an unreadable reply) raises EngineUnavailable: the sender is told to retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.spam.engine import (
    quarantine_pattern_enabled,
    quarantine_test_pattern,
    verified_hostname,
)
from mailcloak.mail.spam.verdict import (
    Action,
    Direction,
    EngineUnavailable,
    Reason,
    ScanRequest,
    Thresholds,
    Verdict,
)

log = logging.getLogger(__name__)

MAX_REPLY = 4 * 1024 * 1024  # Rspamd's replies are a few kB; anything this big is not Rspamd
MAX_OPTIONS_SHOWN = 3

# Actions Rspamd can force before scoring (pre-results), in our terms. "soft reject" asks the
# sender to come back later, which is what EngineUnavailable does.
FORCED_ACTIONS = {
    "reject": Action.REJECT,
    "rewrite subject": Action.QUARANTINE,
    "add header": Action.QUARANTINE,
    "greylist": Action.DELIVER,
    "no action": Action.DELIVER,
}


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RspamdEngine:
    name = "rspamd"

    def __init__(self, url: str, controller_url: str, *, password: str = "",
                 timeout: float = 10.0, test_patterns: bool = False) -> None:
        self.url = url.rstrip("/")
        self.controller_url = controller_url.rstrip("/")
        self.password = password
        self.timeout = timeout
        self.test_patterns = test_patterns  # the quarantine test pattern works

    @classmethod
    def from_settings(cls, config: mailcloak_settings.Config) -> RspamdEngine:
        return cls(config.rspamd_url, config.rspamd_controller_url,
                   password=config.rspamd_password, timeout=float(config.spam_timeout),
                   test_patterns=quarantine_pattern_enabled(config))

    async def scan(self, request: ScanRequest, thresholds: Thresholds) -> Verdict:
        if self.test_patterns and (forced := quarantine_test_pattern(request.raw, thresholds,
                                                                     engine=self.name)):
            return forced
        headers = await scan_headers(request)
        reply = await self._post(self.url, "/checkv2", request.raw, headers)
        if reply.status != 200:
            raise EngineUnavailable(f"rspamd answered HTTP {reply.status}: {_error_text(reply)}")
        try:
            result = reply.json()
        except ValueError:
            raise EngineUnavailable("rspamd sent a reply that is not JSON") from None
        return verdict_from_result(result, thresholds)

    async def learn(self, raw: bytes, *, is_spam: bool) -> None:
        path = "/learnspam" if is_spam else "/learnham"
        headers = [("Password", self.password)] if self.password else []
        reply = await self._post(self.controller_url, path, raw, headers)
        if reply.status in (200, 208):  # 208: Rspamd already learned this message this way
            return
        if reply.status in (401, 403):
            raise EngineUnavailable("the rspamd controller refused the password "
                                    "(MAILCLOAK_RSPAMD_PASSWORD)")
        if reply.status >= 500:
            raise EngineUnavailable(f"rspamd could not learn: HTTP {reply.status}: "
                                    f"{_error_text(reply)}")
        # Rspamd declines messages it cannot learn from (too few words, say): nothing to retry.
        # Its explanation quotes the Message-ID, so only the status is logged.
        log.warning("rspamd declined to learn a message (HTTP %s)", reply.status)

    async def _post(self, base: str, path: str, body: bytes,
                    headers: list[tuple[str, str]]) -> HttpReply:
        try:
            async with asyncio.timeout(self.timeout):
                return await http_post(base + path, body, headers)
        except TimeoutError:
            raise EngineUnavailable(f"rspamd at {base} did not answer within "
                                    f"{self.timeout:g}s") from None
        except (OSError, h11.ProtocolError) as exc:
            raise EngineUnavailable(f"rspamd at {base} is unreachable: {exc}") from None


# --- request -------------------------------------------------------------------------------------


async def scan_headers(request: ScanRequest) -> list[tuple[str, str]]:
    """The envelope as Rspamd's request headers."""
    headers: list[tuple[str, str | None]] = []
    if request.peer_ip:
        headers += [("IP", request.peer_ip),
                    ("Hostname", await verified_hostname(request.peer_ip))]
    if request.helo:
        headers.append(("Helo", request.helo if request.helo.isascii() else None))
    if request.mail_from:
        headers.append(("From", ascii_address(request.mail_from)))
    headers += [("Rcpt", ascii_address(rcpt)) for rcpt in request.recipients]
    if request.direction is Direction.OUTBOUND and request.mail_from:
        headers.append(("User", request.mail_from))
    return [(name, _one_line(value)) for name, value in headers if value]


def ascii_address(address: str) -> str | None:
    """The address as Rspamd 3.4 accepts it: an international domain in its xn-- form; None
    for a non-ASCII local part, which Rspamd would score as broken headers (8 points)."""
    local, at, domain = address.rpartition("@")
    if not at or not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return None


def _one_line(value: str) -> str:
    return " ".join(value.split())


# --- reply ---------------------------------------------------------------------------------------


def verdict_from_result(result: Any, thresholds: Thresholds) -> Verdict:
    """Our verdict from Rspamd's /checkv2 JSON."""
    if not isinstance(result, dict) or not isinstance(result.get("score"), int | float):
        raise EngineUnavailable("rspamd sent a reply without a score")
    score = round(float(result["score"]), 2)
    action = _action(result, score, thresholds)
    symbols = result.get("symbols") or {}
    forced_by = _forced_by(result)
    reasons = tuple(reason_for(name, symbol, fallback=forced_by)
                    for name, symbol in symbols.items()
                    if isinstance(symbol, dict) and (symbol.get("score") or forced_by))
    return Verdict(score=score, action=action, reasons=reasons, engine=RspamdEngine.name)


def _forced(result: dict[str, Any]) -> bool:
    """Rspamd stopped before scoring because a pre-filter chose the action."""
    return bool(result.get("is_skipped"))


def _forced_by(result: dict[str, Any]) -> str:
    """What made Rspamd force its action, in its own words ("" when it scored normally)."""
    if not _forced(result):
        return ""
    messages = result.get("messages")
    message = messages.get("smtp_message") if isinstance(messages, dict) else None
    return str(message or "Rspamd decided before scoring")


def _action(result: dict[str, Any], score: float, thresholds: Thresholds) -> Action:
    rspamd_action = str(result.get("action", ""))
    if rspamd_action == "soft reject":
        raise EngineUnavailable("rspamd asked to try again later (soft reject)")
    if _forced(result):
        if rspamd_action not in FORCED_ACTIONS:
            raise EngineUnavailable(f"rspamd skipped the message (action {rspamd_action!r})")
        return FORCED_ACTIONS[rspamd_action]
    return thresholds.action_for(score)


def reason_for(name: str, symbol: dict[str, Any], *, fallback: str = "") -> Reason:
    """A symbol in words: its description, with the first few options (what it matched)."""
    text = str(symbol.get("description") or fallback or _humanize(name))
    options = [str(option) for option in symbol.get("options") or []][:MAX_OPTIONS_SHOWN]
    if options:
        text += f" ({', '.join(options)})"
    return Reason(code=name, text=text, score=float(symbol.get("score") or 0.0))


def _humanize(symbol: str) -> str:
    return symbol.replace("_", " ").capitalize()


def _error_text(reply: HttpReply) -> str:
    try:
        return str(reply.json().get("error", ""))[:200]
    except (ValueError, AttributeError):
        return reply.body[:200].decode("utf-8", "replace")


# --- HTTP ----------------------------------------------------------------------------------------


async def http_post(url: str, body: bytes, headers: list[tuple[str, str]]) -> HttpReply:
    """POST `body` to `url` on a fresh connection (loopback connections cost next to nothing);
    the caller bounds the time it may take."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OSError(f"not an http(s) URL: {url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    tls = ssl.create_default_context() if parts.scheme == "https" else None
    reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=tls)
    try:
        connection = h11.Connection(h11.CLIENT)
        fields = [("Host", parts.netloc), ("Connection", "close"),
                  ("Content-Length", str(len(body))), *headers]
        # UTF-8 values (SMTPUTF8 addresses) as Rspamd reads them; h11 would insist on ASCII.
        request = h11.Request(method="POST", target=(parts.path or "/") + _query(parts.query),
                              headers=[(n.encode(), v.encode()) for n, v in fields])
        for event in (request, h11.Data(data=body), h11.EndOfMessage()):
            writer.write(connection.send(event) or b"")
        await writer.drain()
        return await _read_reply(connection, reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _query(query: str) -> str:
    return f"?{query}" if query else ""


async def _read_reply(connection: h11.Connection, reader: asyncio.StreamReader) -> HttpReply:
    status, body = 0, bytearray()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_REPLY:
                raise OSError("reply too large")
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            if not status:
                raise OSError("connection closed before a reply")
            return HttpReply(status, bytes(body))
