"""The quarantine in the REST API: list, read, raw download, each quick action, bulk delete,
rejections and preferences."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from mailcloak.accounts.models import ApiToken, User
from mailcloak.aliases.models import Alias, BlockedSender
from mailcloak.aliases.services import create_alias
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.spam.verdict import Direction
from mailcloak.quarantine.models import Activity, QuarantinedMessage
from mailcloak.quarantine.store import log_rejection
from mailcloak.spamdata.models import LearnedMessage
from tests.support.quarantine import hold, spam_message

API = "/api/v1/quarantine"


@pytest.fixture
def api(user: User) -> Client:
    _, token = ApiToken.issue(user, "tests")
    return Client(headers={"Authorization": f"Bearer {token}"})


def call(client: Client, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    response = getattr(client, method)(API + path, body, content_type="application/json")
    is_json = response.content and response["Content-Type"].startswith("application/json")
    response.data = response.json() if is_json else None
    return response


def test_list_and_filters(api: Client, user: User, alias: Alias) -> None:
    other = create_alias(user)
    first = hold(alias, spam_message(subject="one"))
    hold(other, spam_message(subject="two"))
    hold(alias, direction=Direction.OUTBOUND, mail_from=alias.address)
    response = call(api, "get", "")
    assert response.status_code == 200 and response.data["count"] == 3
    listed = call(api, "get", f"?alias_id={alias.pk}&direction=inbound").data
    assert listed["count"] == 1
    [item] = listed["items"]
    assert item["id"] == first.pk and item["subject"] == "one"
    assert item["alias"] == alias.address and item["direction"] == "inbound"
    assert item["releasable"] is True and item["score"] == 7.5
    assert [r["code"] for r in item["top_reasons"]] == ["LINK_TEXT_MISMATCH", "SPF_FAIL",
                                                        "BAYES_50"]
    assert "content" not in item and "reasons" not in item


def test_read_one(api: Client, alias: Alias) -> None:
    held = hold(alias)
    data = call(api, "get", f"/{held.pk}").data
    assert data["authentication_results"].startswith("mail.alias.test; spf=fail")
    assert len(data["reasons"]) == 3 and data["engine"] == "builtin"
    assert data["mail_from"] == "bounce@spam.example"


def test_raw_download(api: Client, alias: Alias) -> None:
    raw = spam_message()
    held = hold(alias, raw)
    response = api.get(f"{API}/{held.pk}/raw")
    assert response.status_code == 200
    assert response["Content-Type"] == "message/rfc822"
    assert response.content == raw


def test_block_and_undo(api: Client, alias: Alias) -> None:
    held = hold(alias)
    response = call(api, "post", f"/{held.pk}/block", {"what": "domain", "scope": "all"})
    assert response.status_code == 200
    assert response.data["detail"] == "Blocked spam.example for all your aliases."
    blocked = BlockedSender.objects.get()
    assert response.data["blocked_sender_id"] == blocked.pk and blocked.alias_id is None
    again = call(api, "post", f"/{held.pk}/block", {"what": "domain", "scope": "all"})
    assert again.data["blocked_sender_id"] is None
    assert call(api, "delete", f"/blocked-senders/{blocked.pk}").status_code == 200
    assert not BlockedSender.objects.exists()
    assert Activity.objects.filter(via="api").count() == 2


def test_block_refusals_are_400(api: Client, alias: Alias) -> None:
    held = hold(alias, direction=Direction.OUTBOUND, mail_from=alias.address)
    response = call(api, "post", f"/{held.pk}/block", {})
    assert response.status_code == 400 and "no sender to block" in response.data["detail"]
    bad = call(api, "post", f"/{held.pk}/block", {"what": "everything"})
    assert bad.status_code == 422


def test_disable_alias(api: Client, alias: Alias) -> None:
    held = hold(alias)
    response = call(api, "post", f"/{held.pk}/disable-alias")
    assert response.status_code == 200 and "Disabled" in response.data["detail"]
    alias.refresh_from_db()
    assert not alias.enabled


def test_release(api: Client, alias: Alias) -> None:
    held = hold(alias)
    response = call(api, "post", f"/{held.pk}/release")
    assert response.status_code == 200 and "on its way" in response.data["detail"]
    assert QueuedMessage.objects.filter(kind="forward").count() == 1
    assert LearnedMessage.objects.get().is_spam is False
    assert not QuarantinedMessage.objects.exists()
    outbound = hold(alias, direction=Direction.OUTBOUND, mail_from=alias.address)
    assert call(api, "post", f"/{outbound.pk}/release").status_code == 400


def test_delete_one_and_many(api: Client, alias: Alias) -> None:
    one, two, three, four = (hold(alias) for _ in range(4))
    assert call(api, "delete", f"/{one.pk}").status_code == 204
    assert call(api, "post", "/delete", {"ids": [two.pk, three.pk]}).data == {"deleted": 2}
    assert call(api, "post", "/delete", {}).status_code == 400
    assert call(api, "post", "/delete", {"everything": True}).data == {"deleted": 1}
    assert not QuarantinedMessage.objects.exists()
    assert call(api, "get", f"/{four.pk}").status_code == 404


def test_rejections(api: Client, alias: Alias) -> None:
    log_rejection(alias=alias, mail_from="x@spam.example", header_from="", subject="Refused",
                  reason="spam score 15")
    data = call(api, "get", "/rejections").data
    assert data["count"] == 1 and data["items"][0]["reason"] == "spam score 15"


def test_preferences(api: Client, user: User) -> None:
    assert call(api, "get", "/preferences").data == {"quarantine_digest": "daily",
                                                     "spam_sensitivity": "normal"}
    response = call(api, "patch", "/preferences", {"spam_sensitivity": "relaxed"})
    assert response.data == {"quarantine_digest": "daily", "spam_sensitivity": "relaxed"}
    assert call(api, "patch", "/preferences", {"quarantine_digest": "hourly"}).status_code == 422
    user.refresh_from_db()
    assert user.spam_sensitivity == "relaxed"


def test_every_endpoint_needs_a_token(alias: Alias) -> None:
    held = hold(alias)
    anonymous = Client()
    for method, path in [("get", ""), ("get", f"/{held.pk}"), ("get", f"/{held.pk}/raw"),
                         ("post", f"/{held.pk}/release"), ("post", f"/{held.pk}/block"),
                         ("post", f"/{held.pk}/disable-alias"), ("delete", f"/{held.pk}"),
                         ("post", "/delete"), ("get", "/rejections"), ("get", "/preferences")]:
        assert call(anonymous, method, path, {}).status_code == 401, (method, path)
    assert QuarantinedMessage.objects.filter(pk=held.pk).exists()
