"""Mailcloak's inbound SMTP server, built on aiosmtpd.

`SmtpProtocol` is aiosmtpd's SMTP with our framing and limits: DATA ends only at <CRLF>.<CRLF>
and a bare CR or LF anywhere in it is refused (no SMTP smuggling: smtp_data.py); SIZE is
announced and enforced; connections, commands and errors are capped; every reply comes from
`replies`.
`Handler` holds the hooks: address parsing, the RCPT policy and the durable intake, the last two
in worker threads (dbthreads.py) so the event loop never waits on the database.

`start_smtp_server` runs one server in the current event loop (`mailcloak smtpd` runs several
processes of them: smtpd_processes.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass
from typing import AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax
from django.db import DatabaseError

from mailcloak.mail import auth, intake, policy, replies, tls
from mailcloak.mail.addresses import (
    NULL,
    Address,
    parse_forward_path,
    parse_reverse_path,
    split_path,
)
from mailcloak.mail.analysis import Analysis, analyse
from mailcloak.mail.committer import GroupCommitter
from mailcloak.mail.dbthreads import DatabaseThreads
from mailcloak.mail.forward import UnparseableMessage, check_forwardable
from mailcloak.mail.queue import new_queue_id
from mailcloak.mail.replies import Reply
from mailcloak.mail.smtp_data import read_data
from mailcloak.mail.spam.verdict import Direction, EngineUnavailable
from mailcloak.mail.worker import wake as wake_workers
from mailcloak.observability.instruments import (
    SMTP_REPLIES,
    SMTP_SESSIONS,
    SMTP_SESSIONS_ACTIVE,
)
from mailcloak.observability.logsetup import fields
from mailcloak.observability.redaction import log_key, redact_address
from mailcloak.settings import Config

log = logging.getLogger("mailcloak.smtpd")


@dataclass(frozen=True)
class ServerOptions:
    hostname: str
    max_message_size: int
    max_recipients: int
    max_connections: int
    tls_context: ssl.SSLContext | None
    log_key: bytes  # keys the hashes that stand for addresses in the log
    max_commands: int = 2000  # per connection; ended between transactions (hard stop at 2x)
    max_errors: int = 20  # 4xx/5xx replies per connection, "too many recipients" aside
    idle_timeout: float = 300.0  # seconds without a command (or DATA progress)
    database_threads: int = 4

    @classmethod
    def from_config(cls, config: Config) -> ServerOptions:
        return cls(hostname=config.hostname, max_message_size=config.max_message_size,
                   max_recipients=config.max_recipients, max_connections=config.max_connections,
                   tls_context=tls.server_context(config), log_key=log_key(config.secret_key))


class Connections:
    """The live sessions of one server, at most `limit` at a time, none once it stops."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.live: set[SmtpProtocol] = set()
        self.stopping = False

    def admit(self, protocol: SmtpProtocol) -> Reply | None:
        """None when `protocol` may go on, else the reply that turns it away."""
        if self.stopping:
            return replies.SHUTTING_DOWN
        if len(self.live) >= self.limit:
            return replies.TOO_MANY_CONNECTIONS
        self.live.add(protocol)
        return None


class MailcloakEnvelope(Envelope):
    def __init__(self) -> None:
        super().__init__()
        self.sender: Address = NULL
        self.decisions: list[policy.Decision] = []  # accepted recipients
        self.queue_id = ""  # named at MAIL, so every log line of the transaction carries it
        self.data_error: Reply | None = None


