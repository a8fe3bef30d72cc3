"""Direct delivery: route each recipient domain, talk SMTP to its hosts, report typed results.

Each recipient ends in one of: Delivered, TemporaryFailure (try again later), PermanentFailure
(bounce), or KeptInLocalOutbox (local mode only: the mail had nowhere to go, so the web app's
local outbox shows it instead). The blocking smtplib sessions run in a thread pool; asyncio
only schedules them, bounded by MAILCLOAK_DELIVERY_WORKERS overall and
MAILCLOAK_DELIVERY_CONCURRENCY_PER_DOMAIN per destination domain. Open sessions are kept a
few seconds and reused (RSET first) for the next message to the same host.
"""

from __future__ import annotations

import asyncio
import email.policy
import functools
import logging
import ssl
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from typing import Any, TypeVar

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.dns import Resolver, get_resolver
from mailcloak.mail.queue import recipient_domain
from mailcloak.mail.routing import Route, RouteError, Router
from mailcloak.mail.smtp_client import (
    ConnectionLost,
    HostFailure,
    Reply,
    SessionGone,
    SessionPolicy,
    SmtpConnection,
    Target,
    TlsFailure,
    open_connection,
    send,
    valid_address,
)
from mailcloak.outbox.models import LocalOutboxMessage

log = logging.getLogger("mailcloak.deliver")
T = TypeVar("T")

MAX_CONNECTION_ATTEMPTS = 10  # per delivery, over all hosts and addresses


@dataclass(frozen=True)
class Delivered:
    recipient: str
    remote: str  # host[address]:port that accepted it
    tls: bool
    reply: str


@dataclass(frozen=True)
class TemporaryFailure:
    recipient: str
    reason: str


@dataclass(frozen=True)
class PermanentFailure:
    recipient: str
    reason: str


@dataclass(frozen=True)
class KeptInLocalOutbox:
    recipient: str
    reason: str  # why it could not be sent


DeliveryResult = Delivered | TemporaryFailure | PermanentFailure | KeptInLocalOutbox


@dataclass(frozen=True)
class DeliveryOptions:
    mx_port: int = 25
    connect_timeout: float = 30.0
    command_timeout: float = 120.0
    data_timeout: float = 600.0
    idle_timeout: float = 5.0  # seconds an unused session stays open for the next message
    relay_tls_context: ssl.SSLContext | None = None  # None: the system's trusted CAs
    workers: int | None = None  # None: MAILCLOAK_DELIVERY_WORKERS
    per_domain: int | None = None  # None: MAILCLOAK_DELIVERY_CONCURRENCY_PER_DOMAIN


def to_crlf(content: bytes) -> bytes:
    """Every line ending as CRLF, as SMTP requires (bare CR or LF would invite smuggling)."""
    crlf = content.count(b"\r\n")
    if content.count(b"\n") == crlf and content.count(b"\r") == crlf:
        return content  # already so, as what we store almost always is
    return content.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


def opportunistic_tls_context() -> ssl.SSLContext:
    """For MX delivery: encrypt whenever offered; certificates of MX hosts are not checked
    (RFC 7435 opportunistic security: better than plain text, which is the alternative)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _DomainLimits:
    """At most `limit` concurrent deliveries per destination domain."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._users: Counter[str] = Counter()

    @asynccontextmanager
    async def hold(self, domain: str) -> AsyncIterator[None]:
        semaphore = self._semaphores.setdefault(domain, asyncio.Semaphore(self.limit))
        self._users[domain] += 1
        try:
            async with semaphore:
                yield
        finally:
            self._users[domain] -= 1
            if not self._users[domain]:
                del self._users[domain], self._semaphores[domain]


class ConnectionPool:
    """Idle sessions by (address, port, policy); used from the event loop thread only."""

    def __init__(self, idle_timeout: float, max_idle_per_key: int) -> None:
        self.idle_timeout = idle_timeout
        self.max_idle_per_key = max_idle_per_key
        self._idle: dict[tuple[object, ...], list[SmtpConnection]] = defaultdict(list)

    @staticmethod
    def key(target: Target, policy: SessionPolicy) -> tuple[object, ...]:
        return (target.address, target.port, policy)

    def take(self, key: tuple[object, ...]) -> SmtpConnection | None:
        idle = self._idle.get(key)
        connection = idle.pop() if idle else None
        if idle is not None and not idle:
            del self._idle[key]
        return connection

    def put(self, connection: SmtpConnection) -> SmtpConnection | None:
        """Keep `connection`; returns one to close if there are too many idle already."""
        idle = self._idle[self.key(connection.target, connection.policy)]
        idle.append(connection)
        return idle.pop(0) if len(idle) > self.max_idle_per_key else None

    def expired(self, now: float) -> list[SmtpConnection]:
        stale = []
        for key, idle in list(self._idle.items()):
            stale += [c for c in idle if now - c.last_used >= self.idle_timeout]
            idle[:] = [c for c in idle if now - c.last_used < self.idle_timeout]
            if not idle:
                del self._idle[key]
        return stale

    def drain(self) -> list[SmtpConnection]:
        everything = [connection for idle in self._idle.values() for connection in idle]
        self._idle.clear()
        return everything


