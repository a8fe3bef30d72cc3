"""The SMTP server end to end: a real server on loopback, smtplib and raw sockets as clients."""

import logging
import smtplib
import threading
import time

import pytest
from django.db import OperationalError

from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import block_sender, delete_alias
from mailcloak.mail import intake
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage
from mailcloak.mail.verp import make_bounce_address
from tests.support.smtp_client import RawClient, RunningServer, test_options

pytestmark = [pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("lenient_spam_thresholds")]

MESSAGE = (b"From: Sender Name <sender@sender.test>\r\n"
           b"To: someone\r\n"
           b"Subject: hello\r\n"
           b"Message-ID: <m1@sender.test>\r\n"
           b"\r\n"
           b"The body, with a secret phrase: walrus-banana.\r\n")


@pytest.fixture
def server():
    with RunningServer() as running:
        yield running


@pytest.fixture
def client(server):
    with smtplib.SMTP(server.host, server.port, local_hostname="client.test") as smtp:
        smtp.ehlo()
        yield smtp


def transaction(client, recipients, content=MESSAGE, sender="sender@sender.test"):
    """MAIL, every RCPT, and DATA when a recipient was accepted: the replies as (code, text)."""
    answers = [client.mail(sender)]
    answers += [client.rcpt(rcpt) for rcpt in recipients]
    if any(code == 250 for code, _ in answers[1:]):
        answers.append(client.data(content))
    else:
        client.rset()
    return [(code, text.decode()) for code, text in answers]


# --- session -----------------------------------------------------------------------------


def test_greeting_and_extensions(server):
    with RawClient(server.host, server.port) as raw:
        assert raw.reply() == "220 mail.alias.test ESMTP"
        lines = raw.command("EHLO client.test").splitlines()
    assert lines[0] == "250-mail.alias.test"
    assert [line[4:] for line in lines[1:]] == [
        f"SIZE {server.options.max_message_size}", "8BITMIME", "SMTPUTF8", "PIPELINING",
        "ENHANCEDSTATUSCODES", "STARTTLS"]
    assert lines[-1].startswith("250 ")


def test_every_reply_has_an_enhanced_status_code(server):
    with RawClient(server.host, server.port) as raw:
        raw.reply()
        assert raw.command("HELO client.test") == "250 mail.alias.test"
        assert raw.command("NOOP") == "250 2.0.0 OK"
        assert raw.command("RCPT TO:<a@alias.test>").startswith("503 5.5.1 ")
        assert raw.command("DATA").startswith("503 5.5.1 ")
        assert raw.command("BOGUS").startswith("500 5.5.2 ")
        assert raw.command("AUTH PLAIN AGFAYg==").startswith("500 5.5.2 ")  # no AUTH here
        assert raw.command("VRFY someone@alias.test").startswith("252 2.0.0 ")
        assert raw.command("EXPN list").startswith("502 5.5.1 ")
        assert raw.command("QUIT") == "221 2.0.0 Bye"


def test_mail_needs_helo_and_rejects_nesting(server):
    with RawClient(server.host, server.port) as raw:
        raw.reply()
        assert raw.command("MAIL FROM:<a@sender.test>").startswith("503 5.5.1 ")
        raw.command("EHLO client.test")
        assert raw.command("MAIL FROM:<a@sender.test>") == "250 2.1.0 Sender ok"
        assert raw.command("MAIL FROM:<a@sender.test>").startswith("503 5.5.1 ")


def test_sender_syntax_and_null_sender(client):
    assert client.mail("<not an address>")[0] == 501
    assert client.mail("<>") == (250, b"2.1.0 Sender ok")


# --- RCPT decisions ------------------------------------------------------------------------


def test_message_to_an_alias_is_queued_for_the_owner(client, alias):
    answers = transaction(client, [alias.address.upper()])
    assert answers[1] == (250, "2.1.5 Recipient ok")
    code, text = answers[2]
    assert code == 250 and text.startswith("2.0.0 Ok: queued as ")
    queued = QueuedMessage.objects.get()
    assert text.endswith(queued.queue_id)
    assert queued.kind == QueuedMessage.Kind.FORWARD and queued.alias == alias
    assert queued.mail_from.startswith("bounce+") and queued.mail_from.endswith("@alias.test")
    assert bytes(queued.content).endswith(b"\r\n\r\nThe body, with a secret phrase: "
                                          b"walrus-banana.\r\n")
    assert list(queued.jobs.values_list("recipient", flat=True)) == ["owner@mailbox.test"]
    alias.refresh_from_db()
    assert alias.forwarded_count == 1


