"""Hostile SMTP clients against a real server on loopback, driven by hypothesis.

One server for the module, reused by every example. Whatever a client sends (random and
malicious command sequences, lines over 1,000 and 64 KiB, NUL and non-UTF-8 bytes, everything
in one write, commands after DATA, a thousand recipients, a vanished or slow client), each
reply is a well-formed SMTP reply whose code is one RFC 5321 allows for the command, with an
enhanced status code (the server announces ENHANCEDSTATUSCODES), or the connection is closed;
the server keeps serving; and the queue holds exactly the messages answered "250 queued as".
Memory per connection is measured by bench/smtp_memory.py, not here.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias, sync_configured_domains
from mailcloak.mail import intake, smtpd
from mailcloak.mail.headers import split_message
from mailcloak.mail.models import QueuedMessage
from tests.support.smtp_client import RunningServer, test_options

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("lenient_spam_thresholds")]

REPLY_LINE = re.compile(rb"^([2-5][0-9][0-9])([ -])(.*)$")
ENHANCED = re.compile(r"^([245])\.[0-9]{1,3}\.[0-9]{1,3}( |$)")
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as ([0-9A-Z]+)$")
# RFC 5321 4.3.2, plus 421 (closing) and the syntax replies every command may get.
ANY = {421, 500, 501, 502, 503, 504}
ALLOWED = {
    "EHLO": {250, 550}, "HELO": {250, 550},
    "MAIL": {250, 451, 452, 455, 550, 552, 553, 555},
    "RCPT": {250, 251, 252, 450, 451, 452, 455, 550, 551, 552, 553, 554, 555},
    "DATA": {354, 451, 554}, "END-OF-DATA": {250, 450, 451, 452, 550, 552, 553, 554},
    "RSET": {250}, "NOOP": {250}, "QUIT": {221}, "VRFY": {250, 251, 252, 550, 551, 553},
    "EXPN": {250, 252, 550}, "HELP": {211, 214}, "STARTTLS": {220, 454}, "GREETING": {220},
}
# RFC 2034 3: every reply carries an enhanced status code but the greeting, the replies to
# HELO and EHLO, and (having no status to tell) 354.
PLAIN_REPLIES = {"GREETING", "EHLO", "HELO"}
# `make test` runs a fixed sample; a long run draws new ones each time:
#   MAILCLOAK_TEST_FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/test_fuzz_smtp.py
EXAMPLES = int(os.environ.get("MAILCLOAK_TEST_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 150,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker) -> Iterator[RunningServer]:
    with django_db_blocker.unblock(), RunningServer(test_options(max_errors=40)) as running:
        yield running


@pytest.fixture
def alias(server: RunningServer, user) -> Alias:
    sync_configured_domains()  # the tables are emptied after each test of this module
    return create_alias(user)


# --- what clients send ----------------------------------------------------------------------

junk_bytes = st.binary(min_size=0, max_size=300).map(lambda b: b.replace(b"\n", b" "))
paths = st.one_of(st.sampled_from([
    "<a@sender.test>", "<>", "<nobody@alias.test>", "<x@elsewhere.test>", "<@a,@b:c@d.test>",
    "<a@[127.0.0.1]>", "<\"q u\"@sender.test>", "<josé@bücher.test>", "a@sender.test", "<",
    "<a@b> SIZE=99999999999", "<a@b> BODY=8BITMIME SMTPUTF8", "<a@b> SIZE=x",
    "<" + "a" * 400 + "@b.test>",
]), st.text(max_size=80).map(lambda t: f"<{t}>"))


def command(alias: str) -> st.SearchStrategy[bytes]:
    """One command line (without CRLF), sound or hostile."""
    rcpt = st.sampled_from([f"<{alias}>", f"<{alias.upper()}>"]) | paths
    texts = st.one_of(
        st.builds(lambda h: f"EHLO {h}",
                  st.sampled_from(["client.test", "", "[1.2.3.4]", "x" * 600])),
        st.builds(lambda h: f"HELO {h}", st.sampled_from(["client.test", ""])),
        st.builds(lambda p: f"MAIL FROM:{p}", paths),
        st.builds(lambda p: f"RCPT TO:{p}", rcpt),
        st.sampled_from(["DATA", "RSET", "NOOP", "QUIT", "VRFY a@alias.test", "EXPN list",
                         "HELP", "BDAT 10 LAST", "AUTH PLAIN AGFAYg==", "DATA now", "mail from:",
                         "RCPT TO:", "MAIL", "ETRN x", "STARTTLS now", "TURN", "\tNOOP"]),
    )
    long_lines = [b"NOOP " + b"x" * 1200, b"MAIL FROM:<" + b"a" * 70_000 + b">"]
    odd_bytes = [b"\x00\x00\x00", b"\xff\xfe RCPT TO:<a@b>", b"EHLO \xc3\x28"]
    return st.one_of(texts.map(lambda t: t.encode("utf-8", "surrogateescape")), junk_bytes,
                     st.sampled_from(long_lines + odd_bytes))


def message_body() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b"From: a@sender.test\r\nSubject: fuzz\r\n\r\nbody\r\n"),
        st.binary(max_size=2000).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n")),
        st.just(b"From: a@sender.test\r\n\r\n" + b"y" * 70_000 + b"\r\n"),
        st.just(b"From: a@sender.test\r\n\r\nsmuggle\n.\nMAIL FROM:<x@y.test>\r\n"),
    )


# --- reading replies ------------------------------------------------------------------------


class Session:
    """A raw connection that records every reply and notices when the server has closed."""

    def __init__(self, server: RunningServer) -> None:
        self.sock = socket.create_connection((server.host, server.port), timeout=20)
        self.buffer = b""
        self.closed = False
        self.reset = False  # the server closed with our data unread: its RST may drop replies
        self.half_closed = False
        self.queued: list[str] = []

    def send(self, data: bytes) -> None:
        # The server may have closed first (421, too many errors): what it said before
        # closing is still to be read, so a failed send is no end of the session.
        with contextlib.suppress(OSError):
            self.sock.sendall(data)

    def reply(self) -> tuple[int, list[str]] | None:
        """The next reply as (code, text lines), or None when the server closed instead."""
        lines: list[str] = []
        while not self.closed:
            end = self.buffer.find(b"\r\n")
            if end < 0:
                self._receive()
                continue
            raw, self.buffer = self.buffer[:end], self.buffer[end + 2:]
            match = REPLY_LINE.match(raw)
            assert match, f"not an SMTP reply line: {raw[:200]!r}"
            lines.append(match.group(3).decode("utf-8"))
            if match.group(2) == b" ":
                code = int(match.group(1))
                if QUEUED.match(raw.decode()):
                    self.queued.append(raw.decode().rsplit(" ", 1)[1])
                return code, lines
        # aiosmtpd ends a session at the client's FIN wherever it is, even inside a reply:
        # harmless (the client has stopped sending), so allowed once we have half-closed.
        assert self.half_closed or not lines, f"closed inside a multi-line reply: {lines}"
        return None

    def _receive(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            self.reset, data = True, b""
        if not data:
            self.closed = True
        self.buffer += data

    def drain(self) -> int:
        """Half-close, then read (and check the form of) every reply left; how many."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self.half_closed = True
        count = 0
        while self.reply() is not None:
            count += 1
        return count

    def close(self) -> None:
        self.sock.close()


