"""Mailboxes (add, verify by signed link, delete) and account settings and deletion."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from django.core import mail, signing
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox, User
from mailcloak.accounts.views import VERIFY_SALT, verification_token
from mailcloak.aliases.models import Alias, BlockedSender, Contact, DeletedAlias
from mailcloak.aliases.services import block_sender, create_alias
from tests.conftest import PASSWORD


@pytest.fixture(autouse=True)
def _no_cooldowns_from_other_tests(db: None) -> None:
    cache.clear()


def verify_path(message: mail.EmailMessage) -> str:
    match = re.search(r"https?://\S+", str(message.body))
    assert match
    assert match.group().startswith(mailcloak_settings.get().public_url + "/account/")
    return urlsplit(match.group()).path


def add_mailbox(client: Client, email: str) -> Mailbox:
    response = client.post("/account/mailboxes/", {"email": email})
    assert response.status_code == 302, response.content.decode()
    return Mailbox.objects.get(email=email.lower())


def test_added_mailbox_is_verified_by_its_emailed_link(
        logged_in: Client, user: User, mailoutbox: list[mail.EmailMessage]) -> None:
    mailbox = add_mailbox(logged_in, "Second@Mailbox.test")
    assert mailbox.user == user and not mailbox.is_verified
    assert [m.to for m in mailoutbox] == [["second@mailbox.test"]]
    path = verify_path(mailoutbox[0])

    confirm = logged_in.get(path)
    assert confirm.status_code == 200 and b"Verify second@mailbox.test" in confirm.content
    mailbox.refresh_from_db()
    assert not mailbox.is_verified

    assert logged_in.post(path).status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.is_verified


def test_verification_link_needs_its_owner_logged_in(
        client: Client, logged_in: Client, other_user: User,
        mailoutbox: list[mail.EmailMessage]) -> None:
    mailbox = add_mailbox(logged_in, "second@mailbox.test")
    path = verify_path(mailoutbox[0])
    intruder = Client()
    intruder.force_login(other_user)
    assert intruder.get(path).status_code == 404
    assert intruder.post(path).status_code == 404
    anonymous = Client()
    assert anonymous.post(path).status_code == 302  # to the login page
    mailbox.refresh_from_db()
    assert not mailbox.is_verified


def test_tampered_or_expired_links_verify_nothing(logged_in: Client, user: User,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mailbox = Mailbox.objects.create(user=user, email="second@mailbox.test")
    token = verification_token(mailbox)
    assert logged_in.post(f"/account/mailboxes/verify/{token}x/").status_code == 400

    four_days_ago = signing.b62_encode(int(time.time()) - 4 * 86400)
    with monkeypatch.context() as patch:
        patch.setattr(signing.TimestampSigner, "timestamp", lambda self: four_days_ago)
        old_token = verification_token(mailbox)
    expired = logged_in.post(f"/account/mailboxes/verify/{old_token}/")
    assert expired.status_code == 400 and b"expired" in expired.content
    mailbox.refresh_from_db()
    assert not mailbox.is_verified


def test_link_for_an_address_no_longer_there_is_404(logged_in: Client, user: User) -> None:
    mailbox = Mailbox.objects.create(user=user, email="second@mailbox.test")
    token = signing.dumps({"mailbox": mailbox.pk, "email": "other@mailbox.test"},
                          salt=VERIFY_SALT)
    assert logged_in.post(f"/account/mailboxes/verify/{token}/").status_code == 404


def test_address_verified_by_another_account_is_refused(logged_in: Client, user: User,
                                                        other_user: User) -> None:
    mailbox = Mailbox.objects.create(user=user, email=other_user.email)
    response = logged_in.post(f"/account/mailboxes/verify/{verification_token(mailbox)}/",
                              follow=True)
    assert b"already verified by another account" in response.content
    mailbox.refresh_from_db()
    assert not mailbox.is_verified


def test_alias_addresses_cannot_be_mailboxes(logged_in: Client, user: User) -> None:
    response = logged_in.post("/account/mailboxes/", {"email": "loop@alias.test"})
    assert response.status_code == 400
    assert b"An alias address can&#x27;t be a mailbox" in response.content
    assert user.mailboxes.count() == 1


def test_same_mailbox_twice_is_refused(logged_in: Client, user: User) -> None:
    response = logged_in.post("/account/mailboxes/", {"email": "OWNER@mailbox.test"})
    assert response.status_code == 400
    assert user.mailboxes.count() == 1


def test_resend_waits_for_the_cooldown(logged_in: Client, user: User,
                                       mailoutbox: list[mail.EmailMessage]) -> None:
    mailbox = add_mailbox(logged_in, "second@mailbox.test")
    logged_in.post(f"/account/mailboxes/{mailbox.pk}/resend/")
    assert len(mailoutbox) == 1
    cache.clear()
    logged_in.post(f"/account/mailboxes/{mailbox.pk}/resend/")
    assert len(mailoutbox) == 2


def test_pending_mailboxes_are_capped(logged_in: Client, user: User) -> None:
    for number in range(5):
        Mailbox.objects.create(user=user, email=f"pending{number}@mailbox.test")
    response = logged_in.post("/account/mailboxes/", {"email": "one-more@mailbox.test"})
    assert response.status_code == 400
    assert not Mailbox.objects.filter(email="one-more@mailbox.test").exists()


def test_the_only_mailbox_cannot_be_deleted(logged_in: Client, user: User) -> None:
    mailbox = user.mailboxes.get()
    assert b"Delete" not in logged_in.get("/account/mailboxes/").content.split(b"<h1>")[1] \
        .split(b"Add a mailbox")[0]
    response = logged_in.post(f"/account/mailboxes/{mailbox.pk}/delete/")
    assert response.status_code == 400
    assert Mailbox.objects.filter(pk=mailbox.pk).exists()


def test_the_only_verified_mailbox_cannot_be_deleted(logged_in: Client, user: User) -> None:
    verified = user.mailboxes.get()
    Mailbox.objects.create(user=user, email="pending@mailbox.test")
    response = logged_in.post(f"/account/mailboxes/{verified.pk}/delete/")
    assert response.status_code == 400 and b"only verified mailbox" in response.content
    assert Mailbox.objects.filter(pk=verified.pk).exists()


def test_unused_pending_mailbox_is_deleted(logged_in: Client, user: User) -> None:
    pending = Mailbox.objects.create(user=user, email="pending@mailbox.test")
    assert logged_in.post(f"/account/mailboxes/{pending.pk}/delete/").status_code == 302
    assert not Mailbox.objects.filter(pk=pending.pk).exists()


def test_deleting_a_mailbox_in_use_moves_its_aliases(logged_in: Client, user: User,
                                                     alias: Alias) -> None:
    old = alias.mailbox
    new = Mailbox.objects.create(user=user, email="new@mailbox.test", verified_at=timezone.now())
    pending = Mailbox.objects.create(user=user, email="pending@mailbox.test")

    page = logged_in.get(f"/account/mailboxes/{old.pk}/delete/")
    assert b"new@mailbox.test" in page.content and b"pending@mailbox.test" not in page.content
    refused = logged_in.post(f"/account/mailboxes/{old.pk}/delete/", {"move_to": pending.pk})
    assert refused.status_code == 400
    assert Mailbox.objects.filter(pk=old.pk).exists()

    response = logged_in.post(f"/account/mailboxes/{old.pk}/delete/", {"move_to": new.pk})
    assert response.status_code == 302
    assert not Mailbox.objects.filter(pk=old.pk).exists()
    alias.refresh_from_db()
    assert alias.mailbox == new


def test_settings_page_links_every_account_page(logged_in: Client) -> None:
    page = logged_in.get("/account/").content
    for url in (b"/account/mailboxes/", b"/accounts/email/", b"/accounts/password/change/",
                b"/accounts/2fa/", b"/account/delete/"):
        assert b'href="' + url + b'"' in page, url


def test_allauth_account_pages_render_in_the_settings_layout(logged_in: Client) -> None:
    for url in ("/accounts/email/", "/accounts/password/change/"):
        page = logged_in.get(url)
        assert page.status_code == 200, url
        assert b'class="settings-nav"' in page.content, url


def test_account_deletion_needs_the_password(logged_in: Client, user: User) -> None:
    response = logged_in.post("/account/delete/", {"password": "not it"})
    assert response.status_code == 400
    assert User.objects.filter(pk=user.pk).exists()


def test_account_deletion_removes_everything_and_retires_aliases(
        logged_in: Client, user: User, alias: Alias, other_user: User) -> None:
    second = create_alias(user)
    block_sender(user, "junk.example")
    block_sender(user, "pest@example.org", alias=alias)
    Contact.objects.create(alias=alias, email="friend@example.org", reverse_address="r@alias.test")
    Mailbox.objects.create(user=user, email="pending@mailbox.test")
    theirs = create_alias(other_user)

    response = logged_in.post("/account/delete/", {"password": PASSWORD})
    assert response.status_code == 302
    assert not User.objects.filter(pk=user.pk).exists()
    assert not Alias.objects.filter(pk__in=[alias.pk, second.pk]).exists()
    assert set(DeletedAlias.objects.values_list("address", flat=True)) == {
        alias.address, second.address}
    assert not Mailbox.objects.filter(user_id=user.pk).exists()
    assert not BlockedSender.objects.filter(user_id=user.pk).exists()
    assert not Contact.objects.filter(alias_id=alias.pk).exists()
    assert Alias.objects.filter(pk=theirs.pk).exists()
    assert "_auth_user_id" not in logged_in.session