@pytest.mark.parametrize(
    ("recipient", "code", "status"),
    [
        ("nobody@alias.test", 550, "5.1.1"),
        ("nobody@second.test", 550, "5.1.1"),
        ("someone@elsewhere.test", 554, "5.7.1"),
        ("someone@[127.0.0.1]", 554, "5.7.1"),
        ("someone@elsewhere.test.", 554, "5.7.1"),
        ("<@alias.test:someone@elsewhere.test>", 554, "5.7.1"),
        ("someone%elsewhere.test@alias.test", 550, "5.1.1"),
        ("elsewhere.test!someone@alias.test", 550, "5.1.1"),
        ('"someone@elsewhere.test"@alias.test', 550, "5.1.1"),
        ('"someone%elsewhere.test"@alias.test', 550, "5.1.1"),
        ("elsewhere.test!someone", 501, "5.1.3"),
        ("<>", 501, "5.1.3"),
        ("someone@@elsewhere.test", 501, "5.1.3"),
    ],
)
def test_refused_recipients_queue_nothing(client, alias, recipient, code, status):
    path = recipient if recipient.startswith("<") else f"<{recipient}>"
    answer = client.docmd("RCPT TO:" + path) if client.mail("a@sender.test") else None
    assert answer is not None
    assert answer[0] == code and answer[1].decode().startswith(status)
    assert client.docmd("DATA") == (554, b"5.5.1 No valid recipients")
    assert not QueuedMessage.objects.exists()


def test_non_ascii_recipient_needs_smtputf8(server, alias):
    with RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.command("EHLO client.test")
        raw.command("MAIL FROM:<a@sender.test>")
        assert raw.command("RCPT TO:<josé@alias.test>").startswith("553 5.6.7 ")
        raw.command("RSET")
        raw.command("MAIL FROM:<josé@sender.test> SMTPUTF8")
        assert raw.command("RCPT TO:<josé@alias.test>").startswith("550 5.1.1 ")
        assert raw.command("RCPT TO:<josé@bücher.test>").startswith("554 5.7.1 ")


def test_deleted_alias_is_unknown(client, alias):
    address = alias.address
    delete_alias(alias)
    assert transaction(client, [address])[1][0] == 550


def test_disabled_alias_rejects(client, alias):
    Alias.objects.filter(pk=alias.pk).update(enabled=False)
    assert transaction(client, [alias.address])[1] == (550, "5.1.1 No such recipient here")


def test_disabled_alias_set_to_drop_accepts_and_queues_nothing(client, alias):
    Alias.objects.filter(pk=alias.pk).update(enabled=False,
                                             disabled_action=Alias.DisabledAction.DROP)
    answers = transaction(client, [alias.address])
    assert answers[1][0] == 250
    assert answers[2][0] == 250 and "queued as" in answers[2][1]
    assert not QueuedMessage.objects.exists()


def test_blocked_sender_is_refused_and_counted(client, user, alias):
    block_sender(user, "sender.test")
    answers = transaction(client, [alias.address])
    assert answers[1] == (550, "5.7.1 The recipient does not accept mail from this sender")
    assert not QueuedMessage.objects.exists()
    alias.refresh_from_db()
    assert alias.blocked_count == 1


def test_reverse_alias_refuses_mail_not_from_its_owner(client, alias):
    from mailcloak.mail.contacts import contact_for

    contact = contact_for(alias, "friend@sender.test", "Friend")
    answer = transaction(client, [contact.reverse_address])[1]
    assert answer == (550, "5.7.1 Only the alias owner's verified mailbox may send through "
                      "this address")


DSN = (b"From: MAILER-DAEMON@mx.elsewhere.test\r\n"
       b"To: bounce\r\n"
       b"Subject: Undelivered Mail Returned to Sender\r\n"
       b"MIME-Version: 1.0\r\n"
       b'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
       b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
       b"--B\r\nContent-Type: message/delivery-status\r\n\r\n"
       b"Reporting-MTA: dns; mx.elsewhere.test\r\n\r\n"
       b"Final-Recipient: rfc822; owner@mailbox.test\r\nAction: failed\r\nStatus: 5.1.1\r\n"
       b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
       b"\r\n--B--\r\n")


