"""Storing held mail: metadata, encryption at rest, keys and their rotation, rejection log,
the outbound "not sent" notice, and the caller's transaction."""

from __future__ import annotations

import base64
import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import connection, transaction
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.aliases.models import Alias
from mailcloak.cli import main
from mailcloak.mail.spam.verdict import Direction
from mailcloak.quarantine import crypto
from mailcloak.quarantine.crypto import Keyring, QuarantineKeyError
from mailcloak.quarantine.models import QuarantinedMessage, RejectionLog
from mailcloak.quarantine.store import (
    log_rejection,
    message_bytes,
    reseal_with_current_key,
    summarise,
)
from tests.support.quarantine import hold, spam_message

KEY_A = base64.b64encode(b"A" * 32).decode()
KEY_B = base64.urlsafe_b64encode(b"\xfb" * 32).decode()


def use_keys(monkeypatch: pytest.MonkeyPatch, current: str, old: str = "") -> None:
    monkeypatch.setenv("MAILCLOAK_QUARANTINE_KEY", current)
    monkeypatch.setenv("MAILCLOAK_QUARANTINE_OLD_KEYS", old)
    mailcloak_settings.reset()


def stored_column(held: QuarantinedMessage) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute("SELECT content FROM quarantine_quarantinedmessage WHERE id = %s",
                       [held.pk])
        return bytes(cursor.fetchone()[0])


def test_metadata_is_stored_and_the_alias_counts_it(
        alias: Alias, django_capture_on_commit_callbacks: Any) -> None:
    raw = spam_message(subject="=?utf-8?q?Gl=C3=BCck?= for you", attachment=b"MZ...")
    before = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):  # the count, added after commit
        held = hold(alias, raw, mail_from="<Bounce@Spam.Example>")
    held.refresh_from_db()
    assert held.user_id == alias.user_id
    assert held.direction == "inbound"
    assert held.mail_from == "bounce@spam.example"
    assert held.header_from == "Prize Team <win@spam.example>"
    assert held.sender_address == "win@spam.example"
    assert held.subject == "Glück for you"
    assert held.sent_at is not None and held.sent_at.year == 2026
    assert held.size == len(raw)
    assert held.score == 7.5 and held.action == "quarantine" and held.engine == "builtin"
    assert [r["code"] for r in held.reasons] == ["LINK_TEXT_MISMATCH", "SPF_FAIL", "BAYES_50"]
    assert held.authentication_results.startswith("mail.alias.test; spf=fail")
    days = mailcloak_settings.get().quarantine_days
    assert before + timedelta(days=days) <= held.expires_at <= timezone.now() + timedelta(days=days)
    assert message_bytes(held) == raw
    alias.refresh_from_db()
    assert alias.blocked_count == 1


def test_retention_follows_the_setting(monkeypatch: pytest.MonkeyPatch, alias: Alias) -> None:
    monkeypatch.setenv("MAILCLOAK_QUARANTINE_DAYS", "2")
    mailcloak_settings.reset()
    held = hold(alias)
    assert timedelta(days=1, hours=23) < held.expires_at - timezone.now() <= timedelta(days=2)


def test_the_database_holds_no_readable_content(alias: Alias) -> None:
    raw = spam_message(subject="Secret subject line 4711", text="The body says swordfish 0815.")
    held = hold(alias, raw)
    column = stored_column(held)
    assert column != raw
    for plaintext in (b"Secret subject line 4711", b"swordfish 0815", b"win@spam.example",
                      b"Content-Type"):
        assert plaintext not in column
    assert column[0] == 1 and column[1:5].hex() == held.key_id
    assert message_bytes(held) == raw


def test_sealing_twice_gives_different_ciphertext() -> None:
    ring = Keyring(b"k" * 32)
    assert ring.seal(b"same") != ring.seal(b"same")
    assert ring.open(ring.seal(b"same")) == b"same"


def test_damaged_ciphertext_is_refused() -> None:
    ring = Keyring(b"k" * 32)
    sealed = bytearray(ring.seal(b"message"))
    sealed[-1] ^= 1
    with pytest.raises(QuarantineKeyError, match="damaged"):
        ring.open(bytes(sealed))
    with pytest.raises(QuarantineKeyError, match="unknown format"):
        ring.open(b"\x02" + bytes(sealed[1:]))


def test_generated_key_file_is_private_and_reused(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_DATA_DIR", str(tmp_path))
    mailcloak_settings.reset()
    first = crypto.keyring()
    path = tmp_path / "quarantine.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text())) == 32
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary
    mailcloak_settings.reset()
    assert crypto.keyring().current == first.current


def test_a_broken_key_file_is_a_clear_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "quarantine.key").write_text("not base64 at all!\n")
    with pytest.raises(mailcloak_settings.ConfigError, match="MAILCLOAK_QUARANTINE_KEY"):
        crypto.stored_key(tmp_path)


