"""The RCPT TO decision for every kind of recipient, and what it costs in queries."""

import pytest
from django.utils import timezone

from mailcloak.aliases.models import Alias, Domain
from mailcloak.aliases.services import block_sender, delete_alias
from mailcloak.mail import replies
from mailcloak.mail.addresses import NULL, parse_forward_path, parse_reverse_path
from mailcloak.mail.contacts import contact_for
from mailcloak.mail.policy import Action, decide
from mailcloak.mail.verp import make_bounce_address

SENDER = parse_reverse_path("<someone@sender.test>", smtputf8=False)


def decide_for(recipient: str, sender=SENDER):
    address = parse_forward_path(f"<{recipient}>", smtputf8=False)
    return decide(sender, address, "192.0.2.1")


def test_enabled_alias_is_forwarded(alias, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):  # the alias, and the owner's blocked senders
        decision = decide_for(alias.address.upper())
    assert decision.action is Action.FORWARD
    assert decision.reply == replies.RECIPIENT_OK
    assert decision.alias_id == alias.pk
    assert decision.recipient == alias.address


def test_unknown_local_part_on_our_domain(alias):
    decision = decide_for("nobody@alias.test")
    assert decision.action is Action.REJECT
    assert decision.reply == replies.UNKNOWN_RECIPIENT


def test_deleted_alias_is_unknown(alias):
    address = alias.address
    delete_alias(alias)
    assert decide_for(address).reply == replies.UNKNOWN_RECIPIENT


@pytest.mark.parametrize("recipient", ["someone@elsewhere.test", "user@[127.0.0.1]",
                                       "user@alias.test.elsewhere.test"])
def test_other_domains_are_relay_denied(db, recipient, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        assert decide_for(recipient).reply == replies.RELAY_DENIED


def test_inactive_domain_is_not_ours(alias):
    Domain.objects.filter(pk=alias.domain_id).update(active=False)
    assert decide_for(alias.address).reply == replies.RELAY_DENIED
    assert decide_for(f"nobody@{alias.domain.name}").reply == replies.RELAY_DENIED


def test_every_active_verified_domain_is_ours(user, alias):
    domain = Domain.objects.create(name="custom.test", owner=user)
    assert decide_for("nobody@custom.test").reply == replies.RELAY_DENIED  # not verified yet
    Domain.objects.filter(pk=domain.pk).update(verified_at=timezone.now())
    assert decide_for("nobody@custom.test").reply == replies.UNKNOWN_RECIPIENT


@pytest.mark.parametrize(
    "template",
    ["{local}%elsewhere.test@{domain}", "elsewhere.test!{local}@{domain}",
     '"{local}@elsewhere.test"@{domain}', "{local}+tag@{domain}", "{local}.@{domain}x"],
)
def test_relay_tricks_on_our_domain_match_no_alias(alias, template):
    local, _, domain = alias.address.partition("@")
    address = parse_forward_path("<" + template.format(local=local, domain=domain) + ">",
                                 smtputf8=False)
    if isinstance(address, replies.Reply):
        assert address.permanent
        return
    decision = decide(SENDER, address)
    assert decision.action is Action.REJECT
    assert decision.reply in (replies.UNKNOWN_RECIPIENT, replies.RELAY_DENIED)


def test_disabled_alias_rejects_by_default(alias):
    Alias.objects.filter(pk=alias.pk).update(enabled=False)
    assert decide_for(alias.address).reply == replies.UNKNOWN_RECIPIENT


def test_disabled_alias_can_drop_silently(alias):
    Alias.objects.filter(pk=alias.pk).update(enabled=False,
                                             disabled_action=Alias.DisabledAction.DROP)
    decision = decide_for(alias.address)
    assert decision.action is Action.DROP
    assert decision.reply == replies.RECIPIENT_OK  # indistinguishable from a real accept


@pytest.mark.parametrize("blocked", ["someone@sender.test", "sender.test", "@sender.test"])
def test_blocked_sender_is_refused_and_counted(user, alias, blocked,
                                               django_capture_on_commit_callbacks):
    block_sender(user, blocked, alias=alias)
    with django_capture_on_commit_callbacks(execute=True):  # the count, once committed
        decision = decide_for(alias.address)
    assert decision.action is Action.REJECT
    assert decision.reply == replies.SENDER_BLOCKED
    alias.refresh_from_db()
    assert alias.blocked_count == 1


def test_sender_blocked_for_all_aliases(user, alias):
    block_sender(user, "SOMEONE@sender.test")
    assert decide_for(alias.address).reply == replies.SENDER_BLOCKED


def test_block_of_another_user_does_not_apply(other_user, alias):
    block_sender(other_user, "sender.test")
    assert decide_for(alias.address).action is Action.FORWARD


def test_null_sender_is_never_blocked(user, alias):
    block_sender(user, "sender.test")
    assert decide_for(alias.address, sender=NULL).action is Action.FORWARD


def test_reverse_alias_takes_mail_from_the_owner_only(alias):
    contact = contact_for(alias, "friend@sender.test", "Friend")
    decision = decide_for(contact.reverse_address)
    assert decision.action is Action.REJECT
    assert decision.reply == replies.FORGED_REPLY
    assert decision.reply.code == 550 and decision.reply.status == "5.7.1"
    owner_mailbox = parse_reverse_path("<owner@mailbox.test>", smtputf8=False)
    owner = decide_for(contact.reverse_address, sender=owner_mailbox)
    assert owner.action is Action.REPLY
    assert (owner.alias_id, owner.contact_id) == (alias.pk, contact.pk)


def test_verp_bounce_address_is_accepted(alias):
    address = make_bounce_address(alias.domain.name, alias_id=alias.pk, queue_id="ABC123")
    decision = decide_for(address)
    assert decision.action is Action.BOUNCE
    assert decision.alias_id == alias.pk
    assert decision.recipient == address


def test_forged_verp_address_is_unknown(alias):
    address = make_bounce_address(alias.domain.name, alias_id=alias.pk, queue_id="ABC123")
    local, _, domain = address.partition("@")
    forged = local[:-1] + ("a" if local[-1] != "a" else "b") + "@" + domain
    assert decide_for(forged).reply == replies.UNKNOWN_RECIPIENT


def test_verp_address_on_a_foreign_domain_is_relay_denied(db):
    address = make_bounce_address("elsewhere.test", alias_id=1, queue_id="ABC123")
    assert decide_for(address).reply == replies.RELAY_DENIED


def test_an_alias_and_its_owners_blocks_are_read_in_one_query(
        alias: Alias, django_assert_num_queries, django_capture_on_commit_callbacks) -> None:
    block_sender(alias.user, "other.test")
    with django_assert_num_queries(1):
        assert decide(SENDER, parse_forward_path(f"<{alias.address}>", smtputf8=False)
                      ).action is Action.FORWARD
    block_sender(alias.user, "sender.test", alias=alias)
    with (django_assert_num_queries(2),  # the lookup, then the alias's blocked count
          django_capture_on_commit_callbacks(execute=True)):
        assert decide(SENDER, parse_forward_path(f"<{alias.address}>", smtputf8=False)
                      ).reply == replies.SENDER_BLOCKED