def check_reply(reply: tuple[int, list[str]] | None, verb: str) -> bool:
    """Assert that `reply` may answer `verb`; False when the session is over."""
    if reply is None:
        return False
    code, lines = reply
    allowed = ALLOWED.get(verb, set()) | ANY
    assert code in allowed, f"{code} {lines} is no reply to {verb}"
    if verb not in PLAIN_REPLIES and code != 354:
        status = ENHANCED.match(lines[-1])
        assert status and status.group(1) == str(code)[0], f"no enhanced status: {code} {lines}"
    return code != 421 and not (verb == "QUIT" and code == 221)


def verb_of(line: bytes) -> str:
    word = line.split(b" ", 1)[0].strip().upper()
    return word.decode("ascii", "replace") if word.isalpha() else "?"


def assert_still_serving(server: RunningServer) -> None:
    session = Session(server)
    try:
        greeting = session.reply()
        assert greeting is not None and greeting[0] == 220
        session.send(b"EHLO client.test\r\nNOOP\r\nQUIT\r\n")
        assert [r and r[0] for r in (session.reply(), session.reply(), session.reply())] == [
            250, 250, 221]
    finally:
        session.close()


@contextlib.contextmanager
def queue_grows_by(announced: list[str]) -> Iterator[None]:
    """Assert that the queue gains exactly the messages in `announced` (filled in by the
    block): a QueuedMessage only for a message answered "250 queued as"."""
    before = set(QueuedMessage.objects.values_list("queue_id", flat=True))
    yield
    after = set(QueuedMessage.objects.values_list("queue_id", flat=True))
    assert after - before == set(announced)


@contextlib.contextmanager
def queue_grows_by_session(session: Session, bodies: list[bytes]) -> Iterator[None]:
    """Like queue_grows_by, for a session the server may have ended with an RST (a 421 with
    our pipelined commands unread), which can drop its last replies on our side: then the
    queue may hold a message whose 250 was lost, but only a whole one (one of `bodies`)."""
    before = set(QueuedMessage.objects.values_list("queue_id", flat=True))
    yield
    added = QueuedMessage.objects.exclude(queue_id__in=before)
    if not session.reset:
        assert {m.queue_id for m in added} == set(session.queued)
        return
    assert set(session.queued) <= {m.queue_id for m in added}
    sent = {split_message(body).body for body in bodies}  # forwarding keeps bodies intact
    assert all(split_message(bytes(message.content)).body in sent for message in added)


