"""The API for sending from an alias: new conversations and the reverse aliases to write to."""

from __future__ import annotations

import pytest
from django.test import Client

from mailcloak.accounts.models import ApiToken, User
from mailcloak.aliases.models import Alias, Contact

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client: Client, user: User) -> Client:
    _token, secret = ApiToken.issue(user, "test")
    client.defaults["HTTP_AUTHORIZATION"] = f"Bearer {secret}"
    return client


def test_a_conversation_is_started_and_listed(api: Client, alias: Alias) -> None:
    created = api.post(f"/api/v1/aliases/{alias.pk}/contacts",
                       {"email": "New@Example.org", "name": "New Person"},
                       content_type="application/json")
    assert created.status_code == 201
    body = created.json()
    contact = Contact.objects.get(alias=alias)
    assert body["email"] == "new@example.org" and body["display_name"] == "New Person"
    assert body["reverse_address"] == contact.reverse_address
    listed = api.get(f"/api/v1/aliases/{alias.pk}/contacts").json()
    assert [c["reverse_address"] for c in listed] == [contact.reverse_address]


def test_a_bad_address_is_a_400(api: Client, alias: Alias) -> None:
    response = api.post(f"/api/v1/aliases/{alias.pk}/contacts", {"email": "nope"},
                        content_type="application/json")
    assert response.status_code == 400 and "not a valid email" in response.json()["detail"]
    assert not Contact.objects.exists()


def test_someone_elses_alias_is_not_found(api: Client, other_user: User) -> None:
    from mailcloak.aliases.services import create_alias

    theirs = create_alias(other_user)
    response = api.post(f"/api/v1/aliases/{theirs.pk}/contacts", {"email": "a@example.org"},
                        content_type="application/json")
    assert response.status_code == 404
    assert api.get(f"/api/v1/aliases/{theirs.pk}/contacts").status_code == 404


def test_the_sending_name_is_set_through_the_api(api: Client, alias: Alias) -> None:
    response = api.patch(f"/api/v1/aliases/{alias.pk}", {"display_name": "Shop Me"},
                         content_type="application/json")
    assert response.status_code == 200 and response.json()["display_name"] == "Shop Me"


def test_a_contact_reads_as_blocked_while_a_rule_stops_its_mail(api: Client,
                                                               alias: Alias) -> None:
    from mailcloak.aliases.services import block_sender

    api.post(f"/api/v1/aliases/{alias.pk}/contacts", {"email": "pest@junk.example"},
             content_type="application/json")
    api.post(f"/api/v1/aliases/{alias.pk}/contacts", {"email": "friend@example.org"},
             content_type="application/json")

    def blocked() -> dict[str, bool]:
        listed = api.get(f"/api/v1/aliases/{alias.pk}/contacts").json()
        return {c["email"]: c["blocked"] for c in listed}

    assert blocked() == {"pest@junk.example": False, "friend@example.org": False}
    rule = block_sender(alias.user, "junk.example")  # a domain, for every alias
    assert blocked() == {"pest@junk.example": True, "friend@example.org": False}
    rule.delete()
    assert blocked()["pest@junk.example"] is False
