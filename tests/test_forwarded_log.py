"""The forwarded-mail log: metadata for the retention period, sealed filter features, the
owner's "Spam" report teaching the builtin engine, retention, isolation (web and API)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from mailcloak.accounts.models import ApiToken, User
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias
from mailcloak.mail import replies
from mailcloak.mail.analysis import Analysis
from mailcloak.mail.auth import authenticate
from mailcloak.mail.intake import InboundMessage, accept
from mailcloak.mail.policy import Action, Decision
from mailcloak.mail.spam.engine import base_thresholds, get_engine
from mailcloak.mail.spam.verdict import ScanRequest
from mailcloak.quarantine.models import Activity, ForwardedMail
from mailcloak.quarantine.sweep import sweep_expired
from mailcloak.spamdata.models import LearnedMessage, LearnedToken

# Spam that got through is the point here: the verdict must let it be forwarded.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("lenient_spam_thresholds")]

RAW = (b"From: Deal Maker <deals@bargains.example>\r\nTo: someone@alias.test\r\n"
       b"Subject: Zorblax widgets half price\r\nMessage-ID: <1@bargains.example>\r\n\r\n"
       b"Buy zorblax widgets today, limited zorblax offer.\r\n")


def forward(alias: Alias, *, scanned: bool = True, raw: bytes = RAW) -> ForwardedMail:
    analysis = None
    if scanned:
        engine = get_engine()
        verdict = engine.scan_sync(ScanRequest(raw=raw), base_thresholds())  # type: ignore[attr-defined]
        auth = authenticate(raw, peer_ip="127.0.0.9", helo="mx.bargains.example",
                            mail_from="bounce-7@bargains.example")
        analysis = Analysis(auth=auth, verdict=verdict)
    outcome = accept(InboundMessage(
        queue_id="0A1B2C3D4E5F6071", sender="bounce-7@bargains.example",
        recipients=(Decision(Action.FORWARD, replies.RECIPIENT_OK, alias.address, alias.pk),),
        content=raw, analysis=analysis))
    assert outcome.queue_ids == ["0A1B2C3D4E5F6071"]
    return ForwardedMail.objects.get(queue_id="0A1B2C3D4E5F6071")


@pytest.fixture
def api(user: User) -> Client:
    _, token = ApiToken.issue(user, "tests")
    return Client(headers={"Authorization": f"Bearer {token}"})


def test_each_forwarded_copy_leaves_metadata_and_sealed_features_only(alias: Alias) -> None:
    mail = forward(alias)
    assert (mail.user_id, mail.alias_id) == (alias.user_id, alias.pk)
    assert mail.header_from == "Deal Maker <deals@bargains.example>"
    assert mail.sender_address == "deals@bargains.example"
    assert mail.mail_from == "bounce-7@bargains.example"
    assert mail.subject == "Zorblax widgets half price"
    assert mail.key_id and mail.features
    sealed = bytes(mail.features)
    assert b"zorblax" not in sealed.lower() and hashlib.sha256(RAW).digest() not in sealed
    assert mail.expires_at - mail.created_at == timedelta(days=7)


def test_reporting_spam_teaches_the_builtin_engine_once(logged_in: Client, alias: Alias) -> None:
    mail = forward(alias)
    page = logged_in.get("/quarantine/forwarded/").content.decode()
    assert "Zorblax widgets half price" in page and f"/forwarded/{mail.pk}/spam/" in page
    response = logged_in.post(f"/quarantine/forwarded/{mail.pk}/spam/", follow=True)
    assert b"the filter has learned from it" in response.content
    learned = LearnedMessage.objects.get()
    assert learned.is_spam and learned.digest == hashlib.sha256(RAW).hexdigest()
    tokens = LearnedToken.objects.count()
    assert tokens > 3 and not LearnedToken.objects.filter(spam=0).exists()
    mail.refresh_from_db()
    assert mail.reported_spam_at is not None
    assert Activity.objects.filter(action=Activity.Action.SPAM,
                                   target="deals@bargains.example").count() == 1

    again = logged_in.post(f"/quarantine/forwarded/{mail.pk}/spam/", follow=True)
    assert b"already reported" in again.content
    assert LearnedToken.objects.filter(spam__gt=1).count() == 0  # counted once
    assert b"Reported" in logged_in.get("/quarantine/forwarded/").content


def test_without_features_the_report_is_kept_but_nothing_is_learned(
        logged_in: Client, alias: Alias) -> None:
    mail = forward(alias, scanned=False)
    assert not mail.key_id and not mail.features
    response = logged_in.post(f"/quarantine/forwarded/{mail.pk}/spam/", follow=True)
    assert b"learns only from whole messages" in response.content
    assert not LearnedMessage.objects.exists()
    mail.refresh_from_db()
    assert mail.reported_spam_at is not None


def test_the_api_lists_and_reports(api: Client, alias: Alias) -> None:
    mail = forward(alias)
    listing = api.get("/api/v1/forwarded").json()
    assert listing["count"] == 1
    [item] = listing["items"]
    assert (item["id"], item["alias"], item["subject"]) == (mail.pk, alias.address,
                                                           "Zorblax widgets half price")
    assert "features" not in item
    report = api.post(f"/api/v1/forwarded/{mail.pk}/spam").json()
    assert report == {"detail": "reported as spam", "learned": True}
    assert api.post(f"/api/v1/forwarded/{mail.pk}/spam").json()["detail"] == "already reported"
    assert Activity.objects.get(action=Activity.Action.SPAM).via == Activity.Via.API


def test_nobody_sees_or_reports_another_users_mail(client: Client, api: Client, alias: Alias,
                                                   other_user: User) -> None:
    theirs = forward(create_alias(other_user))
    client.force_login(alias.user)
    assert b"Zorblax" not in client.get("/quarantine/forwarded/").content
    assert client.post(f"/quarantine/forwarded/{theirs.pk}/spam/").status_code == 404
    assert api.get("/api/v1/forwarded").json()["count"] == 0
    assert api.post(f"/api/v1/forwarded/{theirs.pk}/spam").status_code == 404
    theirs.refresh_from_db()
    assert theirs.reported_spam_at is None and not LearnedMessage.objects.exists()


def test_entries_past_retention_are_hidden_then_swept(logged_in: Client, alias: Alias) -> None:
    mail = forward(alias)
    ForwardedMail.objects.filter(pk=mail.pk).update(expires_at=timezone.now()
                                                    - timedelta(days=3))
    assert b"Zorblax" not in logged_in.get("/quarantine/forwarded/").content
    assert logged_in.post(f"/quarantine/forwarded/{mail.pk}/spam/").status_code == 404
    assert sweep_expired() >= 1
    assert not ForwardedMail.objects.filter(pk=mail.pk).exists()
