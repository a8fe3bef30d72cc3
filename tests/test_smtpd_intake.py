"""The end of DATA, without a server: what is stored, in one transaction, and the reply."""

import pytest
from django.db import transaction

from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias
from mailcloak.mail import intake, replies
from mailcloak.mail.intake import InboundMessage, accept, describe, store
from mailcloak.mail.models import Bounce, QueuedMessage
from mailcloak.mail.policy import Action, Decision
from mailcloak.mail.verp import make_bounce_address, parse_bounce_address

CONTENT = b"From: Friend <friend@sender.test>\r\nSubject: hi\r\n\r\nbody\r\n"


def to(alias: Alias, action: Action = Action.FORWARD) -> Decision:
    return Decision(action, replies.RECIPIENT_OK, alias.address, alias.pk)


def message(*decisions: Decision, queue_id: str = "0A1B2C3D4E5F6071",
            content: bytes = CONTENT) -> InboundMessage:
    return InboundMessage(queue_id=queue_id, sender="friend@sender.test",
                          recipients=decisions, content=content)


def test_one_copy_per_alias_in_one_go(user, alias, django_capture_on_commit_callbacks):
    second = create_alias(user)
    with django_capture_on_commit_callbacks(execute=True):  # the counters, added after commit
        outcome = accept(message(to(alias), to(second), to(alias)))
    assert outcome.reply == replies.queued("0A1B2C3D4E5F6071")
    assert outcome.queue_ids[0] == "0A1B2C3D4E5F6071" and len(outcome.queue_ids) == 2
    stored = {m.queue_id: m for m in QueuedMessage.objects.all()}
    assert set(stored) == set(outcome.queue_ids)
    for queue_id, target in zip(outcome.queue_ids, (alias, second), strict=True):
        copy = stored[queue_id]
        assert copy.alias == target
        bounce = parse_bounce_address(copy.mail_from)
        assert bounce is not None and bounce.queue_id == queue_id
        assert bounce.alias_id == target.pk
        target.refresh_from_db()
        assert target.forwarded_count == 1


def test_dropped_recipients_store_nothing(alias):
    outcome = accept(message(to(alias, Action.DROP)))
    assert outcome.reply.code == 250 and outcome.dropped == 1
    assert not QueuedMessage.objects.exists()


def test_alias_deleted_since_rcpt_is_dropped(alias):
    decision = to(alias)
    Alias.objects.filter(pk=alias.pk).delete()
    outcome = accept(message(decision))
    assert outcome.reply.code == 250 and outcome.dropped == 1 and outcome.queue_ids == []


def test_bounce_recipient_records_the_report(alias):
    address = make_bounce_address(alias.domain.name, alias_id=alias.pk, queue_id="FEED01")
    report = (b"From: MAILER-DAEMON@mx.test\r\nSubject: failure\r\n\r\n"
              b"<owner@mailbox.test>: host said: 550 5.1.1 no such user\r\n")
    outcome = accept(message(Decision(Action.BOUNCE, replies.RECIPIENT_OK, address, alias.pk),
                             content=report))
    assert outcome.reply.code == 250 and outcome.bounces == 1
    assert Bounce.objects.filter(alias=alias, source=Bounce.Source.DSN).exists()


def test_unparseable_message(alias):
    outcome = accept(message(to(alias), content=b"\x00\x01 not a message"))
    assert outcome.reply == replies.UNPARSEABLE
    assert not QueuedMessage.objects.exists()


def test_store_leaves_the_commit_to_its_caller(user, alias):
    """The seam for group commit: several messages share one transaction."""
    second = create_alias(user)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), transaction.atomic():
        store(message(to(alias), queue_id="AAAA0001"))
        store(message(to(second), queue_id="AAAA0002"))
        assert QueuedMessage.objects.count() == 2
        raise Abort
    assert not QueuedMessage.objects.exists()
    with transaction.atomic():
        outcomes = [store(message(to(alias), queue_id="AAAA0003")),
                    store(message(to(second), queue_id="AAAA0004"))]
    assert [o.queue_ids for o in outcomes] == [["AAAA0003"], ["AAAA0004"]]
    assert QueuedMessage.objects.count() == 2


def test_describe_names_the_error_but_not_its_message(monkeypatch, alias):
    def leaky(*args, **kwargs):
        raise ValueError("Subject: the secret plans")

    monkeypatch.setattr(intake, "prepare_forward", leaky)
    try:
        intake.prepare_forward(b"")
    except ValueError as exc:
        text = describe(exc)
    assert text.startswith("ValueError at test_smtpd_intake.py:")
    assert "secret" not in text
    assert accept(message(to(alias))).reply == replies.LOCAL_ERROR


def test_a_blocked_from_address_is_refused_even_under_another_envelope(
        user, alias, django_capture_on_commit_callbacks):
    """Contacts are known by their From address; a newsletter's bounce address differs."""
    from mailcloak.aliases.services import block_sender

    block_sender(user, "friend@sender.test", alias=alias)
    listed = InboundMessage(queue_id="0A1B2C3D4E5F6071", sender="bounce-123@lists.sender.test",
                            recipients=(to(alias),), content=CONTENT)
    with django_capture_on_commit_callbacks(execute=True):
        outcome = accept(listed)
    assert outcome.reply == replies.SENDER_BLOCKED and outcome.blocked == 1
    assert not QueuedMessage.objects.exists()
    alias.refresh_from_db()
    assert alias.blocked_count == 1 and alias.forwarded_count == 0


def test_a_from_block_on_one_alias_still_forwards_to_the_others(user, alias):
    from mailcloak.aliases.services import block_sender

    other = create_alias(user)
    block_sender(user, "sender.test", alias=alias)  # a whole domain, for one alias
    listed = InboundMessage(queue_id="0A1B2C3D4E5F6071", sender="bounce@lists.example.net",
                            recipients=(to(alias), to(other)), content=CONTENT)
    outcome = accept(listed)
    assert outcome.reply.code == 250 and outcome.blocked == 1
    assert [m.alias for m in QueuedMessage.objects.all()] == [other]


def test_the_log_decision_tells_replies_from_forwarded_copies():
    outcome = intake.Outcome(replies.queued("Q1"), queue_ids=["Q1", "Q2", "Q3"], replies=2,
                             blocked=1)
    assert intake.decision(outcome.reply, outcome) == "forward+reply+block"
    only_reply = intake.Outcome(replies.queued("Q1"), queue_ids=["Q1"], replies=1)
    assert intake.decision(only_reply.reply, only_reply) == "reply"