class SmtpProtocol(SMTP):
    """One SMTP session: aiosmtpd's protocol with Mailcloak's framing, limits and replies."""

    def __init__(self, handler: Handler, options: ServerOptions, sessions: Connections) -> None:
        super().__init__(handler, data_size_limit=None, enable_SMTPUTF8=True, decode_data=False,
                         hostname=options.hostname, ident=replies.GREETING_IDENT,
                         tls_context=options.tls_context, timeout=options.idle_timeout,
                         loop=asyncio.get_running_loop())
        self._smtp_methods.pop("AUTH", None)  # nobody logs in to an inbound MX
        self.options = options
        self._sessions = sessions
        self._greeted = False
        self._plain_replies = False  # set while answering EHLO or HELO
        self._replies = self._errors = 0
        self._last_touch = 0.0
        self._committing = self._closing = self._shutdown_requested = False
        self._counted = False  # whether this session is in SMTP_SESSIONS_ACTIVE
        self._in_data = self._eof_in_data = False

    def _create_envelope(self) -> MailcloakEnvelope:
        return MailcloakEnvelope()

    async def _handle_client(self) -> None:
        refusal = self._sessions.admit(self)
        if refusal is not None:
            log.warning("connection refused", extra=fields(
                decision="refuse-connection", reply=refusal.code, status=refusal.status,
                peer=peer_ip(self.session)))
            await self._close_with(refusal)
            return
        SMTP_SESSIONS.inc()
        SMTP_SESSIONS_ACTIVE.inc()
        self._counted = True
        await super()._handle_client()

    def eof_received(self) -> bool | None:
        """The client closed its side. aiosmtpd ends the session at once: during DATA that
        dropped the reply to a message being stored (a client that pipelines its message and
        half-closes got no 250 and sent it again), so then the session ends after the reply."""
        if not self._in_data:
            return super().eof_received()
        self._eof_in_data = True
        return asyncio.StreamReaderProtocol.eof_received(self)  # read_data sees the end

    def connection_lost(self, error: Exception | None) -> None:
        self._sessions.live.discard(self)
        if self._counted:
            self._counted = False
            SMTP_SESSIONS_ACTIVE.dec()
        super().connection_lost(error)

    def _timeout_cb(self) -> None:
        if self._can_write():
            self._closing = True
            self._writer.write(replies.IDLE_TIMEOUT.line.encode() + b"\r\n")
        super()._timeout_cb()

    def keep_alive(self) -> None:
        """A slow but steady DATA transfer is not idle."""
        now = self.loop.time()
        if now - self._last_touch >= 1.0:
            self._last_touch = now
            self._reset_timeout()

    def shut_down(self) -> None:
        """Close now, or right after the reply to a message being committed."""
        self._shutdown_requested = True
        if not self._committing and self._can_write():
            self._closing = True
            self._writer.write(replies.SHUTTING_DOWN.line.encode() + b"\r\n")
            self._writer.close()

    def _can_write(self) -> bool:
        return not self._closing and self.transport is not None and not self.transport.is_closing()

    async def push(self, status: AnyStr) -> None:
        line = status.decode() if isinstance(status, bytes) else str(status)
        greeting, self._greeted = not self._greeted, True
        if not greeting and not self._plain_replies:  # RFC 2034: all but these carry one
            line = replies.with_status_code(line)
        await super().push(line)
        if not greeting and line[3:4] != "-":
            await self._count_reply(line)

    async def _count_reply(self, line: str) -> None:
        self._replies += 1
        # 452 asks a client to send the other recipients later: no misbehaviour.
        self._errors += line[:1] in ("4", "5") and not line.startswith("452")
        if self._closing or self.transport is None:
            return
        if self._shutdown_requested:
            await self._close_with(replies.SHUTTING_DOWN)
        elif self._errors >= self.options.max_errors:
            await self._close_with(replies.TOO_MANY_ERRORS)
        elif self._over_command_limit():
            await self._close_with(replies.TOO_MANY_COMMANDS)

    def _over_command_limit(self) -> bool:
        """Past the limit, close between transactions so no message is cut short; past twice
        the limit, close anyway."""
        limit = self.options.max_commands
        between = self.envelope is None or not self.envelope.mail_from
        return self._replies >= limit * 2 or (self._replies >= limit and between)

    async def _close_with(self, reply: Reply) -> None:
        self._closing = True
        with contextlib.suppress(ConnectionError):
            await super().push(reply.line)
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        if self.transport is not None:
            self.transport.close()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """The path as sent and its parameters: the hooks parse the path (addresses.py)."""
        return split_path(arg) if arg else ("", "")

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        self._plain_replies = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._plain_replies = False

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if not hostname:
            await self.push(replies.SYNTAX_ERROR.with_text(reason="EHLO hostname").line)
            return
        self._set_rset_state()
        assert self.session is not None
        self.session.host_name = hostname
        self.session.extended_smtp = True
        self._plain_replies = True
        try:
            lines = [self.hostname, *self._extensions()]
            for line in lines[:-1]:
                await self.push(f"250-{line}")
            await self.push(f"250 {lines[-1]}")
        finally:
            self._plain_replies = False

    def _extensions(self) -> list[str]:
        assert self.session is not None
        names = [f"SIZE {self.options.max_message_size}", "8BITMIME", "SMTPUTF8", "PIPELINING",
                 "ENHANCEDSTATUSCODES"]
        if self.tls_context is not None and self._tls_protocol is None:
            names.append("STARTTLS")
        return names

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str) -> None:
        commands = sorted(name for name, method in self._smtp_methods.items()
                          if self._syntax_available(method))
        await self.push(replies.HELP.with_text(commands=" ".join(commands)).line)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None:
            await self.push(replies.BAD_SEQUENCE.with_text(reason="TLS already active").line)
            return
        await super().smtp_STARTTLS(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed():
            return
        envelope = self.envelope
        assert isinstance(envelope, MailcloakEnvelope)
        if not envelope.mail_from:
            await self.push(replies.BAD_SEQUENCE.with_text(reason="send MAIL first").line)
        elif not envelope.rcpt_tos:
            await self.push(replies.NO_VALID_RECIPIENTS.line)
        elif arg:
            await self.push(replies.SYNTAX_ERROR.with_text(reason="DATA takes no argument").line)
        else:
            self._in_data = True
            try:
                await self._receive_message(envelope)
            finally:
                self._in_data = False
            if self._eof_in_data:  # the reply is out: end as aiosmtpd ends a closed session
                raise ConnectionResetError("the client closed its side during DATA")

    async def _receive_message(self, envelope: MailcloakEnvelope) -> None:
        await self.push(replies.START_DATA.line)
        received = await read_data(self._reader, max_size=self.options.max_message_size,
                                   keep_alive=self.keep_alive)
        if isinstance(received, Reply):
            envelope.data_error = received
        else:
            envelope.content = envelope.original_content = received
        self._committing = True
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            self._committing = False
            # Also after a failure (451 from handle_exception): the next MAIL starts a new
            # transaction instead of meeting this one's sender and recipients.
            self._set_post_data_state()
        await self.push(status)


class Handler:
    """aiosmtpd hooks: the decisions of a session, from EHLO to the end of DATA."""

    def __init__(self, options: ServerOptions, database: DatabaseThreads,
                 committer: GroupCommitter) -> None:
        self.options = options
        self.database = database
        self.committer = committer

    async def handle_MAIL(self, server: SmtpProtocol, session: Session,
                          envelope: MailcloakEnvelope, address: str,
                          mail_options: list[str]) -> str:
        sender = parse_reverse_path(address, smtputf8=envelope.smtp_utf8)
        if isinstance(sender, Reply):
            return sender.line
        declared = next((int(o[5:]) for o in mail_options if o.startswith("SIZE=")), 0)
        if declared > self.options.max_message_size:
            return replies.MESSAGE_TOO_BIG.line
        envelope.sender = sender
        envelope.queue_id = new_queue_id()
        envelope.mail_from = str(sender) or "<>"  # aiosmtpd takes an empty one for "no MAIL"
        envelope.mail_options.extend(mail_options)
        return replies.SENDER_OK.line

    async def handle_RCPT(self, server: SmtpProtocol, session: Session,
                          envelope: MailcloakEnvelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.options.max_recipients:
            return replies.TOO_MANY_RECIPIENTS.line
        recipient = parse_forward_path(address, smtputf8=envelope.smtp_utf8)
        if isinstance(recipient, Reply):
            return recipient.line
        try:
            decision = await self.database.run(policy.decide, envelope.sender, recipient,
                                               peer_ip(session))
        except DatabaseError as exc:
            log.warning("recipient check failed: database error %s", intake.describe(exc))
            return replies.TEMPORARY_FAILURE.line
        SMTP_REPLIES.labels("rcpt", decision.reply.code, decision.reply.status).inc()
        if decision.accepted:
            envelope.rcpt_tos.append(decision.recipient)
            envelope.decisions.append(decision)
        else:
            log.info("recipient refused", extra=fields(
                queue_id=envelope.queue_id, decision="refuse-recipient",
                reply=decision.reply.code, status=decision.reply.status, peer=peer_ip(session),
                sender=self._redact(envelope.sender), recipient=self._redact(recipient)))
        return decision.reply.line

    async def handle_DATA(self, server: SmtpProtocol, session: Session,
                          envelope: MailcloakEnvelope) -> str:
        queue_id = envelope.queue_id or new_queue_id()
        if envelope.data_error is not None:
            self._log_message(queue_id, envelope.data_error, session, envelope)
            return envelope.data_error.line
        assert isinstance(envelope.content, bytes)
        try:
            analysis, outbound = await self._analyse(session, envelope)
        except UnparseableMessage:
            self._log_message(queue_id, replies.UNPARSEABLE, session, envelope)
            return replies.UNPARSEABLE.line
        except EngineUnavailable as exc:
            log.warning("message not scanned: %s", exc, extra=fields(queue_id=queue_id))
            self._log_message(queue_id, replies.SCANNER_UNAVAILABLE, session, envelope)
            return replies.SCANNER_UNAVAILABLE.line
        message = intake.InboundMessage(queue_id=queue_id, sender=str(envelope.sender),
                                        recipients=tuple(envelope.decisions),
                                        content=envelope.content, analysis=analysis,
                                        outbound_analysis=outbound)
        try:
            # Rewritten and sealed here, outside the commit, which then only stores them.
            message = await self.database.run(intake.with_prepared_copies, message)
            outcome = await self.committer.run(intake.store, message)
        except Exception as exc:
            outcome = intake.failed(message, exc)
        else:
            wake_workers()  # a worker in this process delivers it without waiting to poll
        self._log_message(queue_id, outcome.reply, session, envelope, outcome)
        return outcome.reply.line

    async def _analyse(self, session: Session, envelope: MailcloakEnvelope
                       ) -> tuple[Analysis | None, Analysis | None]:
        """Authenticate and score the message: as inbound mail when a copy is forwarded, as
        outbound mail when it is an owner's reply leaving from an alias (both, each with its
        own recipients, when one transaction does both)."""
        by_direction = {
            Direction.INBOUND: tuple(d.recipient for d in envelope.decisions
                                     if d.action is policy.Action.FORWARD),
            Direction.OUTBOUND: tuple(d.recipient for d in envelope.decisions
                                      if d.action is policy.Action.REPLY),
        }
        if not any(by_direction.values()):
            return None, None
        assert isinstance(envelope.content, bytes)
        check_forwardable(envelope.content, str(envelope.sender))
        results: dict[Direction, Analysis | None] = dict.fromkeys(by_direction)
        for direction, recipients in by_direction.items():
            if recipients:
                results[direction] = await analyse(
                    envelope.content, peer_ip=peer_ip(session), helo=session.host_name or "",
                    mail_from=str(envelope.sender), recipients=recipients, direction=direction)
        return results[Direction.INBOUND], results[Direction.OUTBOUND]

    async def handle_exception(self, error: Exception) -> str:
        log.error("session error: %s", intake.describe(error))
        return replies.LOCAL_ERROR.line

    def _log_message(self, queue_id: str, reply: Reply, session: Session,
                     envelope: MailcloakEnvelope, outcome: intake.Outcome | None = None) -> None:
        """One line per message decision: never content, addresses only as keyed hashes."""
        SMTP_REPLIES.labels("data", reply.code, reply.status).inc()
        counts = {} if outcome is None else {
            "forwarded": len(outcome.queue_ids) - outcome.replies, "replies": outcome.replies,
            "quarantined": outcome.quarantined, "rejected": outcome.rejected,
            "dropped": outcome.dropped, "blocked": outcome.blocked,
            "bounces": outcome.bounces, "queue_ids": ",".join(outcome.queue_ids) or "-"}
        log.info("message %s", "accepted" if reply.accepted else "refused", extra=fields(
            queue_id=queue_id, decision=intake.decision(reply, outcome), reply=reply.code,
            status=reply.status, peer=peer_ip(session), sender=self._redact(envelope.sender),
            recipients=len(envelope.decisions), size=len(envelope.content or b""), **counts))

    def _redact(self, address: Address) -> str:
        return redact_address(address, self.options.log_key)



def peer_ip(session: Session | None) -> str:
    peer = session.peer if session is not None else None
    return str(peer[0]) if isinstance(peer, tuple) and peer else "?"


class SmtpServer:
    """One listening SMTP server in the running event loop."""

    def __init__(self, options: ServerOptions) -> None:
        # aiosmtpd logs addresses, and its warnings quote what clients send ("unrecognised:
        # WORD"), which after a pipelining mix-up is a word of the message: errors only.
        logging.getLogger("mail.log").setLevel(logging.ERROR)
        self.options = options
        self.sessions = Connections(options.max_connections)
        self.database = DatabaseThreads(options.database_threads)
        self.committer = GroupCommitter()
        self.handler = Handler(options, self.database, self.committer)
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        from mailcloak.aliases.services import sync_configured_domains

        await self.database.run(sync_configured_domains)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SmtpProtocol(self.handler, self.options, self.sessions), host, port,
            reuse_port=reuse_port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening, close idle sessions, let a message being committed get its reply."""
        if self._server is not None:
            self._server.close()
        self.sessions.stopping = True  # connections accepted but not yet greeted are turned away
        for session in list(self.sessions.live):
            session.shut_down()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.sessions.live and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for session in list(self.sessions.live):
            if isinstance(session.transport, asyncio.WriteTransport):
                session.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()
        await loop.run_in_executor(None, self.database.close)
        await loop.run_in_executor(None, self.committer.close)


async def start_smtp_server(config: Config, *, host: str, port: int,
                            reuse_port: bool = False) -> SmtpServer:
    """Start an SMTP server for `config` on host:port (port 0: any free port)."""
    auth.prepare()  # before the first message, not in the middle of it
    server = SmtpServer(ServerOptions.from_config(config))
    await server.start(host, port, reuse_port=reuse_port)
    return server
