"""Logs without surveillance: one format for every process, queue ids, decisions and reply codes
on every mail line, no message content, and no full address unless the operator asks."""

from __future__ import annotations

import io
import json
import logging
import smtplib
import sys
from collections.abc import Iterator

import pytest

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.mail.models import QueuedMessage
from mailcloak.observability.logsetup import (
    JsonFormatter,
    KeyValueFormatter,
    configure_logging,
    fields,
    logging_config,
)
from mailcloak.observability.redaction import hash_address, redact_address, scrub_addresses
from mailcloak.services import web_config
from tests.support.smtp_client import RunningServer

KEY = b"k" * 32
BODY_SECRET = "walrus-banana"
SUBJECT_SECRET = "tangerine-umbrella"
MESSAGE = (f"From: Sender Name <sender@sender.test>\r\nTo: someone\r\n"
           f"Subject: {SUBJECT_SECRET}\r\nMessage-ID: <m1@sender.test>\r\n\r\n"
           f"The body: {BODY_SECRET}.\r\n").encode()


def log_record(message: str, args: tuple[object, ...], values: dict[str, object]
               ) -> logging.LogRecord:
    made = logging.LogRecord("mailcloak.test", logging.INFO, __file__, 1, message, args, None)
    for name, value in fields(**values).items():
        setattr(made, name, value)
    return made


# --- redaction ------------------------------------------------------------------------------


def test_an_address_is_a_keyed_hash_of_its_local_part_and_its_domain() -> None:
    redacted = redact_address("Jane.Doe@Example.ORG", KEY)
    assert redacted.endswith("]@example.org") and "jane" not in redacted.lower()
    assert redacted == redact_address("Jane.Doe@Example.ORG", KEY)  # lines can be matched up
    assert redacted != redact_address("john@example.org", KEY)
    assert redacted != redact_address("Jane.Doe@Example.ORG", b"another key" * 3)
    assert redact_address("", KEY) == redact_address("<>", KEY) == "<>"


def test_log_addresses_setting_logs_them_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_LOG_ADDRESSES", "1")
    mailcloak_settings.reset()
    assert redact_address("jane@example.org", KEY) == "jane@example.org"
    text = "550 <jane@example.org> unknown"
    assert scrub_addresses(text, KEY) == text
    assert hash_address("jane@example.org", KEY) != "jane@example.org"  # explicit hashing


def test_addresses_in_free_text_are_redacted_once() -> None:
    text = "mx.example[192.0.2.1] said: 550 5.1.1 <bob.smith+tag@example.net>: no such user"
    scrubbed = scrub_addresses(text, KEY)
    assert "bob.smith" not in scrubbed and "@example.net>: no such user" in scrubbed
    assert scrubbed.startswith("mx.example[192.0.2.1] said: 550 5.1.1 <[")
    assert scrub_addresses(scrubbed, KEY) == scrubbed  # a redacted address is no address
    assert "jürgen" not in scrub_addresses("from jürgen@example.de", KEY)  # SMTPUTF8
    assert "leser" not in scrub_addresses("to leser@bücher.example", KEY)  # IDN
    assert scrub_addresses("no address here", KEY) == "no address here"


# --- formats --------------------------------------------------------------------------------


def test_key_value_lines_quote_what_needs_quoting() -> None:
    line = KeyValueFormatter().format(log_record(
        "message %s", ("accepted",), {"queue_id": "AB12", "reply": 250, "status": "2.0.0",
                                       "reason": 'say "hi"\nbye', "tls": True}))
    assert line.startswith("time=") and " level=info logger=mailcloak.test " in line
    assert ' msg="message accepted" queue_id=AB12 reply=250 status=2.0.0 ' in line
    assert line.endswith(' reason="say \\"hi\\"\\nbye" tls=true')
    assert "\n" not in line