@pytest.mark.parametrize("value", ["short", base64.b64encode(b"x" * 16).decode(), "!!!!"])
def test_a_bad_configured_key_names_the_setting(value: str) -> None:
    with pytest.raises(mailcloak_settings.ConfigError, match="MAILCLOAK_QUARANTINE_KEY"):
        mailcloak_settings.load({"MAILCLOAK_QUARANTINE_KEY": value}, create_secret=False)


def test_rotation_old_keys_still_open_and_rekey_moves_everything(
        monkeypatch: pytest.MonkeyPatch, alias: Alias) -> None:
    use_keys(monkeypatch, KEY_A)
    raw = spam_message()
    held = hold(alias, raw)
    old_id = held.key_id

    use_keys(monkeypatch, KEY_B)  # rotated without keeping the old key: unreadable, clearly
    with pytest.raises(QuarantineKeyError, match=f"quarantine key {old_id}"):
        message_bytes(held)

    use_keys(monkeypatch, KEY_B, old=KEY_A)
    assert message_bytes(held) == raw
    newer = hold(alias)
    assert newer.key_id != old_id

    assert reseal_with_current_key() == 1
    held.refresh_from_db()
    assert held.key_id == newer.key_id
    use_keys(monkeypatch, KEY_B)  # the old key can go now
    assert message_bytes(held) == raw
    assert reseal_with_current_key() == 0


def test_settings_command_does_not_print_keys(monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    use_keys(monkeypatch, KEY_A, old=KEY_B)
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "MAILCLOAK_QUARANTINE_KEY=(set)" in out
    assert KEY_A not in out and KEY_B not in out and "AAAA" not in out


def test_stored_in_the_callers_transaction(alias: Alias) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        hold(alias)
        assert QuarantinedMessage.objects.count() == 1
        raise RuntimeError("the SMTP server's commit failed")
    assert not QuarantinedMessage.objects.exists()
    alias.refresh_from_db()
    assert alias.blocked_count == 0


def test_outbound_spam_gets_an_immediate_not_sent_notice(alias: Alias,
                                                         mailoutbox: list[EmailMessage]) -> None:
    held = hold(alias, spam_message(subject="Visit https://evil.example now"),
                direction=Direction.OUTBOUND, mail_from=alias.address)
    [notice] = mailoutbox
    assert notice.to == [alias.user.email]
    assert notice.subject == "[Mailcloak] Your message was not sent"
    assert alias.address in notice.body
    assert "https[:]//evil.example" in notice.body  # the subject is shown, its link defanged
    assert "&lt;" not in notice.body and "&#x27;" not in notice.body  # plain text, not HTML
    held.refresh_from_db()
    assert held.notified_at is not None


def test_inbound_mail_sends_nothing_at_once(alias: Alias, mailoutbox: list[EmailMessage]) -> None:
    hold(alias)
    assert mailoutbox == []


def test_rejection_log_keeps_metadata_only(alias: Alias) -> None:
    log_rejection(alias=alias, mail_from="<x@spam.example>",
                  header_from="=?utf-8?q?B=C3=B6se?= <x@spam.example>",
                  subject="Buy\r\nBcc: everyone", reason="550 5.7.1 spam score 14.2")
    entry = RejectionLog.objects.get()
    assert entry.user_id == alias.user_id
    assert entry.mail_from == "x@spam.example"
    assert entry.header_from == "Böse <x@spam.example>"
    assert entry.subject == "Buy Bcc: everyone"
    assert entry.reason == "550 5.7.1 spam score 14.2"
    assert entry.expires_at > timezone.now() + timedelta(days=6)
    assert {f.name for f in RejectionLog._meta.fields}.isdisjoint({"content", "body", "raw"})


@pytest.mark.parametrize("raw", [
    b"", b"\r\n\r\nbody only", b"From: \xff\xfe broken\r\nSubject: =?bogus?q?x?=\r\n\r\n",
    b"Subject: " + b"x" * 5000 + b"\r\nDate: not a date\r\n\r\n",
    b"Date: Tue, 03 Feb 2026 10:00:00 -0000\r\nFrom: a@b.example, c@d.example\r\n\r\n",
])
def test_summaries_of_broken_mail_never_raise(raw: bytes) -> None:
    summary = summarise(raw)
    assert len(summary.subject) <= 998
    assert "\n" not in summary.subject and "\r" not in summary.header_from


def test_deleting_the_alias_deletes_its_held_mail(alias: Alias) -> None:
    hold(alias)
    Alias.objects.filter(pk=alias.pk).delete()
    assert not QuarantinedMessage.objects.exists()


def test_key_file_race_leaves_one_key(tmp_path: Path) -> None:
    # Two processes creating the key at once: the second link fails and it reads the first.
    crypto._create_key_file(tmp_path / "quarantine.key")
    first = (tmp_path / "quarantine.key").read_text()
    crypto._create_key_file(tmp_path / "quarantine.key")
    assert (tmp_path / "quarantine.key").read_text() == first
    assert sorted(os.listdir(tmp_path)) == ["quarantine.key"]
