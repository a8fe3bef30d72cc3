"""The hand-written alias lookups of the mail path answer as the models say."""

from __future__ import annotations

from django.utils import timezone

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, Domain
from mailcloak.aliases.services import block_sender
from mailcloak.mail.lookups import aliases_to_forward, contact_of, rcpt_alias


def test_rcpt_alias_reads_the_alias_and_its_domain(alias: Alias) -> None:
    found = rcpt_alias(alias.address, "someone@sender.test")
    assert found is not None
    assert (found.pk, found.user_id, found.enabled, found.domain_takes_mail,
            found.sender_blocked) == (alias.pk, alias.user_id, True, True, False)
    assert rcpt_alias("nobody@alias.test", "someone@sender.test") is None


def test_an_alias_on_a_users_domain_takes_mail_once_the_domain_is_verified(
        user: User) -> None:
    domain = Domain.objects.create(name="custom.test", owner=user)
    alias = Alias.objects.create(address="shop@custom.test", domain=domain, user=user,
                                 mailbox=user.mailboxes.get())
    found = rcpt_alias(alias.address, "")
    assert found is not None and not found.domain_takes_mail
    Domain.objects.filter(pk=domain.pk).update(verified_at=timezone.now())
    found = rcpt_alias(alias.address, "")
    assert found is not None and found.domain_takes_mail


def test_blocks_cover_the_address_and_the_domains_above_it(user: User, alias: Alias) -> None:
    block_sender(user, "news.shop.example")
    for sender, blocked in [("deals@news.shop.example", True), ("a@x.news.shop.example", True),
                            ("Deals@NEWS.shop.example", True), ("a@shop.example", False),
                            ("", False)]:
        found = rcpt_alias(alias.address, sender)
        assert found is not None and found.sender_blocked is blocked, sender


def test_aliases_to_forward_carries_what_forwarding_reads(alias: Alias) -> None:
    found = aliases_to_forward([alias.pk, alias.pk + 1000])
    assert list(found) == [alias.pk]  # a missing id is simply absent
    one = found[alias.pk]
    assert (one.address, one.domain.name, one.mailbox.email, one.user.spam_sensitivity) == (
        alias.address, alias.domain.name, alias.mailbox.email, alias.user.spam_sensitivity)
    assert one.title == "shopping"  # any other field is loaded on first use
    assert aliases_to_forward([]) == {}


def test_contact_of_finds_the_contact_of_that_alias_only(user: User, alias: Alias) -> None:
    from mailcloak.aliases.services import create_alias
    from mailcloak.mail.contacts import contact_for

    contact = contact_for(alias, "Jane@Example.org", "Jane")
    found = contact_of(alias.pk, "jane@example.org")
    assert found is not None
    assert (found.pk, found.display_name, found.reverse_address, found.alias_id) == (
        contact.pk, "Jane", contact.reverse_address, alias.pk)
    assert found.created_at == contact.created_at  # any other field is loaded on first use
    assert contact_of(create_alias(user).pk, "jane@example.org") is None
    assert contact_of(alias.pk, "john@example.org") is None
