"""The alias pages: list, search, pagination, create, toggle, details, delete, blocked senders."""

from __future__ import annotations

import re

from django.test import Client
from django.utils import timezone

from mailcloak.accounts.models import Mailbox, User
from mailcloak.aliases.models import Alias, BlockedSender, Contact, DeletedAlias
from mailcloak.aliases.services import block_sender, create_alias
from mailcloak.mail.models import Bounce


def aliases_on_page(content: bytes) -> list[str]:
    return re.findall(r'class="address" href="/aliases/\d+/">([^<]+)</a>', content.decode())


def test_list_shows_own_aliases_with_their_counts(logged_in: Client, alias: Alias,
                                                  other_user: User) -> None:
    Alias.objects.filter(pk=alias.pk).update(forwarded_count=41, blocked_count=7,
                                             replied_count=3)
    foreign = create_alias(other_user, title="not yours")
    page = logged_in.get("/aliases/")
    assert page.status_code == 200
    assert aliases_on_page(page.content) == [alias.address]
    assert foreign.address.encode() not in page.content
    text = page.content.decode()
    for label, count in (("Forwarded", 41), ("Blocked", 7), ("Replied", 3)):
        assert f'data-label="{label}">{count}</td>' in text
    assert "shopping" in text


def test_search_matches_address_title_and_notes(logged_in: Client, user: User) -> None:
    by_title = create_alias(user, title="Bike shop")
    by_notes = create_alias(user, notes="used for the BIKE club newsletter")
    by_prefix = create_alias(user, prefix="bikes")
    create_alias(user, title="groceries")
    found = aliases_on_page(logged_in.get("/aliases/", {"q": "bike"}).content)
    assert sorted(found) == sorted([by_title.address, by_notes.address, by_prefix.address])
    assert aliases_on_page(logged_in.get("/aliases/", {"q": "nothing-like-it"}).content) == []


def test_pagination_keeps_the_search(logged_in: Client, user: User) -> None:
    for number in range(30):
        create_alias(user, title=f"letter {number}")
    create_alias(user, title="unrelated")
    first = logged_in.get("/aliases/", {"q": "letter"})
    second = logged_in.get("/aliases/", {"q": "letter", "page": "2"})
    assert len(aliases_on_page(first.content)) == 25
    assert len(aliases_on_page(second.content)) == 5
    assert b'href="?q=letter&amp;page=2"' in first.content
    assert not set(aliases_on_page(first.content)) & set(aliases_on_page(second.content))


def test_create_random_alias(logged_in: Client, user: User) -> None:
    response = logged_in.post("/aliases/", {"custom_prefix": "", "domain": "alias.test",
                                            "title": "newsletters"})
    assert response.status_code == 302
    alias = Alias.objects.get(user=user)
    assert re.fullmatch(r"[a-z0-9]{16}@alias\.test", alias.address)
    assert alias.title == "newsletters"
    assert alias.mailbox == user.mailboxes.get()
    assert alias.address.encode() in logged_in.get("/aliases/").content  # flash message


def test_create_prefixed_alias_on_a_second_domain(logged_in: Client, user: User) -> None:
    logged_in.post("/aliases/", {"custom_prefix": "Shop", "domain": "second.test"})
    alias = Alias.objects.get(user=user)
    assert re.fullmatch(r"shop\.[a-z0-9]{8}@second\.test", alias.address)


def test_alias_error_is_shown_on_the_form(logged_in: Client, user: User) -> None:
    response = logged_in.post("/aliases/", {"custom_prefix": "-bad prefix-",
                                            "domain": "alias.test"})
    assert response.status_code == 400
    assert b"a prefix is 1-40 characters" in response.content
    assert not Alias.objects.filter(user=user).exists()


def test_domain_outside_the_choices_is_refused(logged_in: Client, user: User) -> None:
    response = logged_in.post("/aliases/", {"domain": "elsewhere.example"})
    assert response.status_code == 400
    assert not Alias.objects.filter(user=user).exists()


def test_create_chooses_among_verified_mailboxes_only(logged_in: Client, user: User) -> None:
    second = Mailbox.objects.create(user=user, email="second@mailbox.test",
                                    verified_at=timezone.now())
    pending = Mailbox.objects.create(user=user, email="pending@mailbox.test")
    page = logged_in.get("/aliases/").content
    assert b"second@mailbox.test" in page and b"pending@mailbox.test" not in page

    refused = logged_in.post("/aliases/", {"domain": "alias.test", "mailbox": pending.pk})
    assert refused.status_code == 400
    logged_in.post("/aliases/", {"domain": "alias.test", "mailbox": second.pk})
    assert Alias.objects.get(user=user).mailbox == second


def test_toggle_disables_and_enables(logged_in: Client, alias: Alias) -> None:
    response = logged_in.post(f"/aliases/{alias.pk}/toggle/", {"next": "/aliases/?q=shop"})
    assert response.status_code == 302 and response["Location"] == "/aliases/?q=shop"
    alias.refresh_from_db()
    assert not alias.enabled
    logged_in.post(f"/aliases/{alias.pk}/toggle/")
    alias.refresh_from_db()
    assert alias.enabled


def test_toggle_never_redirects_off_site(logged_in: Client, alias: Alias) -> None:
    response = logged_in.post(f"/aliases/{alias.pk}/toggle/",
                              {"next": "https://evil.example/phish"})
    assert response["Location"] == f"/aliases/{alias.pk}/"


