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


def test_blocking_a_contact_shows_on_its_row_and_can_be_undone(
        logged_in: Client, alias: Alias) -> None:
    from mailcloak.aliases.models import BlockedSender
    from mailcloak.aliases.services import is_sender_blocked
    from mailcloak.mail.contacts import contact_for

    pest = contact_for(alias, "pest@spam.example.org")
    friend = contact_for(alias, "friend@example.net")
    page = logged_in.post(f"/aliases/{alias.pk}/block/", {"value": pest.email},
                          follow=True).content.decode()
    assert is_sender_blocked(alias, pest.email) and not is_sender_blocked(alias, friend.email)
    rule = BlockedSender.objects.get(alias=alias, value=pest.email)
    pest_row = page[page.index(pest.reverse_address):].split("</tr>")[0]
    friend_row = page[page.index(friend.reverse_address):].split("</tr>")[0]
    assert "Blocked" in pest_row and f"/blocked/{rule.pk}/delete/" in pest_row
    assert "Blocked" not in friend_row and f"/aliases/{alias.pk}/block/" in friend_row

    # A rule for all aliases naming a parent domain blocks the contact too.
    rule.delete()
    logged_in.post("/aliases/blocked/", {"value": "example.org", "alias": ""})
    page = logged_in.get(f"/aliases/{alias.pk}/").content.decode()
    assert "Unblock example.org" in page[page.index(pest.reverse_address):].split("</tr>")[0]

    domain_rule = BlockedSender.objects.get(value="example.org")
    logged_in.post(f"/aliases/blocked/{domain_rule.pk}/delete/", {"next": f"/aliases/{alias.pk}/"})
    assert not is_sender_blocked(alias, pest.email)
