"""Forwarded copies prepared before the commit: stored as prepared, and checked again by
`store`, which prepares anew (or not at all) what changed in between."""

from django.db import DatabaseError

from mailcloak.aliases.models import Alias, Contact
from mailcloak.aliases.services import block_sender, create_alias
from mailcloak.mail import intake, replies
from mailcloak.mail.intake import InboundMessage, accept, prepare_copies, with_prepared_copies
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.policy import Action, Decision

QUEUE_ID = "0A1B2C3D4E5F6071"
CONTENT = (b"From: Friend <friend@sender.test>\r\nTo: someone@example.test\r\n"
           b"Cc: Other <other@sender.test>\r\nSubject: hi\r\n\r\nbody\r\n")


def to(alias: Alias, action: Action = Action.FORWARD) -> Decision:
    return Decision(action, replies.RECIPIENT_OK, alias.address, alias.pk)


def message(*decisions: Decision, sender: str = "friend@sender.test") -> InboundMessage:
    return InboundMessage(queue_id=QUEUE_ID, sender=sender, recipients=decisions,
                          content=CONTENT)


# A list's envelope sender: the From address is the one owners block (RCPT checked the other).
LIST_SENDER = "list-bounces@list.test"


def stored_content(queue_id: str) -> bytes:
    return bytes(QueuedMessage.objects.get(queue_id=queue_id).content)


def test_the_prepared_copy_is_what_is_stored(alias):
    prepared = with_prepared_copies(message(to(alias)))
    copy = prepared.prepared[alias.pk]
    assert copy.queue_id == QUEUE_ID
    contacts = Contact.objects.count()
    assert contacts >= 2  # the sender's, the Cc's ...: created ahead, committed on their own
    outcome = accept(prepared)
    assert outcome.queue_ids == [QUEUE_ID]
    assert stored_content(QUEUE_ID) == copy.forwarded.content
    assert Contact.objects.count() == contacts


def test_only_copies_that_will_be_forwarded_are_prepared(user, alias):
    blocked = create_alias(user)
    block_sender(user, "friend@sender.test", alias=blocked)
    dropped = create_alias(user)
    prepared = prepare_copies(message(to(alias), to(blocked), to(dropped, Action.DROP),
                                      sender=LIST_SENDER))
    assert set(prepared) == {alias.pk}


def test_an_alias_deleted_after_preparing_is_dropped(alias):
    prepared = with_prepared_copies(message(to(alias)))
    Alias.objects.filter(pk=alias.pk).delete()
    outcome = accept(prepared)
    assert outcome.reply.code == 250 and outcome.dropped == 1 and outcome.queue_ids == []
    assert not QueuedMessage.objects.exists()


def test_a_sender_blocked_after_preparing_is_refused(user, alias):
    prepared = with_prepared_copies(message(to(alias), sender=LIST_SENDER))
    assert alias.pk in prepared.prepared
    block_sender(user, "friend@sender.test", alias=alias)
    outcome = accept(prepared)
    assert outcome.reply == replies.SENDER_BLOCKED and outcome.blocked == 1
    assert not QueuedMessage.objects.exists()


def test_the_first_copy_stored_keeps_the_name_the_client_was_given(user, alias):
    """Prepared for two aliases, the first deleted in between: the second copy becomes the
    first and takes the message's own queue id, so it is prepared again under that name."""
    second = create_alias(user)
    prepared = with_prepared_copies(message(to(alias), to(second)))
    assert prepared.prepared[alias.pk].queue_id == QUEUE_ID
    assert prepared.prepared[second.pk].queue_id != QUEUE_ID
    Alias.objects.filter(pk=alias.pk).delete()
    outcome = accept(prepared)
    assert outcome.queue_ids == [QUEUE_ID]
    stored = QueuedMessage.objects.get(queue_id=QUEUE_ID)
    assert stored.alias_id == second.pk
    assert f"{QUEUE_ID.lower()}.{second.pk}@".encode() in bytes(stored.content)  # Message-ID


def test_a_failed_preparation_leaves_the_work_to_store(monkeypatch, alias):
    def broken(_message: InboundMessage) -> dict:
        raise DatabaseError("the database went away")

    monkeypatch.setattr(intake, "prepare_copies", broken)
    original = message(to(alias))
    assert with_prepared_copies(original) is original
    outcome = accept(original)
    assert outcome.queue_ids == [QUEUE_ID]
    assert b"Subject: hi" in stored_content(QUEUE_ID)


def test_nothing_to_forward_nothing_prepared(alias):
    original = message(to(alias, Action.DROP))
    assert with_prepared_copies(original) is original