class Deliverer:
    """Use as `async with Deliverer() as deliverer:` inside one event loop."""

    def __init__(self, options: DeliveryOptions | None = None, *,
                 config: mailcloak_settings.Config | None = None,
                 resolver: Resolver | None = None) -> None:
        self.options = options or DeliveryOptions()
        config = config or mailcloak_settings.get()
        self.local_fallback = not config.is_production
        self.router = Router(resolver or get_resolver(), config=config,
                             mx_port=self.options.mx_port)
        workers = max(1, self.options.workers or config.delivery_workers)
        self.per_domain = max(1, self.options.per_domain
                              or config.delivery_concurrency_per_domain)
        self._slots = asyncio.Semaphore(workers)
        self._domain_limits = _DomainLimits(self.per_domain)
        self._executor = ThreadPoolExecutor(max_workers=workers + 2,
                                            thread_name_prefix="mailcloak-smtp")
        self.pool = ConnectionPool(self.options.idle_timeout, self.per_domain)
        self._direct_policy = self._policy(config, opportunistic_tls_context())
        credentials = ((config.relayhost_username, config.relayhost_password)
                       if config.relayhost_username else None)
        self._relay_policy = self._policy(
            config, self.options.relay_tls_context or ssl.create_default_context(),
            credentials=credentials)

    def _policy(self, config: mailcloak_settings.Config, context: ssl.SSLContext,
                credentials: tuple[str, str] | None = None) -> SessionPolicy:
        return SessionPolicy(
            helo_name=config.hostname, tls_context=context,
            require_tls=credentials is not None, credentials=credentials,
            connect_timeout=self.options.connect_timeout,
            command_timeout=self.options.command_timeout,
            data_timeout=self.options.data_timeout)

    async def __aenter__(self) -> Deliverer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- delivering ---------------------------------------------------------------------------

    async def deliver(self, mail_from: str, recipients: list[str], content: bytes
                      ) -> list[DeliveryResult]:
        """Deliver one message; one result per recipient, in the order given."""
        content = to_crlf(content)
        if not valid_address(mail_from):
            return [PermanentFailure(r, "5.1.7 bad sender address syntax") for r in recipients]
        by_domain: dict[str, list[str]] = defaultdict(list)
        results: dict[str, DeliveryResult] = {}
        for recipient in dict.fromkeys(recipients):
            if valid_address(recipient) and "@" in recipient:
                by_domain[recipient_domain(recipient)].append(recipient)
            else:
                results[recipient] = PermanentFailure(recipient,
                                                      "5.1.3 bad recipient address syntax")
        batches = await asyncio.gather(*(
            self._deliver_to_domain(domain, mail_from, rcpts, content)
            for domain, rcpts in by_domain.items()))
        results.update((result.recipient, result) for batch in batches for result in batch)
        return [results[recipient] for recipient in recipients]

    async def _deliver_to_domain(self, domain: str, mail_from: str, recipients: list[str],
                                 content: bytes) -> list[DeliveryResult]:
        async with self._domain_limits.hold(domain), self._slots:
            try:
                route = await self.router.route(domain)
            except RouteError as exc:
                return self._unroutable(exc, recipients)
            return await self._send_via(route, mail_from, recipients, content)

    def _unroutable(self, error: RouteError, recipients: list[str]) -> list[DeliveryResult]:
        reason = str(error)
        if error.no_route and self.local_fallback:
            return [KeptInLocalOutbox(r, reason) for r in recipients]
        if error.permanent:
            return [PermanentFailure(r, reason) for r in recipients]
        return [TemporaryFailure(r, reason) for r in recipients]

    async def _send_via(self, route: Route, mail_from: str, recipients: list[str],
                        content: bytes) -> list[DeliveryResult]:
        failures: list[str] = []
        policy = self._relay_policy if route.kind == "relay" else self._direct_policy
        attempts = 0
        async for target in self._targets(route, failures):
            if attempts == MAX_CONNECTION_ATTEMPTS:
                break
            attempts += 1
            try:
                return await self._transact(target, policy, mail_from, recipients, content)
            except HostFailure as exc:
                failures.append(str(exc))
        reason = "4.4.1 no mail server could be reached: " + "; ".join(failures[-3:])
        log.info("delivery to %s failed: %s", recipient_domain(recipients[0]), reason)
        if route.is_mx and self.local_fallback:
            return [KeptInLocalOutbox(r, reason) for r in recipients]
        return [TemporaryFailure(r, reason) for r in recipients]

    async def _targets(self, route: Route, failures: list[str]) -> AsyncIterator[Target]:
        """Each address of each host in order, resolved only when the previous ones failed."""
        for host, port in route.hosts:
            try:
                targets = await self.router.targets(route, host, port)
            except HostFailure as exc:
                failures.append(str(exc))
                continue
            for target in targets:
                yield target

    async def _connect(self, target: Target, policy: SessionPolicy) -> SmtpConnection:
        """A new session to `target` (HostFailure when it cannot be opened)."""
        try:
            return await self._run(open_connection, target, policy)
        except TlsFailure as exc:
            if policy.require_tls:
                raise
            log.info("%s; retrying without TLS", exc)
            return await self._run(functools.partial(open_connection, try_tls=False),
                                   target, policy)

    async def _transact(self, target: Target, policy: SessionPolicy, mail_from: str,
                        recipients: list[str], content: bytes) -> list[DeliveryResult]:
        """The transaction on a reused idle session to `target` if one is alive, else on a
        new one (HostFailure when it cannot be opened)."""
        while (idle := self.pool.take(ConnectionPool.key(target, policy))) is not None:
            try:
                return await self._send(idle, mail_from, recipients, content, reused=True)
            except SessionGone:
                await self._run(idle.close)
        connection = await self._connect(target, policy)
        return await self._send(connection, mail_from, recipients, content)

    async def _send(self, connection: SmtpConnection, mail_from: str, recipients: list[str],
                    content: bytes, *, reused: bool = False) -> list[DeliveryResult]:
        try:
            replies = await self._run(functools.partial(send, reused=reused), connection,
                                      mail_from, recipients, content)
        except ConnectionLost as exc:
            return [TemporaryFailure(r, f"4.4.2 connection lost: {exc}") for r in recipients]
        await self._release(connection)
        return [_result(recipient, replies[recipient], connection) for recipient in recipients]

    # --- sessions -----------------------------------------------------------------------------

    async def _release(self, connection: SmtpConnection) -> None:
        surplus = self.pool.put(connection) if connection.reusable else connection
        if surplus is not None:
            await self._run(surplus.close)

    async def close_idle(self) -> None:
        """Close sessions unused for longer than the idle timeout (call now and then)."""
        stale = self.pool.expired(time.monotonic())
        await asyncio.gather(*(self._run(connection.close) for connection in stale))

    async def aclose(self) -> None:
        await asyncio.gather(*(self._run(c.close) for c in self.pool.drain()))
        self._executor.shutdown(wait=False)

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(function, *args))


def _result(recipient: str, reply: Reply, connection: SmtpConnection) -> DeliveryResult:
    if reply.ok:
        return Delivered(recipient, str(connection.target), connection.tls, str(reply))
    said = f"{connection.target.host} said: {reply}"
    if reply.permanent:
        return PermanentFailure(recipient, said)
    return TemporaryFailure(recipient, said)


# --- the local outbox --------------------------------------------------------------------------


def decoded_subject(content: bytes) -> str:
    """The Subject header, RFC 2047 decoded, on one line; "" when there is none."""
    try:
        headers = BytesHeaderParser(policy=email.policy.default).parsebytes(content)
        subject = headers.get("subject", "")
        return " ".join(str(subject).split())
    except (ValueError, TypeError, IndexError, LookupError):  # malformed header: keep going
        return ""


def store_in_local_outbox(mail_from: str, recipient: str, content: bytes) -> None:
    """Keep a message that has nowhere to go (local mode) for the web app's local outbox."""
    LocalOutboxMessage.objects.create(mail_from=mail_from, recipient=recipient,
                                      subject=decoded_subject(content)[:500], content=content)
