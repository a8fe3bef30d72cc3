"""Users' own domains in the web app and the API: add one, see every record to publish and its
status, check now, catch-all, aliases at a chosen address, removal; and isolation between
users on every page and endpoint that takes a domain id."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from mailcloak.accounts.models import ApiToken, User
from mailcloak.aliases import verification
from mailcloak.aliases.domains import add_domain, create_named_alias
from mailcloak.aliases.models import Alias, DeletedAlias, Domain
from mailcloak.mail.dkimkeys import signing_keys
from mailcloak.settings import Rate
from tests.support.custom_domains import Zone, verified_domain
from tests.support.dns_server import DnsServer

pytestmark = pytest.mark.django_db
API = "/api/v1"


@pytest.fixture(autouse=True)
def _clear_rate_limits(db: None) -> None:
    cache.clear()


@pytest.fixture
def zone(dns_server: DnsServer) -> Iterator[Zone]:
    published = Zone(dns_server)
    yield published
    published.clear()


@pytest.fixture
def api_client() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        _, token = ApiToken.issue(user, "tests")
        return Client(headers={"Authorization": f"Bearer {token}"})

    return make


def call(client: Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = getattr(client, method)(API + path, body, content_type="application/json")
    response.data = response.json() if response.content else None
    return response


def snapshot(domain: Domain) -> dict[str, Any]:
    domain.refresh_from_db()
    return {"owner": domain.owner_id, "verified_at": domain.verified_at,
            "checked_at": domain.checked_at, "catch_all": domain.catch_all,
            "aliases": sorted(Alias.objects.filter(domain=domain).values_list("address",
                                                                              flat=True))}


# --- web ------------------------------------------------------------------------------------


def test_add_a_domain_and_see_every_record_to_publish(logged_in: Client, user: User) -> None:
    response = logged_in.post("/aliases/domains/", {"name": "Web.Test"})
    domain = Domain.objects.get(name="web.test")
    assert domain.owner == user
    assert response.status_code == 302
    assert response["Location"] == f"/aliases/domains/{domain.pk}/"
    page = logged_in.get(response["Location"]).content.decode()
    assert "Not verified" in page
    for text in ("_mailcloak.web.test", f"mailcloak-verify={domain.verification_token}",
                 "10 mail.alias.test", "v=spf1 mx -all", "mcr1._domainkey.web.test",
                 "mcr1._domainkey.alias.test", "_dmarc.web.test", "Check now",
                 *(key.txt_record() for key in signing_keys())):
        assert text in page, text
    assert "Aliases can be created once the domain is verified." in page
    assert 'aria-current="page">Domains</a>' in page  # the main navigation's tab


def test_a_bad_domain_name_is_explained(logged_in: Client) -> None:
    response = logged_in.post("/aliases/domains/", {"name": "not a domain"})
    assert response.status_code == 400
    assert "is not a domain name" in response.content.decode()
    assert not Domain.objects.filter(owner__isnull=False).exists()


def test_check_now_shows_each_records_status_and_verifies(logged_in: Client, user: User,
                                                          zone: Zone) -> None:
    domain = add_domain(user, "checked.test")
    zone.publish(domain, mx=None)
    page = logged_in.post(f"/aliases/domains/{domain.pk}/check/", follow=True).content.decode()
    assert "is not verified yet" in page
    assert "missing" in page and "publish: checked.test" in page  # the fix for the MX
    zone.publish(domain, ownership=None, spf=None, dkim=False, dmarc=None)  # add the MX
    mail.outbox.clear()
    page = logged_in.post(f"/aliases/domains/{domain.pk}/check/", follow=True).content.decode()
    assert "checked.test is verified and receives mail." in page
    assert "Verified since" in page
    assert len(mail.outbox) == 1
    assert "checked.test" in logged_in.get("/aliases/").content.decode()  # offered for aliases


def test_check_now_is_limited_per_domain(logged_in: Client, user: User,
                                        api_client: Callable[[User], Client],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verification, "CHECKS_ON_DEMAND", Rate(2, 3600))
    domain = add_domain(user, "hammered.test")
    logged_in.post(f"/aliases/domains/{domain.pk}/check/")
    assert call(api_client(user), "post", f"/domains/{domain.pk}/verify").status_code == 200
    checked_at = Domain.objects.get(pk=domain.pk).checked_at
    page = logged_in.post(f"/aliases/domains/{domain.pk}/check/", follow=True).content.decode()
    assert "hammered.test was checked 2 times in the last hour; try again later" in page
    refused = call(api_client(user), "post", f"/domains/{domain.pk}/verify")
    assert refused.status_code == 400 and "try again later" in refused.data["detail"]
    assert Domain.objects.get(pk=domain.pk).checked_at == checked_at  # no lookups were made


def test_aliases_at_a_chosen_address_from_the_domain_page(logged_in: Client, user: User,
                                                          zone: Zone) -> None:
    domain = verified_domain(user, "chosen.test", zone)
    response = logged_in.post(f"/aliases/domains/{domain.pk}/aliases/",
                              {"local_part": "Hello", "title": "greetings"})
    assert response.status_code == 302
    assert Alias.objects.get(address="hello@chosen.test").title == "greetings"
    response = logged_in.post(f"/aliases/domains/{domain.pk}/aliases/", {"local_part": "a+b"})
    assert response.status_code == 400
    assert "an address is 1-64 characters" in response.content.decode()
    assert "hello@chosen.test" in logged_in.get(f"/aliases/domains/{domain.pk}/").content.decode()


def test_catch_all_is_turned_on_and_off(logged_in: Client, user: User) -> None:
    domain = add_domain(user, "toggle.test")
    logged_in.post(f"/aliases/domains/{domain.pk}/catch-all/", {"enabled": "on"})
    assert Domain.objects.get(pk=domain.pk).catch_all
    logged_in.post(f"/aliases/domains/{domain.pk}/catch-all/", {})
    assert not Domain.objects.get(pk=domain.pk).catch_all


def test_removing_a_domain_asks_first_and_retires_its_aliases(logged_in: Client, user: User,
                                                              zone: Zone) -> None:
    domain = verified_domain(user, "removed.test", zone)
    create_named_alias(user, "removed.test", "hello")
    page = logged_in.get(f"/aliases/domains/{domain.pk}/delete/").content.decode()
    assert "Remove this domain?" in page and "1 alias is deleted" in page
    response = logged_in.post(f"/aliases/domains/{domain.pk}/delete/")
    assert response["Location"] == "/aliases/domains/"
    assert not Domain.objects.filter(pk=domain.pk).exists()
    assert DeletedAlias.objects.filter(address="hello@removed.test").exists()


# --- isolation (web) ------------------------------------------------------------------------

OWNED_PAGES = [
    ("get", "/aliases/domains/{pk}/", {}),
    ("post", "/aliases/domains/{pk}/check/", {}),
    ("post", "/aliases/domains/{pk}/catch-all/", {"enabled": "on"}),
    ("post", "/aliases/domains/{pk}/aliases/", {"local_part": "intruder"}),
    ("get", "/aliases/domains/{pk}/delete/", {}),
    ("post", "/aliases/domains/{pk}/delete/", {}),
]


@pytest.mark.parametrize(("method", "url", "data"), OWNED_PAGES)
def test_another_users_domain_is_not_found(client: Client, user: User, other_user: User,
                                           zone: Zone, method: str, url: str,
                                           data: dict[str, str]) -> None:
    domain = verified_domain(user, "private.test", zone)
    before = snapshot(domain)
    client.force_login(other_user)
    response = getattr(client, method)(url.format(pk=domain.pk), data)
    assert response.status_code == 404
    assert snapshot(domain) == before


def test_domain_lists_show_only_ones_own(client: Client, user: User, other_user: User,
                                         zone: Zone) -> None:
    domain = verified_domain(user, "mine-only.test", zone)
    client.force_login(other_user)
    for url in ("/aliases/domains/", "/aliases/"):
        assert b"mine-only.test" not in client.get(url).content, url
    assert domain.verification_token.encode() not in client.get("/aliases/domains/").content
    client.post("/aliases/", {"domain": "mine-only.test"})
    assert not Alias.objects.filter(domain=domain).exists()


# --- API ------------------------------------------------------------------------------------


def test_api_add_verify_configure_and_remove(api_client: Callable[[User], Client], user: User,
                                             zone: Zone) -> None:
    api = api_client(user)
    created = call(api, "post", "/domains", {"name": "Api.Test"})
    assert created.status_code == 201
    body = created.data
    assert (body["name"], body["verified"], body["checks"]) == ("api.test", False, [])
    assert {"name": "_mailcloak.api.test", "type": "TXT",
            "value": f"mailcloak-verify={Domain.objects.get(name='api.test').verification_token}",
            "purpose": "proves the domain is yours"} in body["records"]
    domain_id = body["id"]
    assert call(api, "post", f"/domains/{domain_id}/aliases",
                {"local_part": "early"}).status_code == 400  # not verified yet

    zone.publish(Domain.objects.get(pk=domain_id))
    verified = call(api, "post", f"/domains/{domain_id}/verify")
    assert verified.status_code == 200 and verified.data["verified"]
    assert {check["status"] for check in verified.data["checks"]} == {"ok"}
    assert "api.test" in [d["name"] for d in call(api, "get", "/domains").data]
    assert [d["name"] for d in call(api, "get", "/domains/own").data] == ["api.test"]

    alias = call(api, "post", f"/domains/{domain_id}/aliases", {"local_part": "hello"})
    assert alias.status_code == 201 and alias.data["address"] == "hello@api.test"
    assert call(api, "patch", f"/domains/{domain_id}", {"catch_all": True}).data["catch_all"]
    assert call(api, "delete", f"/domains/{domain_id}").status_code == 204
    assert not Domain.objects.filter(pk=domain_id).exists()
    assert DeletedAlias.objects.filter(address="hello@api.test").exists()


def test_api_refusals_are_clear(api_client: Callable[[User], Client], user: User) -> None:
    api = api_client(user)
    assert call(api, "post", "/domains", {"name": "alias.test"}).data == {
        "detail": "alias.test belongs to this Mailcloak instance"}
    assert call(api, "post", "/domains", {"name": "bad name"}).data == {
        "detail": "'bad name' is not a domain name"}
    assert call(api, "post", "/domains", {"name": "x.test", "extra": 1}).status_code == 422


@pytest.mark.parametrize(("method", "path", "body"), [
    ("get", "/domains/{pk}", None),
    ("post", "/domains/{pk}/verify", None),
    ("patch", "/domains/{pk}", {"catch_all": True}),
    ("post", "/domains/{pk}/aliases", {"local_part": "intruder"}),
    ("delete", "/domains/{pk}", None),
])
def test_api_another_users_domain_is_not_found(
        api_client: Callable[[User], Client], user: User, other_user: User, zone: Zone,
        method: str, path: str, body: dict[str, Any] | None) -> None:
    domain = verified_domain(user, "api-private.test", zone)
    before = snapshot(domain)
    response = call(api_client(other_user), method, path.format(pk=domain.pk), body)
    assert response.status_code == 404 and response.data == {"detail": "not found"}
    assert snapshot(domain) == before
    assert call(api_client(other_user), "get", "/domains/own").data == []
