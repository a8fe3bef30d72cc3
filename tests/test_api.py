"""The REST API: alias CRUD, domains and mailboxes, errors, and isolation between users."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from mailcloak.accounts.models import ApiToken, Mailbox, User
from mailcloak.aliases.models import Alias, DeletedAlias
from mailcloak.aliases.services import create_alias

API = "/api/v1"


@pytest.fixture(autouse=True)
def _clear_rate_limits(db: None) -> None:
    cache.clear()


@pytest.fixture
def api_client() -> Callable[[User], Client]:
    def make(user: User) -> Client:
        _, token = ApiToken.issue(user, "tests")
        return Client(headers={"Authorization": f"Bearer {token}"})

    return make


@pytest.fixture
def api(api_client: Callable[[User], Client], user: User) -> Client:
    return api_client(user)


def send(client: Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """An API call with a JSON body; returns the response with its JSON decoded as .data."""
    response = getattr(client, method)(API + path, body, content_type="application/json")
    response.data = response.json() if response.content else None
    return response


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "Bearer mc_not-a-real-token", "Bearer ", "Basic dTpw",
                                    "mc_no-scheme", "Bearer " + "mc_" + "x" * 500])
def test_requests_without_a_valid_token_get_401(db: None, alias: Alias, header: str | None):
    client = Client(headers={"Authorization": header} if header else {})
    for method, path in [("get", "/aliases"), ("get", f"/aliases/{alias.pk}"),
                         ("patch", f"/aliases/{alias.pk}"), ("delete", f"/aliases/{alias.pk}"),
                         ("post", "/aliases"), ("get", "/domains"), ("get", "/mailboxes")]:
        response = send(client, method, path, {"enabled": False} if method == "patch" else None)
        assert response.status_code == 401, (method, path)
        assert response.data["detail"].startswith("a valid API token is required")
        assert response["WWW-Authenticate"].startswith("Bearer")
    alias.refresh_from_db()
    assert alias.enabled


def test_session_login_is_not_accepted(logged_in: Client):
    assert logged_in.get(API + "/aliases").status_code == 401


def test_token_of_deactivated_user_is_refused(api: Client, user: User):
    user.is_active = False
    user.save()
    assert send(api, "get", "/aliases").status_code == 401


def test_using_a_token_records_when(api: Client, user: User):
    token = ApiToken.objects.get(user=user)
    assert token.last_used_at is None
    send(api, "get", "/domains")
    token.refresh_from_db()
    assert token.last_used_at is not None


# --- aliases ----------------------------------------------------------------------------------


def test_create_random_alias(api: Client, user: User):
    response = send(api, "post", "/aliases", {"title": "newsletter", "notes": "from the shop"})
    assert response.status_code == 201
    data = response.data
    alias = Alias.objects.get(pk=data["id"], user=user)
    local, _, domain = data["address"].partition("@")
    assert data["address"] == alias.address and domain == "alias.test" == data["domain"]
    assert len(local) == 16 and local.isalnum()
    assert data["title"] == "newsletter" and data["notes"] == "from the shop"
    assert data["mailbox"] == "owner@mailbox.test"
    assert data["enabled"] is True and data["disabled_action"] == "reject"
    assert (data["forwarded_count"], data["blocked_count"], data["replied_count"]) == (0, 0, 0)


def test_create_alias_with_prefix_domain_and_mailbox(api: Client, user: User):
    second = Mailbox.objects.create(user=user, email="second@mailbox.test",
                                    verified_at=timezone.now())
    response = send(api, "post", "/aliases", {"prefix": "Shop", "domain": "second.test",
                                              "mailbox_id": second.pk})
    assert response.status_code == 201, response.data
    assert response.data["address"].startswith("shop.")
    assert response.data["address"].endswith("@second.test")
    assert response.data["mailbox"] == "second@mailbox.test"
    assert response.data["mailbox_id"] == second.pk


@pytest.mark.parametrize(("body", "fragment"), [
    ({"domain": "elsewhere.test"}, "is not one of your alias domains"),
    ({"prefix": "-bad-"}, "a prefix is 1-40 characters"),
    ({"prefix": "bad prefix"}, "a prefix is 1-40 characters"),
])
def test_create_alias_refused_by_the_rules_is_400(api: Client, body: dict[str, str],
                                                  fragment: str):
    response = send(api, "post", "/aliases", body)
    assert response.status_code == 400
    assert fragment in response.data["detail"]
    assert not Alias.objects.exists()


def test_create_alias_to_unverified_mailbox_is_400(api: Client, user: User):
    pending = Mailbox.objects.create(user=user, email="pending@mailbox.test")
    response = send(api, "post", "/aliases", {"mailbox_id": pending.pk})
    assert response.status_code == 400
    assert response.data["detail"] == "pending@mailbox.test is not verified yet"


@pytest.mark.parametrize(("body", "fragment"), [
    ({"title": "x" * 201}, "title: "),
    ({"title": "two\nlines"}, "title: "),
    ({"notes": "nul\x00byte"}, "notes: "),
    ({"mailbox_id": 0}, "mailbox_id: "),
    ({"mailbox_id": "first"}, "mailbox_id: "),
    ({"title": 7}, "title: "),
    ({"enabled": False}, "enabled: "),  # a PATCH field: misspelt or misplaced fields are refused
])
def test_malformed_input_is_422_with_a_one_line_reason(api: Client, body: dict[str, Any],
                                                       fragment: str):
    response = send(api, "post", "/aliases", body)
    assert response.status_code == 422
    assert response.data["detail"].startswith(fragment)
    assert "\n" not in response.data["detail"]


def test_body_that_is_not_json_is_400(api: Client):
    response = api.post(API + "/aliases", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": "Cannot parse request body"}


@pytest.mark.parametrize("body", ["[]", '"title"', "7", "null"])
def test_body_that_is_not_an_object_is_422(api: Client, body: str):
    response = api.post(API + "/aliases", body, content_type="application/json")
    assert response.status_code == 422
    assert response.json()["detail"] == "body: Value error, expected a JSON object"
    assert not Alias.objects.exists()


def test_read_alias(api: Client, alias: Alias):
    response = send(api, "get", f"/aliases/{alias.pk}")
    assert response.status_code == 200
    assert response.data["address"] == alias.address
    assert response.data["title"] == "shopping"
    assert response.data["created_at"].startswith(str(alias.created_at.year))


def test_update_alias(api: Client, user: User, alias: Alias):
    second = Mailbox.objects.create(user=user, email="second@mailbox.test",
                                    verified_at=timezone.now())
    response = send(api, "patch", f"/aliases/{alias.pk}", {
        "enabled": False, "title": "old shop", "notes": "spam since May",
        "disabled_action": "drop", "mailbox_id": second.pk})
    assert response.status_code == 200, response.data
    alias.refresh_from_db()
    assert (alias.enabled, alias.title, alias.notes, alias.disabled_action, alias.mailbox) == (
        False, "old shop", "spam since May", "drop", second)
    assert response.data["enabled"] is False and response.data["mailbox"] == second.email


def test_update_leaves_absent_and_null_fields_alone(api: Client, alias: Alias):
    response = send(api, "patch", f"/aliases/{alias.pk}", {"notes": "n", "title": None})
    assert response.status_code == 200
    alias.refresh_from_db()
    assert (alias.title, alias.notes, alias.enabled) == ("shopping", "n", True)


@pytest.mark.parametrize("body", [{"disabled_action": "bounce"}, {"enabled": "sometimes"}])
def test_update_with_bad_values_is_422(api: Client, alias: Alias, body: dict[str, Any]):
    assert send(api, "patch", f"/aliases/{alias.pk}", body).status_code == 422


def test_update_to_unverified_mailbox_is_400(api: Client, user: User, alias: Alias):
    pending = Mailbox.objects.create(user=user, email="pending@mailbox.test")
    response = send(api, "patch", f"/aliases/{alias.pk}", {"mailbox_id": pending.pk})
    assert response.status_code == 400
    alias.refresh_from_db()
    assert alias.mailbox.email == "owner@mailbox.test"


def test_delete_alias_retires_its_address(api: Client, alias: Alias):
    response = send(api, "delete", f"/aliases/{alias.pk}")
    assert response.status_code == 204 and response.content == b""
    assert not Alias.objects.filter(pk=alias.pk).exists()
    assert DeletedAlias.objects.filter(address=alias.address).exists()
    assert send(api, "get", f"/aliases/{alias.pk}").status_code == 404


def test_list_search_and_pagination(api: Client, user: User):
    made = [create_alias(user, title=f"alias {n}") for n in range(5)]
    create_alias(user, prefix="bank", notes="statements")
    everything = send(api, "get", "/aliases").data
    assert everything["count"] == 6 and len(everything["items"]) == 6
    assert everything["items"][0]["address"].startswith("bank.")  # newest first

    page = send(api, "get", "/aliases?limit=2&offset=3").data
    assert page["count"] == 6 and (page["limit"], page["offset"]) == (2, 3)
    assert [item["id"] for item in page["items"]] == [item["id"]
                                                      for item in everything["items"][3:5]]

    by_notes = send(api, "get", "/aliases?q=STATEMENT").data
    assert [item["notes"] for item in by_notes["items"]] == ["statements"]
    by_title = send(api, "get", "/aliases?q=alias%203").data
    assert [item["id"] for item in by_title["items"]] == [made[3].pk]
    assert send(api, "get", "/aliases?q=100%25").data["count"] == 0  # % is not a wildcard


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "offset=-1", "limit=ten",
                                   "offset=99999999999999999999999"])
def test_list_with_bad_paging_is_422(api: Client, query: str):
    assert send(api, "get", f"/aliases?{query}").status_code == 422


def test_domains(api: Client):
    response = send(api, "get", "/domains")
    assert response.status_code == 200
    assert response.data == [
        {"name": "alias.test", "shared": True, "default": True},
        {"name": "second.test", "shared": True, "default": False},
    ]


def test_mailboxes(api: Client, user: User):
    Mailbox.objects.create(user=user, email="pending@mailbox.test")
    data = send(api, "get", "/mailboxes").data
    assert [(m["email"], m["verified"]) for m in data] == [
        ("owner@mailbox.test", True), ("pending@mailbox.test", False)]


# --- isolation --------------------------------------------------------------------------------


def test_other_users_aliases_are_not_found(api_client: Callable[[User], Client], alias: Alias,
                                           other_user: User):
    intruder = api_client(other_user)
    before = Alias.objects.values().get(pk=alias.pk)
    for method, body in [("get", None), ("patch", {"enabled": False, "title": "mine"}),
                         ("delete", None)]:
        response = send(intruder, method, f"/aliases/{alias.pk}", body)
        assert response.status_code == 404, method
        assert response.data == {"detail": "not found"}
    assert Alias.objects.values().get(pk=alias.pk) == before
    listing = send(intruder, "get", "/aliases").data
    assert listing == {"items": [], "count": 0, "limit": 50, "offset": 0}
    assert [m["email"] for m in send(intruder, "get", "/mailboxes").data] == [
        "intruder@elsewhere.test"]


def test_other_users_mailbox_cannot_be_used(api_client: Callable[[User], Client], user: User,
                                            alias: Alias, other_user: User):
    intruder = api_client(other_user)
    own = create_alias(other_user)
    victim_mailbox = user.mailboxes.get()
    assert send(intruder, "post", "/aliases",
                {"mailbox_id": victim_mailbox.pk}).status_code == 404
    assert send(intruder, "patch", f"/aliases/{own.pk}",
                {"mailbox_id": victim_mailbox.pk}).status_code == 404
    own.refresh_from_db()
    assert own.mailbox.user == other_user
    assert not Alias.objects.filter(user=other_user, mailbox=victim_mailbox).exists()


def test_missing_alias_is_404_and_huge_ids_are_422(api: Client):
    assert send(api, "get", "/aliases/987654").status_code == 404
    assert send(api, "get", "/aliases/99999999999999999999").status_code == 422
    assert send(api, "get", "/aliases/0").status_code == 422


# --- schema -----------------------------------------------------------------------------------


def test_openapi_schema_is_served_and_docs_are_off(client: Client):
    schema = client.get(API + "/openapi.json").json()
    assert schema["info"]["title"] == "Mailcloak API"
    quarantine = {"/api/v1/quarantine" + path for path in (
        "", "/rejections", "/preferences", "/delete", "/{message_id}", "/{message_id}/raw",
        "/{message_id}/release", "/{message_id}/block", "/{message_id}/disable-alias",
        "/blocked-senders/{blocked_id}")}
    assert set(schema["paths"]) == {"/api/v1/aliases", "/api/v1/aliases/{alias_id}",
                                    "/api/v1/aliases/{alias_id}/contacts",
                                    "/api/v1/domains", "/api/v1/mailboxes", "/api/v1/tokens",
                                    "/api/v1/domains/own", "/api/v1/domains/{domain_id}",
                                    "/api/v1/domains/{domain_id}/verify",
                                    "/api/v1/domains/{domain_id}/aliases",
                                    "/api/v1/forwarded", "/api/v1/forwarded/{mail_id}/spam",
                                    *quarantine}
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    assert "security" not in schema["paths"]["/api/v1/tokens"]["post"]
    assert client.get(API + "/docs").status_code == 404
