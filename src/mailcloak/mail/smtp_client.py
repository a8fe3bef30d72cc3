"""The outbound SMTP client: blocking smtplib sessions, run by the deliverer in worker threads.

One `SmtpConnection` is one open, greeted (and, when offered, TLS-protected) session to one
host, reusable for several messages. `open_connection()` raises `HostFailure` when the host
cannot be used (try the next one); `send()` runs one mail transaction and returns the reply
for each recipient, or raises `ConnectionLost` when the session broke in the middle.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field

MAX_MESSAGES_PER_CONNECTION = 100


@dataclass(frozen=True)
class Target:
    """One address of one host to try: `host` is the name (for TLS), `address` the IP."""

    host: str
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}[{self.address}]:{self.port}"


@dataclass(frozen=True)
class Reply:
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


@dataclass(frozen=True)
class SessionPolicy:
    helo_name: str
    tls_context: ssl.SSLContext | None  # None: never STARTTLS
    require_tls: bool = False
    credentials: tuple[str, str] | None = None
    connect_timeout: float = 30.0
    command_timeout: float = 120.0
    data_timeout: float = 600.0  # RFC 5321 4.5.3.2.6: ten minutes for the end of data


class HostFailure(Exception):
    """This host could not take the message now (refused, timed out, greeted with an error)."""


class TlsFailure(HostFailure):
    """STARTTLS was offered but the handshake failed; a plain session may still work."""


class SessionGone(Exception):
    """An idle session that did not answer RSET when reused: nothing was sent on it."""


class ConnectionLost(Exception):
    """The session broke during a transaction: the outcome for its recipients is unknown."""


class _PinnedSMTP(smtplib.SMTP):
    """smtplib.SMTP connecting to a fixed IP while keeping the host name for TLS (SNI).

    Our resolver chose the address; smtplib must not resolve the name again."""

    def __init__(self, address: str, **kwargs: object) -> None:
        self._address = address
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return socket.create_connection((self._address, port), timeout, self.source_address)


@dataclass(eq=False)
class SmtpConnection:
    target: Target
    smtp: smtplib.SMTP
    tls: bool
    policy: SessionPolicy
    messages_sent: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def reusable(self) -> bool:
        return self.smtp.sock is not None and self.messages_sent < MAX_MESSAGES_PER_CONNECTION

    def reset(self) -> bool:
        """RSET before reusing an idle session; False when the session is no longer alive."""
        try:
            code, _ = self.smtp.rset()
        except (OSError, smtplib.SMTPException):
            return False
        return code == 250

    def close(self) -> None:
        try:
            if self.smtp.sock is not None:
                self.smtp.quit()
        except (OSError, smtplib.SMTPException):
            pass
        finally:
            self.smtp.close()


def _text(message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return " ".join(text.split())


def describe(exc: BaseException) -> str:
    """A one-line reason for a failed step, with the server's reply when there was one."""
    if isinstance(exc, smtplib.SMTPResponseException):
        return str(Reply(exc.smtp_code, _text(exc.smtp_error)))
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return _text(str(exc)) or type(exc).__name__


# --- opening a session -----------------------------------------------------------------------


def open_connection(target: Target, policy: SessionPolicy, *, try_tls: bool = True
                    ) -> SmtpConnection:
    """Connect, read the greeting, EHLO, STARTTLS when offered, AUTH when configured."""
    try:
        # Given the host, smtplib connects and reads the greeting (SMTPConnectError unless 220).
        smtp = _PinnedSMTP(target.address, host=target.host, port=target.port,
                           local_hostname=policy.helo_name, timeout=policy.connect_timeout)
    except (OSError, smtplib.SMTPException) as exc:
        raise HostFailure(f"{target}: {describe(exc)}") from None
    try:
        _settimeout(smtp, policy.command_timeout)
        _hello(smtp, target)
        tls = _start_tls(smtp, target, policy) if try_tls else False
        if policy.require_tls and not tls:
            raise HostFailure(f"{target} does not offer STARTTLS, which is required here")
        if policy.credentials is not None:
            _login(smtp, target, policy.credentials)
    except HostFailure:
        smtp.close()
        raise
    except (OSError, smtplib.SMTPException) as exc:
        smtp.close()
        raise HostFailure(f"{target}: {describe(exc)}") from None
    return SmtpConnection(target, smtp, tls, policy)


def _hello(smtp: smtplib.SMTP, target: Target) -> None:
    code, message = smtp.ehlo()
    if code != 250:
        code, message = smtp.helo()
    if code != 250:
        raise HostFailure(f"{target} refused EHLO and HELO: {Reply(code, _text(message))}")


def _start_tls(smtp: smtplib.SMTP, target: Target, policy: SessionPolicy) -> bool:
    if policy.tls_context is None or not smtp.has_extn("starttls"):
        return False
    try:
        smtp.starttls(context=policy.tls_context)
        # With TLS 1.3 a server that rejects the handshake says so at the first read.
        _hello(smtp, target)
    except (OSError, smtplib.SMTPException) as exc:
        raise TlsFailure(f"{target}: STARTTLS failed: {describe(exc)}") from None
    return True