# --- the tests ------------------------------------------------------------------------------


def run_interactive(session: Session, lines: list[bytes], body: bytes) -> None:
    """Send one command at a time and check each reply against the command; after a 354,
    send `body` and the end of data."""
    try:
        if not check_reply(session.reply(), "GREETING"):
            return
        for line in lines:
            if b"\r" in line or b"\n" in line:
                line = line.replace(b"\r", b" ").replace(b"\n", b" ")
            verb = verb_of(line)
            if verb == "STARTTLS":
                break  # a TLS handshake is not this test's business (test_smtpd_tls.py)
            session.send(line + b"\r\n")
            reply = session.reply()
            if not check_reply(reply, verb):
                break
            if reply is not None and reply[0] == 354:
                session.send(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
                if not check_reply(session.reply(), "END-OF-DATA"):
                    break
        session.drain()  # a body with a line "." in it leaves replies to read
    finally:
        session.close()


@FUZZ
@given(data=st.data())
def test_command_sequences_one_at_a_time(server: RunningServer, alias: Alias,
                                         data: st.DataObject) -> None:
    lines = data.draw(st.lists(command(alias.address), max_size=25))
    prefix = data.draw(st.sampled_from([[], [b"EHLO client.test"],
                                        [b"EHLO client.test", b"MAIL FROM:<a@sender.test>",
                                         f"RCPT TO:<{alias.address}>".encode()]]))
    body = data.draw(message_body())
    session = Session(server)
    with queue_grows_by_session(session, [body]):
        run_interactive(session, prefix + lines, body)
    assert_still_serving(server)


@FUZZ
@given(data=st.data())
def test_everything_in_one_write(server: RunningServer, alias: Alias,
                                 data: st.DataObject) -> None:
    """Pipelining abuse: the whole session in one write, commands after DATA included, then
    the client half-closes and reads every reply until the server closes."""
    lines = data.draw(st.lists(command(alias.address), max_size=40))
    start = [b"EHLO client.test", b"MAIL FROM:<a@sender.test>",
             f"RCPT TO:<{alias.address}>".encode(), b"DATA"]
    body = data.draw(message_body())
    blob = b"\r\n".join(start) + b"\r\n" + body + b".\r\n" + b"\r\n".join(lines) + b"\r\n"
    session = Session(server)
    with queue_grows_by_session(session, [body]):
        try:
            session.send(blob)
            assert session.drain() >= 1  # the greeting at least
        finally:
            session.close()
    assert_still_serving(server)


# --- the cases a random walk rarely reaches -------------------------------------------------


def session_to(server: RunningServer, alias: Alias) -> Session:
    """A session that has sent EHLO, MAIL and RCPT and got 354 to DATA."""
    session = Session(server)
    session.send(b"EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\n"
                 + f"RCPT TO:<{alias.address}>\r\nDATA\r\n".encode())
    codes = [session.reply() for _ in range(5)]
    assert [c and c[0] for c in codes] == [220, 250, 250, 250, 354]
    return session


def test_a_thousand_recipients_in_one_write(server: RunningServer, alias: Alias) -> None:
    limit = server.options.max_recipients
    session = Session(server)
    queued: list[str] = session.queued
    with queue_grows_by(queued):
        session.send(b"EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\n"
                     + f"RCPT TO:<{alias.address}>\r\n".encode() * 1000 + b"DATA\r\n"
                     + b"From: a@sender.test\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        codes = [reply[0] for reply in iter(session.reply, None)]
        session.close()
    assert codes == [220, 250, 250] + [250] * limit + [452] * (1000 - limit) + [354, 250, 221]
    assert len(queued) == 1


@pytest.mark.parametrize("abort", [False, True], ids=["close", "reset"])
def test_clients_vanishing_mid_data_leave_nothing(server: RunningServer, alias: Alias,
                                                  abort: bool) -> None:
    with queue_grows_by([]):
        for size in (0, 10, 70_000):
            session = session_to(server, alias)
            session.send(b"From: a@sender.test\r\n\r\n" + b"z" * size)
            if abort:  # an RST instead of a FIN
                session.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                        b"\x01\x00\x00\x00\x00\x00\x00\x00")
            session.close()
        assert_still_serving(server)
    deadline = time.monotonic() + 10
    while server.server.sessions.live and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.server.sessions.live  # no session outlives its client


def trickle(session: Session, data: bytes, pause: float = 0.1) -> bytes:
    """Send `data` a byte at a time until the server says something; what it said."""
    for byte in data:
        session.send(bytes([byte]))
        time.sleep(pause)
        session.sock.setblocking(False)
        try:
            answer = session.sock.recv(200)
        except BlockingIOError:
            continue
        finally:
            session.sock.setblocking(True)
        return answer
    return b""


def test_a_slow_client_meets_the_idle_timeout(alias: Alias) -> None:
    """One byte every 0.1 s and never a line end, in a command and in DATA: the timeout
    counts from the last whole line."""
    with RunningServer(test_options(idle_timeout=0.5)) as slow, queue_grows_by([]):
        in_command = Session(slow)
        in_command.send(b"EHLO client.test\r\n")
        assert [in_command.reply(), in_command.reply()][1] is not None
        in_data = session_to(slow, alias)
        for session, data in ((in_command, b"MAIL FROM:<a@sender.test>"),
                              (in_data, b"From: a@sender.test\r\n\r\na body that never ends")):
            session.buffer = trickle(session, data)
            assert session.reply() == (421, ["4.4.2 Timeout exceeded, closing connection"])
            assert session.reply() is None
            session.close()


def test_help_is_answered_214(server: RunningServer) -> None:
    """RFC 5321 4.3.2: aiosmtpd answered HELP with 250, which the fuzzer caught."""
    session = Session(server)
    session.send(b"HELP\r\nHELP MAIL\r\nQUIT\r\n")
    replies = [session.reply() for _ in range(4)]
    session.close()
    assert [r and r[0] for r in replies] == [220, 214, 214, 221]
    assert replies[1] is not None and replies[1][1][0].startswith("2.0.0 Commands: DATA EHLO")


def test_what_clients_send_stays_out_of_the_log(server: RunningServer, alias: Alias,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """aiosmtpd warned "unrecognised: WORD" with the client's word: after a smuggled line
    end, that word is message text."""
    caplog.set_level(logging.DEBUG)
    session = session_to(server, alias)
    session.send(b"From: a@sender.test\r\n\r\nsecret\n.\nWalrusBanana words\r\n.\r\n"
                 b"WalrusBanana again\r\nQUIT\r\n")
    session.drain()
    session.close()
    logged = "\n".join(f"{r.getMessage()} {getattr(r, 'mailcloak_fields', '')}"
                       for r in caplog.records)
    assert "walrusbanana" not in logged.lower() and "secret" not in logged
    assert "message refused" in logged  # the log was captured: our own line is there


def test_a_failure_during_data_ends_the_transaction(alias: Alias,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected error while checking a message (a library failing on hostile input) is
    a 451, and the next MAIL starts afresh: it met "503 nested MAIL", and the next message
    went out with the failed one's sender and recipients."""
    checked: list[str] = []

    async def failing_once(raw: bytes, **kwargs: object) -> object:
        checked.append(str(kwargs["mail_from"]))
        if len(checked) == 1:
            raise IndexError("a library bug")
        return await real_analyse(raw, **kwargs)

    real_analyse = smtpd.analyse
    monkeypatch.setattr(smtpd, "analyse", failing_once)
    with RunningServer() as running:
        session = Session(running)
        session.send(b"EHLO client.test\r\n")
        for sender in (b"first@sender.test", b"second@sender.test"):
            session.send(b"MAIL FROM:<" + sender + b">\r\n"
                         + f"RCPT TO:<{alias.address}>\r\nDATA\r\n".encode()
                         + b"From: " + sender + b"\r\n\r\nbody\r\n.\r\n")
        session.send(b"QUIT\r\n")
        codes = [reply[0] for reply in iter(session.reply, None)]
        session.close()
    assert codes == [220, 250, 250, 250, 354, 451, 250, 250, 354, 250, 221]
    assert checked == ["first@sender.test", "second@sender.test"]
    assert QueuedMessage.objects.get().mail_from.startswith("bounce+")


def test_a_client_that_half_closes_after_its_message_gets_the_reply(
        alias: Alias, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the one-write fuzzing: aiosmtpd ended the session at the client's FIN, even
    while the message was being stored, so it was queued but its 250 never sent (the client
    would send it again). Storing is slowed down here so that the FIN always comes first."""
    real_store = intake.store

    def slow_store(message: intake.InboundMessage) -> intake.Outcome:
        time.sleep(0.3)
        return real_store(message)

    monkeypatch.setattr(intake, "store", slow_store)
    with RunningServer() as running:
        session = session_to(running, alias)
        with queue_grows_by(session.queued):
            session.send(b"From: a@sender.test\r\n\r\nbody\r\n.\r\nQUIT\r\n")
            session.sock.shutdown(socket.SHUT_WR)
            codes = [reply[0] for reply in iter(session.reply, None)]
            session.close()
    assert codes == [250]  # then the session ends: the client has closed its side
    assert len(session.queued) == 1
