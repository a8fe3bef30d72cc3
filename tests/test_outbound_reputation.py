"""Sending reputation: bounces and spam complaints of mail sent from aliases pause sending."""

from __future__ import annotations

import pytest
from django.test import Client

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias
from mailcloak.mail.bounces import record_dsn
from mailcloak.mail.models import Bounce, QueuedMessage, SendingPause
from mailcloak.mail.queue import enqueue
from mailcloak.mail.reputation import is_feedback_report, is_paused, review
from mailcloak.mail.verp import make_bounce_address

pytestmark = pytest.mark.django_db


def sent(alias: Alias, recipients: int, queue_id: str = "Q1") -> QueuedMessage:
    return enqueue(kind=QueuedMessage.Kind.REPLY, mail_from="b@alias.test", alias=alias,
                   recipients=[f"c{n}@example.org" for n in range(recipients)],
                   content=b"Subject: x\r\n\r\nx\r\n", queue_id=queue_id)


def bounced(alias: Alias, count: int, kind: str = QueuedMessage.Kind.REPLY) -> None:
    Bounce.objects.bulk_create(Bounce(alias=alias, recipient=f"c{n}@example.org", kind=kind,
                                      source=Bounce.Source.DELIVERY, reason="550 no such user")
                               for n in range(count))


def test_an_alias_whose_replies_bounce_too_often_is_paused(alias: Alias) -> None:
    sent(alias, 20)
    bounced(alias, 1)
    assert review(alias.pk) is None  # 5 %: below the 10 % default
    bounced(alias, 1)
    pause = review(alias.pk)
    assert pause is not None and pause.alias == alias and "2 of 20" in pause.reason
    assert is_paused(alias)
    assert review(alias.pk) is None  # paused once


def test_too_few_recipients_to_judge_never_pause(alias: Alias) -> None:
    sent(alias, 5)
    bounced(alias, 5)
    assert review(alias.pk) is None and not is_paused(alias)


def test_bounces_of_forwarded_mail_do_not_count(alias: Alias) -> None:
    sent(alias, 20)
    bounced(alias, 10, kind=QueuedMessage.Kind.FORWARD)
    assert review(alias.pk) is None


def test_an_account_spread_over_aliases_is_paused_as_a_whole(alias: Alias, user: User) -> None:
    others = [create_alias(user) for _ in range(3)]
    for number, each in enumerate([alias, *others]):
        sent(each, 6, queue_id=f"Q{number}")  # too few per alias to judge one alone
    for each in others:
        bounced(each, 1)  # 3 of 24 for the account
    pause = review(others[0].pk)
    assert pause is not None and pause.alias is None and pause.user == user
    assert is_paused(alias)  # every alias of the account


ARF = (b"From: abuse@example.org\r\nTo: {to}\r\nSubject: FW: spam report\r\n"
       b"MIME-Version: 1.0\r\n"
       b"Content-Type: multipart/report;\r\n report-type=feedback-report; boundary=\"B\"\r\n\r\n"
       b"--B\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
       b"--B\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\n"
       b"User-Agent: Example-FBL/1.0\r\nVersion: 1\r\n--B--\r\n")


def test_a_spam_complaint_about_a_reply_is_recorded_and_pauses(alias: Alias) -> None:
    message = sent(alias, 20)
    address = make_bounce_address(alias.domain.name, alias_id=alias.pk, queue_id=message.queue_id)
    report = ARF.replace(b"{to}", address.encode())
    assert is_feedback_report(report)
    record_dsn(report, address)
    complaint = Bounce.objects.get()
    assert complaint.source == Bounce.Source.COMPLAINT and complaint.kind == "reply"
    assert is_paused(alias)


def test_the_admin_warns_of_pauses_and_resumes_sending(admin_client: Client,
                                                       alias: Alias) -> None:
    pause = SendingPause.objects.create(user=alias.user, alias=alias, reason="2 of 20 bounced")
    listing = admin_client.get("/admin/mail/sendingpause/?state=active")
    assert b"have sending paused" in listing.content and b"2 of 20 bounced" in listing.content
    admin_client.post("/admin/mail/sendingpause/", {
        "action": "resume_sending", "_selected_action": [pause.pk]})
    pause.refresh_from_db()
    assert pause.lifted_at is not None and not is_paused(alias)