def _login(smtp: smtplib.SMTP, target: Target, credentials: tuple[str, str]) -> None:
    try:
        smtp.login(*credentials)
    except smtplib.SMTPNotSupportedError:
        raise HostFailure(f"{target} does not offer AUTH") from None
    except smtplib.SMTPException as exc:
        raise HostFailure(f"{target} refused our login: {describe(exc)}") from None


# --- one mail transaction --------------------------------------------------------------------

_ADDRESS_FORBIDDEN = re.compile(r"[\s<>\x00-\x1f\x7f]")


def valid_address(address: str) -> bool:
    """Safe to put between angle brackets in MAIL FROM / RCPT TO (no spaces, brackets, CR/LF)."""
    return not _ADDRESS_FORBIDDEN.search(address) and len(address) <= 320


def needs_smtputf8(mail_from: str, recipients: list[str]) -> bool:
    return not all(address.isascii() for address in [mail_from, *recipients])


def mail_options(smtp: smtplib.SMTP, content: bytes, *, smtputf8: bool) -> list[str]:
    options = []
    if smtp.has_extn("size"):
        options.append(f"SIZE={len(content)}")
    if not content.isascii() and smtp.has_extn("8bitmime"):
        options.append("BODY=8BITMIME")
    if smtputf8 or (not content.isascii() and smtp.has_extn("smtputf8")):
        options.append("SMTPUTF8")
    return options


def size_limit(smtp: smtplib.SMTP) -> int | None:
    value = smtp.esmtp_features.get("size", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def send(connection: SmtpConnection, mail_from: str, recipients: list[str], content: bytes,
         *, reused: bool = False) -> dict[str, Reply]:
    """One transaction; returns each recipient's final reply (its RCPT refusal, else DATA's).

    `content` must already use CRLF line endings. A `reused` idle session is checked with RSET
    first, in the same call (a thread hop less per message): SessionGone when it is dead.
    Raises ConnectionLost if the session breaks before the outcome is known; refusals are
    replies, not exceptions."""
    if reused and not connection.reset():
        raise SessionGone(str(connection.target))
    smtp = connection.smtp
    connection.last_used = time.monotonic()
    try:
        replies, finished = _transaction(smtp, connection.policy, mail_from, recipients, content)
    except (OSError, smtplib.SMTPServerDisconnected) as exc:
        connection.close()
        raise ConnectionLost(f"{connection.target}: {describe(exc)}") from None
    connection.messages_sent += 1
    connection.last_used = time.monotonic()
    if not finished and not connection.reset():
        connection.close()  # the replies stand; the session is just not reusable
    return replies


def _transaction(smtp: smtplib.SMTP, policy: SessionPolicy, mail_from: str,
                 recipients: list[str], content: bytes) -> tuple[dict[str, Reply], bool]:
    """The replies, and whether the server considers the transaction over (else: RSET)."""
    smtputf8 = needs_smtputf8(mail_from, recipients)
    if smtputf8 and not smtp.has_extn("smtputf8"):
        return _all(recipients, Reply(553, "5.6.7 the receiving server does not support "
                                           "SMTPUTF8, which these addresses need")), True
    limit = size_limit(smtp)
    if limit is not None and len(content) > limit:
        return _all(recipients, Reply(552, f"5.3.4 message size {len(content)} exceeds the "
                                           f"receiving server's limit of {limit}")), True
    smtp.command_encoding = "utf-8" if smtputf8 else "ascii"
    options = mail_options(smtp, content, smtputf8=smtputf8)
    reply = _command(smtp, "mail", f"FROM:<{mail_from}>" + "".join(" " + o for o in options))
    if not reply.ok:
        return _all(recipients, reply), False
    replies = {rcpt: _command(smtp, "rcpt", f"TO:<{rcpt}>") for rcpt in recipients}
    accepted = [rcpt for rcpt, rcpt_reply in replies.items() if rcpt_reply.ok]
    if not accepted:
        return replies, False
    _settimeout(smtp, policy.data_timeout)
    try:
        code, message = smtp.data(content)
    except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
        return replies | dict.fromkeys(accepted, Reply(exc.smtp_code, _text(exc.smtp_error))), False
    finally:
        _settimeout(smtp, policy.command_timeout)
    return replies | dict.fromkeys(accepted, Reply(code, _text(message))), True


def _settimeout(smtp: smtplib.SMTP, seconds: float) -> None:
    if smtp.sock is not None:
        smtp.sock.settimeout(seconds)


def _command(smtp: smtplib.SMTP, verb: str, argument: str) -> Reply:
    smtp.putcmd(verb, argument)
    code, message = smtp.getreply()
    return Reply(code, _text(message))


def _all(recipients: list[str], reply: Reply) -> dict[str, Reply]:
    return dict.fromkeys(recipients, reply)
