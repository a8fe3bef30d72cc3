"""One user can never see or change another's aliases, mailboxes or blocked senders; CSRF holds."""

from __future__ import annotations

from typing import Any

import pytest
from django.forms.models import model_to_dict
from django.test import Client
from django.utils import timezone

from mailcloak.accounts.models import Mailbox, User
from mailcloak.accounts.views import verification_token
from mailcloak.aliases.models import Alias, BlockedSender, Contact
from mailcloak.aliases.services import block_sender

# (method, URL template, POST data) for every page that takes an object id.
OWNED_URLS = [
    ("get", "/aliases/{alias}/", {}),
    ("post", "/aliases/{alias}/", {"title": "mine now", "notes": "", "mailbox": "{mailbox}",
                                   "disabled_action": "drop"}),
    ("post", "/aliases/{alias}/toggle/", {}),
    ("get", "/aliases/{alias}/delete/", {}),
    ("post", "/aliases/{alias}/delete/", {}),
    ("post", "/aliases/{alias}/block/", {"value": "friend@example.org"}),
    ("post", "/aliases/blocked/{blocked}/delete/", {}),
    ("post", "/account/mailboxes/{pending}/resend/", {}),
    ("get", "/account/mailboxes/{mailbox}/delete/", {}),
    ("post", "/account/mailboxes/{mailbox}/delete/", {"move_to": "{spare}"}),
    ("get", "/account/mailboxes/verify/{token}/", {}),
    ("post", "/account/mailboxes/verify/{token}/", {}),
]


@pytest.fixture
def victim(user: User, alias: Alias) -> dict[str, Any]:
    """The owner's objects, keyed by the placeholders of OWNED_URLS."""
    spare = Mailbox.objects.create(user=user, email="spare@mailbox.test",
                                   verified_at=timezone.now())
    pending = Mailbox.objects.create(user=user, email="pending@mailbox.test")
    Contact.objects.create(alias=alias, email="friend@example.org", reverse_address="r@alias.test")
    return {
        "alias": alias.pk, "mailbox": alias.mailbox_id, "spare": spare.pk,
        "pending": pending.pk, "token": verification_token(pending),
        "blocked": block_sender(user, "junk.example", alias=alias).pk,
    }


def snapshot(user: User) -> dict[str, list[dict[str, Any]]]:
    return {
        "aliases": [model_to_dict(a) for a in Alias.objects.filter(user=user).order_by("pk")],
        "mailboxes": [model_to_dict(m) for m in Mailbox.objects.filter(user=user).order_by("pk")],
        "blocked": [model_to_dict(b) for b in
                    BlockedSender.objects.filter(user=user).order_by("pk")],
    }


@pytest.mark.parametrize(("method", "url", "data"), OWNED_URLS)
def test_another_user_gets_404_and_changes_nothing(
        client: Client, user: User, other_user: User, victim: dict[str, Any],
        method: str, url: str, data: dict[str, str]) -> None:
    before = snapshot(user)
    client.force_login(other_user)
    response = getattr(client, method)(url.format(**victim),
                                       {k: v.format(**victim) for k, v in data.items()})
    assert response.status_code == 404
    assert snapshot(user) == before


def test_blocked_senders_page_will_not_block_for_another_users_alias(
        client: Client, other_user: User, alias: Alias) -> None:
    client.force_login(other_user)
    response = client.post("/aliases/blocked/", {"value": "junk.example", "alias": alias.pk})
    assert response.status_code == 400
    assert not BlockedSender.objects.exists()


def test_another_users_mailbox_cannot_be_chosen(client: Client, user: User, other_user: User,
                                                alias: Alias) -> None:
    theirs = other_user.mailboxes.get()
    client.force_login(user)
    response = client.post(f"/aliases/{alias.pk}/", {
        "title": "", "notes": "", "mailbox": theirs.pk, "disabled_action": "reject"})
    assert response.status_code == 400
    Mailbox.objects.create(user=user, email="spare@mailbox.test", verified_at=timezone.now())
    client.post("/aliases/", {"domain": "alias.test", "mailbox": theirs.pk})
    assert not Alias.objects.filter(mailbox=theirs).exists()


def test_lists_show_only_ones_own_objects(client: Client, user: User, other_user: User,
                                          alias: Alias) -> None:
    block_sender(user, "junk.example")
    Mailbox.objects.create(user=user, email="pending@mailbox.test")
    client.force_login(other_user)
    for url in ("/aliases/", "/aliases/blocked/", "/account/mailboxes/", "/account/"):
        content = client.get(url).content
        for secret in (alias.address, "junk.example", "pending@mailbox.test", user.email):
            assert secret.encode() not in content, (url, secret)


@pytest.mark.parametrize("url", ["/aliases/", "/aliases/{alias}/toggle/", "/aliases/blocked/",
                                 "/account/mailboxes/", "/account/delete/"])
def test_posts_without_csrf_token_are_refused(user: User, alias: Alias, url: str) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    before = snapshot(user)
    response = client.post(url.format(alias=alias.pk), {"value": "junk.example",
                                                        "email": "x@mailbox.test"})
    assert response.status_code == 403
    assert snapshot(user) == before
    assert User.objects.filter(pk=user.pk).exists()


def test_posts_with_the_pages_csrf_token_work(user: User, alias: Alias) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/aliases/")
    token = client.cookies["csrftoken"].value
    response = client.post(f"/aliases/{alias.pk}/toggle/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    alias.refresh_from_db()
    assert not alias.enabled