def test_bounce_to_a_verp_address_is_recorded(client, alias):
    address = make_bounce_address(alias.domain.name, alias_id=alias.pk, queue_id="AB12CD34")
    answers = transaction(client, [address], content=DSN, sender="<>")
    assert answers[1][0] == 250 and answers[2][0] == 250
    bounce = Bounce.objects.get()
    assert bounce.alias == alias and bounce.source == Bounce.Source.DSN
    assert not QueuedMessage.objects.exists()


def test_too_many_recipients():
    with RunningServer(test_options(max_recipients=2)) as server, \
            smtplib.SMTP(server.host, server.port) as client:
        client.ehlo()
        answers = transaction(client, ["nobody@alias.test", "a@elsewhere.test",
                                       "b@elsewhere.test"])
        assert [code for code, _ in answers[1:]] == [550, 554, 554]  # refusals do not count
        client.mail("a@sender.test")
        assert client.rcpt("a@alias.test")[0] == 550
        client.rset()


def test_too_many_accepted_recipients(user):
    from mailcloak.aliases.services import create_alias

    aliases = [create_alias(user) for _ in range(3)]
    with RunningServer(test_options(max_recipients=2)) as server, \
            smtplib.SMTP(server.host, server.port) as client:
        client.ehlo()
        answers = transaction(client, [a.address for a in aliases])
    assert answers[3] == (452, "4.5.3 Too many recipients")
    assert answers[4][0] == 250
    assert QueuedMessage.objects.count() == 2
    assert {m.alias_id for m in QueuedMessage.objects.all()} == {a.pk for a in aliases[:2]}


# --- DATA outcomes ---------------------------------------------------------------------------


def test_one_copy_per_alias_and_duplicates_ignored(client, user, alias):
    from mailcloak.aliases.services import create_alias

    second = create_alias(user)
    answers = transaction(client, [alias.address, second.address, alias.address.upper()])
    assert [code for code, _ in answers] == [250, 250, 250, 250, 250]
    assert QueuedMessage.objects.count() == 2
    assert DeliveryJob.objects.count() == 2
    announced = answers[-1][1].rsplit(" ", 1)[1]
    assert QueuedMessage.objects.filter(queue_id=announced).exists()


def test_unparseable_message_is_refused(client, alias):
    answers = transaction(client, [alias.address], content=b"\x00\x01\x02 no header\r\n")
    assert answers[2] == (554, "5.6.0 Message could not be parsed")
    assert not QueuedMessage.objects.exists()