def test_json_lines_carry_the_fields_and_scrub_addresses() -> None:
    made = log_record("delivery bounced for %s", ("jane@example.org",),
                        {"queue_id": "AB12", "decision": "bounce",
                         "reason": "550 <jane@example.org> unknown", "msg": "clash"})
    try:
        raise ValueError("could not reach jane@example.org")
    except ValueError:
        made.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(made))
    assert parsed["queue_id"] == "AB12" and parsed["decision"] == "bounce"
    assert parsed["level"] == "info" and parsed["logger"] == "mailcloak.test"
    assert parsed["field_msg"] == "clash"  # a field never overwrites the line's own keys
    assert "jane" not in json.dumps(parsed)
    assert parsed["msg"].startswith("delivery bounced for [")
    assert "ValueError: could not reach [" in parsed["exc"]


def test_the_format_setting_chooses_the_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    assert logging_config(mailcloak_settings.get())["formatters"]["mailcloak"]["()"].endswith(
        "KeyValueFormatter")
    monkeypatch.setenv("MAILCLOAK_LOG_FORMAT", "json")
    mailcloak_settings.reset()
    assert logging_config(mailcloak_settings.get())["formatters"]["mailcloak"]["()"].endswith(
        "JsonFormatter")
    monkeypatch.setenv("MAILCLOAK_LOG_FORMAT", "xml")
    mailcloak_settings.reset()
    with pytest.raises(mailcloak_settings.ConfigError, match="MAILCLOAK_LOG_FORMAT"):
        mailcloak_settings.get()


def test_the_web_server_logs_through_the_same_setup() -> None:
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    for name in names:
        logging.getLogger(name).handlers.clear()
    web_config()
    assert all(not logging.getLogger(name).handlers for name in names)
    assert logging.getLogger("uvicorn.error").propagate


# --- a whole SMTP session through the server ------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What the configured handler writes, as an operator's log would hold it. Tests change
    the settings first: the handler is set up when the test asks for `capture(log_output)`."""
    output = io.StringIO()
    yield output
    mailcloak_settings.reset()
    configure_logging(mailcloak_settings.get())


def capture(output: io.StringIO) -> None:
    configure_logging(mailcloak_settings.get())
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(output)


def send_through_server(alias: Alias) -> None:
    with RunningServer() as server, smtplib.SMTP(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail("sender@sender.test")
        assert client.rcpt("nobody@alias.test")[0] == 550
        assert client.rcpt(alias.address)[0] == 250
        assert client.data(MESSAGE)[0] == 250


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("lenient_spam_thresholds")
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_session_logs_decisions_without_content_or_addresses(
        alias: Alias, log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch,
        log_format: str) -> None:
    monkeypatch.setenv("MAILCLOAK_LOG_FORMAT", log_format)
    mailcloak_settings.reset()
    capture(log_output)
    send_through_server(alias)
    text = log_output.getvalue()
    queue_id = QueuedMessage.objects.get().queue_id
    for secret in (BODY_SECRET, SUBJECT_SECRET, "Sender Name", "sender@", "nobody@",
                   alias.address, alias.mailbox.email, "owner@"):
        assert secret not in text
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        message = next(line for line in lines if line["msg"] == "message accepted")
        refused = next(line for line in lines if line["msg"] == "recipient refused")
        assert (message["queue_id"], message["decision"], message["reply"],
                message["status"]) == (queue_id, "forward", 250, "2.0.0")
        assert message["sender"] == redact_address("sender@sender.test")
        assert (refused["queue_id"], refused["reply"], refused["status"]) == (
            queue_id, 550, "5.1.1")
    else:
        assert (f'msg="message accepted" queue_id={queue_id} decision=forward reply=250 '
                "status=2.0.0 ") in text
        assert (f'msg="recipient refused" queue_id={queue_id} decision=refuse-recipient '
                "reply=550 status=5.1.1 ") in text


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("lenient_spam_thresholds")
def test_full_addresses_are_logged_only_when_asked(
        alias: Alias, log_output: io.StringIO, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_LOG_ADDRESSES", "true")
    mailcloak_settings.reset()
    capture(log_output)
    send_through_server(alias)
    text = log_output.getvalue()
    assert "sender=sender@sender.test " in text and "recipient=nobody@alias.test" in text
    assert BODY_SECRET not in text and SUBJECT_SECRET not in text
