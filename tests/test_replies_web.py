"""The alias page for sending: new conversations, reverse aliases to write to, refusals."""

from __future__ import annotations

import pytest
from django.test import Client

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, Contact
from mailcloak.aliases.services import create_alias
from mailcloak.mail.models import RefusedReply, SendingPause

pytestmark = pytest.mark.django_db


def test_a_new_conversation_creates_the_contact_and_shows_where_to_write(
        logged_in: Client, alias: Alias) -> None:
    response = logged_in.post(f"/aliases/{alias.pk}/conversations/",
                              {"email": "New.Person@Example.org", "name": "New Person"},
                              follow=True)
    contact = Contact.objects.get(alias=alias, email="new.person@example.org")
    assert contact.display_name == "New Person"
    assert contact.reverse_address.endswith("@alias.test")
    assert f"send your message to {contact.reverse_address}".encode() in response.content
    assert response.content.count(contact.reverse_address.encode()) >= 2  # and in the table
    again = logged_in.post(f"/aliases/{alias.pk}/conversations/",
                           {"email": "new.person@example.org"})
    assert again.status_code == 302 and Contact.objects.filter(alias=alias).count() == 1


def test_a_bad_address_starts_no_conversation(logged_in: Client, alias: Alias) -> None:
    response = logged_in.post(f"/aliases/{alias.pk}/conversations/", {"email": "not an address"},
                              follow=True)
    assert b"Enter a valid email address" in response.content
    assert not Contact.objects.exists()


def test_nobody_starts_a_conversation_from_someone_elses_alias(
        client: Client, other_user: User, alias: Alias) -> None:
    client.force_login(other_user)
    response = client.post(f"/aliases/{alias.pk}/conversations/", {"email": "x@example.org"})
    assert response.status_code == 404 and not Contact.objects.exists()


def test_the_alias_page_shows_refusals_and_a_pause(logged_in: Client, alias: Alias) -> None:
    RefusedReply.objects.create(alias=alias, mail_from="intruder@elsewhere.test",
                                reason="envelope sender is not the owner's verified mailbox")
    SendingPause.objects.create(user=alias.user, alias=alias, reason="2 of 20 bounced")
    page = logged_in.get(f"/aliases/{alias.pk}/").content
    assert b"Not sent by the alias owner" in page and b"intruder@elsewhere.test" in page
    assert b"Sending from this alias is paused" in page
    other = create_alias(alias.user)
    assert b"is paused" not in logged_in.get(f"/aliases/{other.pk}/").content


def test_the_name_shown_when_sending_is_an_alias_setting(logged_in: Client, alias: Alias) -> None:
    logged_in.post(f"/aliases/{alias.pk}/", {
        "title": "shopping", "display_name": "Shop Me", "notes": "",
        "mailbox": alias.mailbox_id, "disabled_action": "reject"})
    alias.refresh_from_db()
    assert alias.display_name == "Shop Me"
