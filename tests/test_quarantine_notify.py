"""Digests (off / daily / immediately, never twice for the same mail) and the signed one-click
links in them: valid, expired, tampered, another user's; GET never acts, POST does, undo."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.core import signing
from django.core.mail import EmailMessage
from django.test import Client
from django.utils import timezone

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, BlockedSender
from mailcloak.aliases.services import create_alias
from mailcloak.mail.spam.verdict import Direction
from mailcloak.quarantine.links import SALT, LinkAction, make_token
from mailcloak.quarantine.models import Activity, QuarantinedMessage
from mailcloak.quarantine.notify import send_digests
from tests.support.quarantine import hold, spam_message

LINK = re.compile(r"http://127\.0\.0\.1:8000(/quarantine/link/[^/\s]+/)")


def links_in(message: EmailMessage) -> list[str]:
    return LINK.findall(str(message.body))


# --- digests -----------------------------------------------------------------------------------


def test_daily_digest_lists_held_mail_with_action_links(
        alias: Alias, mailoutbox: list[EmailMessage]) -> None:
    hold(alias, spam_message(subject="Claim at https://evil.example/x"))
    hold(alias, direction=Direction.OUTBOUND, mail_from=alias.address)  # has its own notice
    mailoutbox.clear()
    assert send_digests() == 1
    [digest] = mailoutbox
    assert digest.to == [alias.user.email]
    assert digest.subject == "[Mailcloak] 1 message held in your quarantine"
    assert "https[:]//evil.example/x" in digest.body and "https://evil.example" not in digest.body
    assert "Block bounce@spam.example:" in digest.body
    assert f"Disable {alias.address}:" in digest.body
    assert "http://127.0.0.1:8000/quarantine/" in digest.body
    assert len(links_in(digest)) == 2
    assert "&lt;" not in digest.body


def test_daily_means_at_most_once_a_day(alias: Alias, mailoutbox: list[EmailMessage]) -> None:
    start = timezone.now()
    hold(alias)
    assert send_digests(start) == 1
    assert send_digests(start) == 0  # nothing new
    hold(alias)
    assert send_digests(start + timedelta(hours=23)) == 0
    assert send_digests(start + timedelta(hours=24)) == 1
    assert len(mailoutbox) == 2
    assert QuarantinedMessage.objects.filter(notified_at__isnull=True).count() == 0


def test_immediately_sends_at_every_run_but_one_mail_per_run(
        user: User, alias: Alias, mailoutbox: list[EmailMessage]) -> None:
    User.objects.filter(pk=user.pk).update(quarantine_digest=User.Digest.IMMEDIATELY)
    for _ in range(3):
        hold(alias)
    assert send_digests() == 1
    hold(alias)
    assert send_digests() == 1
    assert [m.subject for m in mailoutbox] == ["[Mailcloak] 3 messages held in your quarantine",
                                               "[Mailcloak] 1 message held in your quarantine"]


def test_off_sends_nothing(user: User, alias: Alias, mailoutbox: list[EmailMessage]) -> None:
    User.objects.filter(pk=user.pk).update(quarantine_digest=User.Digest.OFF)
    hold(alias)
    assert send_digests() == 0
    assert mailoutbox == []


def test_a_big_digest_lists_some_and_counts_the_rest(
        alias: Alias, mailoutbox: list[EmailMessage]) -> None:
    for _ in range(33):
        hold(alias)
    send_digests()
    [digest] = mailoutbox
    assert "33 messages held" in digest.subject
    assert "And 3 more in your quarantine." in digest.body


def test_expired_mail_is_not_announced(alias: Alias, mailoutbox: list[EmailMessage]) -> None:
    held = hold(alias)
    assert send_digests(held.expires_at) == 0


def test_digests_are_per_user(alias: Alias, other_user: User,
                              mailoutbox: list[EmailMessage]) -> None:
    hold(alias)
    hold(create_alias(other_user), spam_message(subject="for the other user"))
    assert send_digests() == 2
    by_recipient = {m.to[0]: m.body for m in mailoutbox}
    assert "for the other user" in by_recipient[other_user.email]
    assert "for the other user" not in by_recipient[alias.user.email]


# --- action links ----------------------------------------------------------------------------


def link_for(held: QuarantinedMessage, action: LinkAction) -> str:
    return f"/quarantine/link/{make_token(held, action)}/"


def test_opening_a_link_changes_nothing(client: Client, alias: Alias) -> None:
    held = hold(alias)
    for action in LinkAction:
        response = client.get(link_for(held, action))
        assert response.status_code == 200
        assert response["Referrer-Policy"] == "no-referrer"
    assert not BlockedSender.objects.exists()
    alias.refresh_from_db()
    assert alias.enabled


def test_digest_block_link_works_without_login_and_can_be_undone(
        client: Client, alias: Alias, mailoutbox: list[EmailMessage]) -> None:
    hold(alias)
    send_digests()
    block_link, _ = links_in(mailoutbox[0])
    page = client.get(block_link).content.decode()
    assert "bounce@spam.example" in page and "Block" in page
    response = client.post(block_link, {"op": "block", "what": "domain", "scope": "all"})
    assert "Blocked spam.example for all your aliases." in response.content.decode()
    blocked = BlockedSender.objects.get()
    assert (blocked.value, blocked.alias_id) == ("spam.example", None)
    assert Activity.objects.get().via == "email"
    response = client.post(block_link, {"op": "undo", "object_id": blocked.pk})
    assert "Unblocked spam.example" in response.content.decode()
    assert not BlockedSender.objects.exists()


def test_disable_link_and_undo(client: Client, alias: Alias) -> None:
    link = link_for(hold(alias), LinkAction.DISABLE)
    client.post(link, {"op": "disable"})
    alias.refresh_from_db()
    assert not alias.enabled
    client.post(link, {"op": "undo"})
    alias.refresh_from_db()
    assert alias.enabled


def test_a_link_cannot_undo_someone_elses_block(client: Client, alias: Alias,
                                                other_user: User) -> None:
    link = link_for(hold(alias), LinkAction.BLOCK)
    theirs = BlockedSender.objects.create(user=other_user, kind="domain", value="spam.example")
    response = client.post(link, {"op": "undo", "object_id": theirs.pk})
    assert "That block no longer exists." in response.content.decode()
    assert BlockedSender.objects.filter(pk=theirs.pk).exists()


def test_an_expired_link_is_refused(client: Client, alias: Alias,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    held = hold(alias)
    link = link_for(held, LinkAction.DISABLE)
    later = timezone.now() + timedelta(days=9)
    monkeypatch.setattr("django.core.signing.time.time", lambda: later.timestamp())
    for method in ("get", "post"):
        response = getattr(client, method)(link, {"op": "disable"})
        assert response.status_code == 400
        assert "This link has expired." in response.content.decode()
    alias.refresh_from_db()
    assert alias.enabled


@pytest.mark.parametrize("tamper", [
    lambda token: token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
    lambda token: token.replace(":", "x", 1),
    lambda token: "not-a-token",
    lambda token: token + "x" * 500,
])
def test_a_tampered_link_is_refused(client: Client, alias: Alias,
                                    tamper: Callable[[str], str]) -> None:
    token = tamper(make_token(hold(alias), LinkAction.DISABLE))
    response = client.post(f"/quarantine/link/{token}/", {"op": "disable"})
    assert response.status_code == 400
    assert "This link is not valid." in response.content.decode()
    alias.refresh_from_db()
    assert alias.enabled


def test_a_token_signed_for_another_purpose_is_refused(client: Client, alias: Alias) -> None:
    held = hold(alias)
    token = signing.dumps([held.user_id, held.pk, "disable"], salt="some other salt")
    assert client.post(f"/quarantine/link/{token}/", {"op": "disable"}).status_code == 400
    ours = signing.dumps([held.user_id, held.pk, "delete-everything"], salt=SALT)
    assert client.post(f"/quarantine/link/{ours}/", {"op": "disable"}).status_code == 400
    alias.refresh_from_db()
    assert alias.enabled


def test_a_link_naming_another_user_finds_nothing(client: Client, alias: Alias,
                                                  other_user: User) -> None:
    held = hold(alias)
    forged = signing.dumps([other_user.pk, held.pk, "disable"], salt=SALT)
    response = client.post(f"/quarantine/link/{forged}/", {"op": "disable"})
    assert response.status_code == 404
    alias.refresh_from_db()
    assert alias.enabled


def test_a_link_to_a_deleted_message_says_so(client: Client, alias: Alias) -> None:
    held = hold(alias)
    link = link_for(held, LinkAction.BLOCK)
    held.delete()
    response = client.get(link)
    assert response.status_code == 404
    assert "no longer in the quarantine" in response.content.decode()


def test_link_pages_need_the_csrf_token(alias: Alias) -> None:
    client = Client(enforce_csrf_checks=True)
    link = link_for(hold(alias), LinkAction.DISABLE)
    assert client.post(link, {"op": "disable"}).status_code == 403
    alias.refresh_from_db()
    assert alias.enabled