def test_toggle_is_post_only(logged_in: Client, alias: Alias) -> None:
    assert logged_in.get(f"/aliases/{alias.pk}/toggle/").status_code == 405
    alias.refresh_from_db()
    assert alias.enabled


def test_edit_alias_settings(logged_in: Client, user: User, alias: Alias) -> None:
    second = Mailbox.objects.create(user=user, email="second@mailbox.test",
                                    verified_at=timezone.now())
    response = logged_in.post(f"/aliases/{alias.pk}/", {
        "title": "Bike shop", "notes": "ordered a bell", "mailbox": second.pk,
        "disabled_action": "drop"})
    assert response.status_code == 302
    alias.refresh_from_db()
    assert (alias.title, alias.notes, alias.mailbox, alias.disabled_action) == (
        "Bike shop", "ordered a bell", second, "drop")


def test_edit_refuses_an_unverified_mailbox(logged_in: Client, user: User,
                                            alias: Alias) -> None:
    pending = Mailbox.objects.create(user=user, email="pending@mailbox.test")
    response = logged_in.post(f"/aliases/{alias.pk}/", {
        "title": "", "notes": "", "mailbox": pending.pk, "disabled_action": "reject"})
    assert response.status_code == 400
    alias.refresh_from_db()
    assert alias.mailbox != pending


def test_detail_shows_blocked_senders_contacts_and_bounces(logged_in: Client, user: User,
                                                           alias: Alias) -> None:
    block_sender(user, "spam@junk.example", alias=alias)
    Contact.objects.create(alias=alias, email="friend@example.org", display_name="A Friend",
                           reverse_address="r1@alias.test", forwarded_count=2)
    Bounce.objects.create(alias=alias, recipient="owner@mailbox.test",
                          source=Bounce.Source.DELIVERY, reason="550 5.1.1 mailbox unknown")
    page = logged_in.get(f"/aliases/{alias.pk}/").content
    for expected in (b"spam@junk.example", b"friend@example.org", b"A Friend",
                     b"550 5.1.1 mailbox unknown"):
        assert expected in page


def test_delete_asks_first_then_retires_the_address(logged_in: Client, alias: Alias) -> None:
    confirm = logged_in.get(f"/aliases/{alias.pk}/delete/")
    assert confirm.status_code == 200 and b"never be issued again" in confirm.content
    assert Alias.objects.filter(pk=alias.pk).exists()

    response = logged_in.post(f"/aliases/{alias.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/aliases/"
    assert not Alias.objects.filter(pk=alias.pk).exists()
    assert DeletedAlias.objects.filter(address=alias.address).exists()


def test_block_sender_for_one_alias(logged_in: Client, user: User, alias: Alias) -> None:
    response = logged_in.post(f"/aliases/{alias.pk}/block/", {"value": "Spam@Junk.example"})
    assert response.status_code == 302
    blocked = BlockedSender.objects.get(user=user)
    assert (blocked.alias, blocked.kind, blocked.value) == (alias, "address",
                                                            "spam@junk.example")


def test_block_a_contact_from_the_alias_page(logged_in: Client, alias: Alias) -> None:
    Contact.objects.create(alias=alias, email="pest@example.org", reverse_address="r2@alias.test")
    logged_in.post(f"/aliases/{alias.pk}/block/", {"value": "pest@example.org"})
    assert BlockedSender.objects.filter(alias=alias, value="pest@example.org").exists()


def test_blocked_senders_page_adds_for_all_aliases_or_one(logged_in: Client, user: User,
                                                          alias: Alias) -> None:
    logged_in.post("/aliases/blocked/", {"value": "@junk.example", "alias": ""})
    logged_in.post("/aliases/blocked/", {"value": "pest@example.org", "alias": alias.pk})
    everywhere = BlockedSender.objects.get(user=user, alias__isnull=True)
    assert (everywhere.kind, everywhere.value) == ("domain", "junk.example")
    assert BlockedSender.objects.get(user=user, alias=alias).value == "pest@example.org"
    page = logged_in.get("/aliases/blocked/").content
    assert b"junk.example" in page and b"All aliases" in page and b"pest@example.org" in page


def test_blocked_senders_page_shows_service_errors(logged_in: Client, user: User) -> None:
    response = logged_in.post("/aliases/blocked/", {"value": "localhost"})
    assert response.status_code == 400
    assert b"localhost is not a domain name" in response.content
    assert not BlockedSender.objects.filter(user=user).exists()


def test_unblock(logged_in: Client, user: User, alias: Alias) -> None:
    blocked = block_sender(user, "junk.example")
    response = logged_in.post(f"/aliases/blocked/{blocked.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/aliases/blocked/"
    assert not BlockedSender.objects.filter(pk=blocked.pk).exists()


def test_user_text_is_escaped_everywhere(logged_in: Client, user: User) -> None:
    script = "<script>alert(1)</script>"
    alias = create_alias(user, title=script, notes=script)
    block_sender(user, "junk.example", alias=alias)
    Contact.objects.create(alias=alias, email="a@b.example", display_name=script,
                           reverse_address="r3@alias.test")
    for url in ("/aliases/", f"/aliases/{alias.pk}/", f"/aliases/{alias.pk}/delete/",
                "/aliases/?q=script"):
        content = logged_in.get(url).content
        assert b"<script>alert" not in content, url
        assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in content, url


def test_pages_need_a_login(client: Client, alias: Alias) -> None:
    for url in ("/aliases/", f"/aliases/{alias.pk}/", "/aliases/blocked/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(
            "/accounts/login/"), url