def test_storage_failure_is_temporary_and_stores_nothing(client, user, alias, monkeypatch):
    from mailcloak.aliases.services import create_alias

    second = create_alias(user)
    real_enqueue = intake.enqueue
    calls = []

    def failing_enqueue(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise OperationalError("database is locked")
        return real_enqueue(**kwargs)

    monkeypatch.setattr(intake, "enqueue", failing_enqueue)
    answers = transaction(client, [alias.address, second.address])
    assert answers[3] == (451, "4.3.0 Storage temporarily unavailable, try again later")
    assert len(calls) == 2
    assert not QueuedMessage.objects.exists()  # the first copy was rolled back with it
    alias.refresh_from_db()
    assert alias.forwarded_count == 0


def test_unexpected_error_is_temporary(client, alias, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(intake, "prepare_forward", broken)
    assert transaction(client, [alias.address])[2][0] == 451
    assert not QueuedMessage.objects.exists()


def test_database_failure_at_rcpt_is_temporary(client, alias, monkeypatch):
    from mailcloak.mail import policy

    def unavailable(*args):
        raise OperationalError("server closed the connection")

    monkeypatch.setattr(policy, "decide", unavailable)
    assert transaction(client, [alias.address])[1] == (
        451, "4.3.0 Storage temporarily unavailable, try again later")


def test_several_messages_in_one_session(client, alias):
    for _ in range(3):
        assert transaction(client, [alias.address])[-1][0] == 250
    assert client.noop()[0] == 250
    assert QueuedMessage.objects.count() == 3


def test_pipelined_commands_after_data_are_commands(server, alias):
    with RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.command("EHLO client.test")
        raw.send(f"MAIL FROM:<a@sender.test>\r\nRCPT TO:<{alias.address}>\r\nDATA\r\n".encode())
        assert [r[:3] for r in raw.replies(3)] == ["250", "250", "354"]
        raw.send(MESSAGE + b".\r\nMAIL FROM:<b@sender.test>\r\n"
                 + f"RCPT TO:<{alias.address}>\r\nDATA\r\n".encode())
        assert [r[:3] for r in raw.replies(4)] == ["250", "250", "250", "354"]
        raw.send(MESSAGE + b".\r\nQUIT\r\n")
        assert [r[:3] for r in raw.replies(2)] == ["250", "221"]
    assert QueuedMessage.objects.count() == 2


# --- limits ----------------------------------------------------------------------------------


def test_size_parameter_over_the_limit():
    with RunningServer(test_options(max_message_size=1000)) as server, \
            RawClient(server.host, server.port) as raw:
        raw.reply()
        assert "250-SIZE 1000" in raw.command("EHLO client.test")
        assert raw.command("MAIL FROM:<a@sender.test> SIZE=1001") == (
            "552 5.3.4 Message size exceeds fixed maximum message size")
        assert raw.command("MAIL FROM:<a@sender.test> SIZE=1000").startswith("250 ")


def test_actual_size_over_the_limit(alias):
    with RunningServer(test_options(max_message_size=1000)) as server, \
            smtplib.SMTP(server.host, server.port) as client:
        client.ehlo()
        answers = transaction(client, [alias.address], content=MESSAGE + b"x" * 1000 + b"\r\n")
        assert answers[2] == (552, "5.3.4 Message size exceeds fixed maximum message size")
        assert transaction(client, [alias.address])[2][0] == 250  # the session goes on
    assert QueuedMessage.objects.count() == 1


def test_connections_over_the_limit_are_refused(db):
    with RunningServer(test_options(max_connections=1)) as server, \
            RawClient(server.host, server.port) as first:
        assert first.reply().startswith("220 ")
        with RawClient(server.host, server.port) as second:
            assert second.reply() == "421 4.7.0 Too many connections, try again later"
            assert second.closed()
        first.command("QUIT")
        with RawClient(server.host, server.port) as third:
            assert third.reply().startswith("220 ")


def test_too_many_errors_close_the_session(db):
    with RunningServer(test_options(max_errors=3)) as server, \
            RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.command("EHLO client.test")
        raw.send(b"RCPT TO:<a@alias.test>\r\n" * 3 + b"NOOP\r\n")
        assert [r[:3] for r in raw.replies(3)] == ["503", "503", "503"]
        assert raw.reply() == "421 4.7.0 Too many errors, closing connection"
        assert raw.closed()  # the pipelined NOOP was never answered


def test_too_many_commands_close_the_session(db):
    with RunningServer(test_options(max_commands=5)) as server, \
            RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.send(b"NOOP\r\n" * 20)
        assert raw.replies(5) == ["250 2.0.0 OK"] * 5
        assert raw.reply() == "421 4.7.0 Too many commands, closing connection"
        assert raw.closed()


def test_command_limit_lets_a_transaction_finish(alias):
    with RunningServer(test_options(max_commands=5)) as server, \
            RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.command("EHLO client.test")
        raw.send(f"MAIL FROM:<a@sender.test>\r\nRCPT TO:<{alias.address}>\r\n".encode()
                 + b"NOOP\r\nNOOP\r\nDATA\r\n")
        assert [r[:3] for r in raw.replies(5)] == ["250", "250", "250", "250", "354"]
        raw.send(MESSAGE + b".\r\n")
        assert raw.reply().startswith("250 2.0.0 Ok: queued as ")
        assert raw.reply() == "421 4.7.0 Too many commands, closing connection"
    assert QueuedMessage.objects.count() == 1


def test_command_limit_is_hard_at_twice_the_limit(db):
    with RunningServer(test_options(max_commands=3)) as server, \
            RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.send(b"EHLO client.test\r\nMAIL FROM:<a@sender.test>\r\n" + b"NOOP\r\n" * 10)
        raw.reply()
        assert raw.replies(5) == ["250 2.1.0 Sender ok"] + ["250 2.0.0 OK"] * 4
        assert raw.reply() == "421 4.7.0 Too many commands, closing connection"


def test_too_many_recipients_are_not_errors(user):
    from mailcloak.aliases.services import create_alias

    target = create_alias(user).address
    with RunningServer(test_options(max_recipients=1, max_errors=3)) as server, \
            RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.command("EHLO client.test")
        raw.send(b"MAIL FROM:<a@sender.test>\r\n"
                 + f"RCPT TO:<{target}>\r\n".encode() * 6 + b"DATA\r\n")
        assert [r[:3] for r in raw.replies(8)] == ["250", "250"] + ["452"] * 5 + ["354"]
        raw.send(MESSAGE + b".\r\n")
        assert raw.reply().startswith("250 ")


def test_unrecognised_commands_close_the_session(server):
    with RawClient(server.host, server.port) as raw:
        raw.reply()
        raw.send(b"X1\r\nX2\r\nX3\r\nX4\r\nX5\r\n")
        assert [r[:3] for r in raw.replies(4)] == ["500"] * 4
        assert raw.reply() == "421 4.7.0 Too many errors, closing connection"


def test_idle_client_is_disconnected(db):
    with RunningServer(test_options(idle_timeout=0.3)) as server, \
            RawClient(server.host, server.port) as raw:
        raw.reply()
        assert raw.reply() == "421 4.4.2 Timeout exceeded, closing connection"
        assert raw.closed()


def test_stopping_closes_idle_sessions(db):
    server = RunningServer().__enter__()
    try:
        raw = RawClient(server.host, server.port)
        raw.reply()
    finally:
        server.__exit__(None, None, None)
    assert raw.reply() == "421 4.3.2 Service shutting down, try again later"
    raw.sock.close()


def test_stopping_lets_a_message_being_stored_get_its_reply(alias, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real_store = intake.store

    def slow_store(message):
        started.set()
        release.wait(10)
        return real_store(message)

    monkeypatch.setattr(intake, "store", slow_store)
    server = RunningServer().__enter__()
    stopper = threading.Thread(target=server.__exit__, args=(None, None, None))
    try:
        with RawClient(server.host, server.port) as raw:
            raw.reply()
            raw.command("EHLO client.test")
            raw.send(f"MAIL FROM:<a@sender.test>\r\nRCPT TO:<{alias.address}>\r\nDATA\r\n"
                     .encode())
            raw.replies(3)
            raw.send(MESSAGE + b".\r\n")
            assert started.wait(10)
            stopper.start()
            sessions = server.server.sessions.live
            while not all(session._shutdown_requested for session in sessions):
                time.sleep(0.01)
            release.set()
            assert raw.reply().startswith("250 2.0.0 Ok: queued as ")
            assert raw.reply() == "421 4.3.2 Service shutting down, try again later"
    finally:
        release.set()
        stopper.join(30)
    assert QueuedMessage.objects.count() == 1


# --- logs ------------------------------------------------------------------------------------


def test_one_log_line_per_message_without_content_or_addresses(client, alias, caplog):
    caplog.set_level(logging.DEBUG)
    transaction(client, [alias.address, "nobody@alias.test"])
    facts = [getattr(r, "mailcloak_fields", {}) for r in caplog.records]
    text = "\n".join([r.getMessage() for r in caplog.records] + [str(f) for f in facts])
    assert "walrus-banana" not in text and "hello" not in text
    assert alias.address.split("@")[0] not in text and "sender@" not in text
    assert "nobody@" not in text
    messages = [r for r in caplog.records if r.getMessage().startswith("message ")]
    queue_id = QueuedMessage.objects.get().queue_id
    assert len(messages) == 1
    logged = messages[0].mailcloak_fields
    assert (logged["queue_id"], logged["reply"], logged["status"]) == (queue_id, 250, "2.0.0")
    assert logged["recipients"] == 1 and logged["forwarded"] == 1
    assert {"decision": "refuse-recipient", "reply": 550, "status": "5.1.1"}.items() <= next(
        f for f in facts if f.get("decision") == "refuse-recipient").items()
