"""No user can see or act on another user's quarantine: not through a page, an emailed link, or
an API call. Every attempt is a 404 and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.forms.models import model_to_dict
from django.test import Client

from mailcloak.accounts.models import ApiToken, User
from mailcloak.aliases.models import Alias, BlockedSender
from mailcloak.aliases.services import block_sender, create_alias
from mailcloak.mail.models import QueuedMessage
from mailcloak.quarantine.links import LinkAction, make_token
from mailcloak.quarantine.models import Activity, QuarantinedMessage, RejectionLog
from mailcloak.quarantine.store import log_rejection
from tests.support.quarantine import hold, spam_message

SECRET_SUBJECT = "the victim's private subject"

PAGES = [
    ("get", "/quarantine/{held}/", {}),
    ("get", "/quarantine/{held}/body/", {}),
    ("get", "/quarantine/{held}/raw/", {}),
    ("post", "/quarantine/{held}/block/", {"what": "domain", "scope": "all"}),
    ("post", "/quarantine/{held}/disable-alias/", {}),
    ("post", "/quarantine/{held}/delete/", {}),
    ("post", "/quarantine/{held}/release/", {}),
    ("post", "/quarantine/undo/", {"kind": "unblock", "object_id": "{blocked}"}),
    ("post", "/quarantine/undo/", {"kind": "enable", "object_id": "{alias}"}),
]

API_CALLS = [
    ("get", "/api/v1/quarantine/{held}", None),
    ("get", "/api/v1/quarantine/{held}/raw", None),
    ("post", "/api/v1/quarantine/{held}/release", None),
    ("post", "/api/v1/quarantine/{held}/block", {"what": "domain", "scope": "all"}),
    ("post", "/api/v1/quarantine/{held}/disable-alias", None),
    ("delete", "/api/v1/quarantine/{held}", None),
    ("delete", "/api/v1/quarantine/blocked-senders/{blocked}", None),
]


@pytest.fixture
def victim(user: User, alias: Alias) -> dict[str, Any]:
    held = hold(alias, spam_message(subject=SECRET_SUBJECT))
    log_rejection(alias=alias, mail_from="x@spam.example", header_from="",
                  subject=SECRET_SUBJECT + " (refused)", reason="spam")
    Alias.objects.filter(pk=alias.pk).update(enabled=False)  # so that "enable" would show
    return {"held": held.pk, "alias": alias.pk,
            "blocked": block_sender(user, "victims-friend.example").pk}


def snapshot(user: User) -> dict[str, list[dict[str, Any]]]:
    def rows(queryset: Any) -> list[dict[str, Any]]:
        return [model_to_dict(row) for row in queryset.order_by("pk")]

    return {
        "held": rows(QuarantinedMessage.objects.filter(user=user).defer("content")),
        "aliases": rows(Alias.objects.filter(user=user)),
        "blocked": rows(BlockedSender.objects.all()),
        "rejections": rows(RejectionLog.objects.filter(user=user)),
        "queued": rows(QueuedMessage.objects.all()),
        "activity": rows(Activity.objects.all()),
    }


def fill(template: str, values: dict[str, Any]) -> str:
    return template.format(**values)


@pytest.mark.parametrize(("method", "url", "data"), PAGES)
def test_pages_give_404_to_another_user(client: Client, user: User, other_user: User,
                                        victim: dict[str, Any], method: str, url: str,
                                        data: dict[str, str]) -> None:
    before = snapshot(user)
    client.force_login(other_user)
    response = getattr(client, method)(fill(url, victim),
                                       {k: fill(v, victim) for k, v in data.items()})
    assert response.status_code == 404
    assert snapshot(user) == before


def test_lists_show_nothing_of_another_user(client: Client, other_user: User,
                                            victim: dict[str, Any]) -> None:
    client.force_login(other_user)
    create_alias(other_user)
    for url in ("/quarantine/", f"/quarantine/?alias={victim['alias']}", "/quarantine/activity/"):
        page = client.get(url).content.decode()
        assert SECRET_SUBJECT not in page, url
        assert "spam.example" not in page, url


def test_bulk_delete_cannot_reach_another_users_mail(client: Client, user: User,
                                                     other_user: User,
                                                     victim: dict[str, Any]) -> None:
    before = snapshot(user)
    client.force_login(other_user)
    client.post("/quarantine/delete/", {"ids": [victim["held"]]})
    client.post("/quarantine/delete/", {"everything": "1", "alias": victim["alias"]})
    assert snapshot(user) == before


@pytest.mark.parametrize(("method", "url", "body"), API_CALLS)
def test_api_gives_404_to_another_user(user: User, other_user: User, victim: dict[str, Any],
                                       method: str, url: str, body: dict[str, str] | None) -> None:
    _, token = ApiToken.issue(other_user, "intruder")
    api = Client(headers={"Authorization": f"Bearer {token}"})
    before = snapshot(user)
    response = getattr(api, method)(fill(url, victim), body, content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"detail": "not found"}
    assert snapshot(user) == before


def test_api_lists_show_nothing_of_another_user(user: User, other_user: User,
                                                victim: dict[str, Any]) -> None:
    _, token = ApiToken.issue(other_user, "intruder")
    api = Client(headers={"Authorization": f"Bearer {token}"})
    before = snapshot(user)
    for path in ("", f"?alias_id={victim['alias']}", "/rejections"):
        assert api.get("/api/v1/quarantine" + path).json()["count"] == 0
    response = api.post("/api/v1/quarantine/delete",
                        {"everything": True, "alias_id": victim["alias"]},
                        content_type="application/json")
    assert response.json() == {"deleted": 0}
    api.post("/api/v1/quarantine/delete", {"ids": [victim["held"]]},
             content_type="application/json")
    assert snapshot(user) == before


def test_a_session_does_not_widen_what_a_link_may_do(client: Client, user: User,
                                                     other_user: User, alias: Alias) -> None:
    """The intruder's own link, logged in as the intruder, still acts only on the intruder's
    message, and undoing through it cannot touch the victim's blocks."""
    victims_block = block_sender(user, "spam.example")
    theirs = hold(create_alias(other_user))
    client.force_login(other_user)
    link = f"/quarantine/link/{make_token(theirs, LinkAction.BLOCK)}/"
    response = client.post(link, {"op": "undo", "object_id": victims_block.pk})
    assert "That block no longer exists." in response.content.decode()
    assert BlockedSender.objects.filter(pk=victims_block.pk).exists()
    alias.refresh_from_db()
    assert alias.enabled
