"""The admin: every Mailcloak model is registered and its pages work; message content stays out."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from allauth.account.models import EmailAddress
from django.apps import apps
from django.contrib import admin
from django.db.models import Model
from django.test import Client
from django.urls import reverse

from mailcloak.accounts.models import ApiToken, User
from mailcloak.aliases.models import Alias, Contact
from mailcloak.aliases.services import block_sender, delete_alias
from mailcloak.mail.models import Bounce, RefusedReply, SendingPause
from mailcloak.mail.queue import enqueue
from mailcloak.mail.ratelimit import Charge, charge
from mailcloak.outbox.models import LocalOutboxMessage
from mailcloak.settings import Rate

SECRET_BODY = "the secret body text"


@pytest.fixture
def admin_client(client: Client, make_user: object) -> Client:
    staff = User.objects.create_superuser("root@mailbox.test", "an admin passphrase")
    client.force_login(staff)
    return client


@pytest.fixture
def every_model_filled(user: User, alias: Alias) -> None:
    message = EmailMessage()
    message["Subject"] = "Verify"
    message.set_content(SECRET_BODY)
    enqueue(kind="system", mail_from="noreply@alias.test", recipients=["a@mailbox.test"],
            content=message.as_bytes())
    LocalOutboxMessage.objects.create(recipient="a@mailbox.test", subject="Verify",
                                      content=message.as_bytes())
    Contact.objects.create(alias=alias, email="friend@example.org", reverse_address="r@alias.test")
    block_sender(user, "junk.example")
    Bounce.objects.create(alias=alias, recipient="a@mailbox.test", source="delivery",
                          reason="550 no such user")
    RefusedReply.objects.create(alias=alias, mail_from="intruder@example.org",
                                reason="envelope sender is not the owner's verified mailbox")
    charge([Charge("user-messages", str(user.pk), 1, (Rate(10, 3600),))])
    SendingPause.objects.create(user=user, alias=alias, reason="2 of 20 recipients bounced")
    ApiToken.issue(user, "laptop")
    delete_alias(alias.__class__.objects.create(
        address="old@alias.test", domain=alias.domain, user=user, mailbox=alias.mailbox))


MAILCLOAK_APPS = ("accounts", "aliases", "mail", "outbox")


def mailcloak_models() -> list[type[Model]]:
    return [model for label in MAILCLOAK_APPS for model in apps.get_app_config(label).get_models()]


def test_every_mailcloak_model_is_registered() -> None:
    missing = [m.__name__ for m in mailcloak_models() if not admin.site.is_registered(m)]
    assert missing == []


def test_every_changelist_and_change_page_renders_without_content(
        admin_client: Client, every_model_filled: None) -> None:
    for model in mailcloak_models():
        meta = model._meta
        listing = admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        assert listing.status_code == 200, meta.label
        assert SECRET_BODY.encode() not in listing.content, meta.label
        obj = model._default_manager.first()
        assert obj is not None, meta.label
        change = admin_client.get(reverse(f"admin:{meta.app_label}_{meta.model_name}_change",
                                          args=[obj.pk]))
        assert change.status_code == 200, meta.label
        assert SECRET_BODY.encode() not in change.content, meta.label


def test_admin_search_works_everywhere(admin_client: Client, every_model_filled: None) -> None:
    for model in mailcloak_models():
        meta = model._meta
        url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert admin_client.get(url, {"q": "example"}).status_code == 200, meta.label


def test_admin_adds_a_user_by_email(admin_client: Client) -> None:
    response = admin_client.post(reverse("admin:accounts_user_add"), {
        "email": "Added@Mailbox.test", "usable_password": "true",
        "password1": "a good long passphrase", "password2": "a good long passphrase"})
    assert response.status_code == 302, response.content.decode()
    added = User.objects.get(email="added@mailbox.test")
    assert added.check_password("a good long passphrase")
    assert added.mailboxes.get().is_verified
    assert EmailAddress.objects.get(user=added).verified


def test_admin_is_for_staff_only(logged_in: Client) -> None:
    response = logged_in.get(reverse("admin:aliases_alias_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
