"""The operator page in the admin: deferred mail with its last error, "retry now" and "give up
and bounce" (as expiry bounces), today's figures as server-drawn SVG charts; staff only."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias
from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage
from mailcloak.mail.queue import enqueue
from mailcloak.observability import figures
from mailcloak.observability.operator import roughly

OPERATOR_URL = "/admin/mail/deliveryjob/operator/"
CHANGELIST_URL = "/admin/mail/deliveryjob/"
BODY = b"Subject: hi\r\n\r\nthe secret body text\r\n"
LAST_ERROR = "4.4.1 no mail server could be reached: mx.remote.test timed out"


def deferred_job(alias: Alias, recipient: str = "friend@remote.test") -> DeliveryJob:
    message = enqueue(kind="forward", mail_from="b@alias.test", recipients=[recipient],
                      content=BODY, alias=alias)
    job = message.jobs.get()
    DeliveryJob.objects.filter(pk=job.pk).update(
        attempts=3, last_error=LAST_ERROR, last_attempt_at=timezone.now(),
        next_attempt_at=timezone.now() + timedelta(hours=1))
    job.refresh_from_db()
    return job


def staff_client(client: Client, *permissions: str) -> Client:
    staff = User.objects.create_user("staff@mailbox.test", "a staff passphrase", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(
        content_type__app_label="mail", codename__in=permissions))
    client.force_login(staff)
    return client


@pytest.fixture
def superuser_client(client: Client, db: None) -> Client:
    client.force_login(User.objects.create_superuser("root@mailbox.test", "an admin passphrase"))
    return client


# --- the page ---------------------------------------------------------------------------------


def test_the_page_lists_deferred_mail_with_its_last_error(superuser_client: Client,
                                                          alias: Alias) -> None:
    job = deferred_job(alias)
    QueuedMessage.objects.filter(pk=job.message_id).update(
        created_at=timezone.now() - timedelta(hours=3, minutes=10))
    enqueue(kind="forward", mail_from="b@alias.test", recipients=["new@remote.test"],
            content=BODY, alias=alias)  # waiting, never tried: not deferred
    page = superuser_client.get(OPERATOR_URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert job.message.queue_id in html and "remote.test" in html and LAST_ERROR in html
    assert html.count('name="job"') == 1
    assert "2 deliveries waiting, 1 deferred" in html
    assert "the oldest waiting message was queued 3 hours ago" in html
    assert 'value="retry"' in html and 'value="bounce"' in html
    assert "the secret body text" not in html


def test_the_days_figures_are_svg_charts(superuser_client: Client, alias: Alias) -> None:
    message = enqueue(kind="forward", mail_from="b@alias.test", recipients=["a@remote.test"],
                      content=BODY, alias=alias)
    one_am = figures.day_start(timezone.now()) + timedelta(hours=1, minutes=5)
    QueuedMessage.objects.filter(pk=message.pk).update(created_at=one_am)
    html = superuser_client.get(OPERATOR_URL).content.decode()
    content = html.split('id="content-main"')[1]
    assert content.count('<svg class="chart"') == len(figures.day_by_hour(timezone.now()))
    assert "<script" not in content and "style=" not in content
    assert "<title>01: 1</title>" in content  # the forwarded message, in its hour
    assert "<strong>Forwarded to owners</strong>: 1" in content


def test_figures_count_each_hour_of_the_day(alias: Alias) -> None:
    now = timezone.now().replace(hour=15, minute=30)
    for created in (now.replace(hour=2), now.replace(hour=15), now.replace(hour=15, minute=1),
                    now - timedelta(days=1)):
        message = enqueue(kind="forward", mail_from="b@alias.test", recipients=["a@remote.test"],
                          content=BODY, alias=alias)
        QueuedMessage.objects.filter(pk=message.pk).update(created_at=created)
    forwarded = figures.day_by_hour(now)[0]
    assert forwarded.title == "Forwarded to owners"
    assert forwarded.hours[2] == 1 and forwarded.hours[15] == 2 and forwarded.total == 3


def test_ages_read_roughly() -> None:
    assert [roughly(s) for s in (0, 1, 59, 60, 7199, 86400 * 5 + 3)] == [
        "0 seconds", "1 second", "59 seconds", "1 minute", "1 hour", "5 days"]


# --- actions ----------------------------------------------------------------------------------


def test_retry_now_makes_the_job_due(superuser_client: Client, alias: Alias) -> None:
    job = deferred_job(alias)
    response = superuser_client.post(OPERATOR_URL, {"action": "retry", "job": [job.pk]},
                                     follow=True)
    assert "1 of 1 deliveries will be retried" in response.content.decode()
    job.refresh_from_db()
    assert job.next_attempt_at <= timezone.now() and job.state == DeliveryJob.State.QUEUED


def test_bounce_gives_up_the_way_expiry_does(superuser_client: Client, alias: Alias) -> None:
    job = deferred_job(alias)
    response = superuser_client.post(OPERATOR_URL, {"action": "bounce", "job": [job.pk]},
                                     follow=True)
    assert "1 of 1 deliveries bounced" in response.content.decode()
    job.refresh_from_db()
    assert job.state == DeliveryJob.State.BOUNCED and job.finished_at is not None
    bounce = Bounce.objects.get()
    assert (bounce.alias, bounce.recipient, bounce.source) == (
        alias, "friend@remote.test", Bounce.Source.DELIVERY)
    assert "given up by the operator after 3 attempts" in bounce.reason
    assert LAST_ERROR in bounce.reason
    assert QueuedMessage.objects.get().content is None  # nothing waits for it any more


def test_a_job_in_a_workers_hands_is_left_alone(superuser_client: Client, alias: Alias) -> None:
    job = deferred_job(alias)
    DeliveryJob.objects.filter(pk=job.pk).update(
        leased_by="worker-1", lease_expires_at=timezone.now() + timedelta(seconds=30))
    response = superuser_client.post(OPERATOR_URL, {"action": "bounce", "job": [job.pk]},
                                     follow=True)
    assert "1 were skipped" in response.content.decode()
    job.refresh_from_db()
    assert job.state == DeliveryJob.State.QUEUED and not Bounce.objects.exists()


def test_the_changelist_actions_do_the_same(superuser_client: Client, alias: Alias) -> None:
    retry, bounce = deferred_job(alias), deferred_job(alias, "other@remote.test")
    superuser_client.post(CHANGELIST_URL, {"action": "retry_now",
                                           "_selected_action": [retry.pk]})
    superuser_client.post(CHANGELIST_URL, {"action": "give_up",
                                           "_selected_action": [bounce.pk]})
    retry.refresh_from_db()
    bounce.refresh_from_db()
    assert retry.next_attempt_at <= timezone.now() and retry.state == DeliveryJob.State.QUEUED
    assert bounce.state == DeliveryJob.State.BOUNCED
    assert superuser_client.get(CHANGELIST_URL + "?waiting=deferred").status_code == 200


# --- access -----------------------------------------------------------------------------------


def test_anonymous_and_non_staff_users_are_sent_to_the_login(client: Client,
                                                             alias: Alias) -> None:
    job = deferred_job(alias)
    for response in (client.get(OPERATOR_URL),
                     client.post(OPERATOR_URL, {"action": "bounce", "job": [job.pk]})):
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(alias.user)  # a user, not staff
    assert client.post(OPERATOR_URL, {"action": "bounce", "job": [job.pk]}).status_code == 302
    job.refresh_from_db()
    assert job.state == DeliveryJob.State.QUEUED


def test_staff_without_the_permission_see_nothing(client: Client, alias: Alias) -> None:
    staff_client(client)
    assert client.get(OPERATOR_URL).status_code == 403


def test_viewing_staff_may_look_but_not_act(client: Client, alias: Alias) -> None:
    job = deferred_job(alias)
    staff_client(client, "view_deliveryjob")
    page = client.get(OPERATOR_URL).content.decode()
    assert job.message.queue_id in page and 'value="bounce"' not in page
    assert client.post(OPERATOR_URL, {"action": "bounce", "job": [job.pk]}).status_code == 403
    client.post(CHANGELIST_URL, {"action": "give_up", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.state == DeliveryJob.State.QUEUED and not Bounce.objects.exists()


def test_operating_staff_may_act(client: Client, alias: Alias) -> None:
    job = deferred_job(alias)
    staff_client(client, "view_deliveryjob", "change_deliveryjob")
    client.post(OPERATOR_URL, {"action": "bounce", "job": [job.pk]})
    job.refresh_from_db()
    assert job.state == DeliveryJob.State.BOUNCED
