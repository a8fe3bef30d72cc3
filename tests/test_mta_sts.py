"""The MTA-STS policy file served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import User
from mailcloak.aliases.models import Domain
from mailcloak.mail.dnsrecords import mta_sts_id, mta_sts_value

PATH = "/.well-known/mta-sts.txt"


def fetch(client: Client, host: str) -> tuple[int, str, str]:
    response = client.get(PATH, HTTP_HOST=host)
    return response.status_code, response["Content-Type"], response.content.decode()


@pytest.mark.django_db
def test_a_configured_domain_gets_the_policy_without_login(client: Client) -> None:
    status, content_type, body = fetch(client, "mta-sts.alias.test")
    assert (status, content_type) == (200, "text/plain; charset=utf-8")
    assert body == "version: STSv1\r\nmode: testing\r\nmx: mail.alias.test\r\nmax_age: 604800\r\n"
    assert fetch(client, "MTA-STS.Second.Test:8443")[0] == 200


@pytest.mark.django_db
def test_the_policy_follows_the_settings_and_its_id_with_it(
        client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    before = fetch(client, "mta-sts.alias.test")[2]
    monkeypatch.setenv("MAILCLOAK_MTA_STS_MODE", "enforce")
    monkeypatch.setenv("MAILCLOAK_MTA_STS_MAX_AGE", "30d")
    mailcloak_settings.reset()
    after = fetch(client, "mta-sts.alias.test")[2]
    assert after == "version: STSv1\r\nmode: enforce\r\nmx: mail.alias.test\r\nmax_age: 2592000\r\n"
    # the _mta-sts record `mailcloak dns` prints names the policy now served
    assert mta_sts_value(mailcloak_settings.get()) == f"v=STSv1; id={mta_sts_id(after)}"
    assert mta_sts_id(after) != mta_sts_id(before)


@pytest.mark.django_db
@pytest.mark.parametrize("host", ["alias.test", "mta-sts.elsewhere.example",
                                  "mta-sts.mta-sts.alias.test", "www.alias.test", ""])
def test_other_hosts_get_404(client: Client, host: str) -> None:
    status, _, body = fetch(client, host)
    assert status == 404
    assert "STSv1" not in body


def test_a_users_domain_gets_it_only_while_verified(client: Client, user: User) -> None:
    domain = Domain.objects.create(name="own.example", owner=user)
    assert fetch(client, "mta-sts.own.example")[0] == 404
    domain.verified_at = timezone.now()
    domain.save()
    assert fetch(client, "mta-sts.own.example")[0] == 200
    domain.active = False
    domain.save()
    assert fetch(client, "mta-sts.own.example")[0] == 404


@pytest.mark.django_db
@override_settings(ALLOWED_HOSTS=["mailcloak.example"])  # as in production
def test_served_although_allowed_hosts_names_only_the_web_app(client: Client) -> None:
    assert fetch(client, "mta-sts.alias.test")[0] == 200
    assert client.get("/", HTTP_HOST="mta-sts.alias.test").status_code == 400


@pytest.mark.django_db
def test_only_get_and_head_are_answered(client: Client) -> None:
    assert client.head(PATH, HTTP_HOST="mta-sts.alias.test").status_code == 200
    response = client.post(PATH, HTTP_HOST="mta-sts.alias.test")
    assert response.status_code == 404
