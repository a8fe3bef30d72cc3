"""Quick actions from the quarantine pages: block (four ways) and undo, disable and undo,
delete, bulk delete, delete all, release with learning; each one logged."""

from __future__ import annotations

import hashlib

import pytest
from django.test import Client

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias, BlockedSender
from mailcloak.aliases.services import create_alias, is_sender_blocked
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.spam.builtin import BuiltinEngine
from mailcloak.mail.spam.verdict import Direction, EngineUnavailable
from mailcloak.quarantine import actions
from mailcloak.quarantine.models import Activity, QuarantinedMessage
from mailcloak.spamdata.models import LearnedMessage, LearnedToken
from tests.support.quarantine import hold, spam_message


def learned_as(raw: bytes) -> bool | None:
    """How the configured (builtin) engine learned `raw`: True spam, False wanted, None not."""
    found = LearnedMessage.objects.filter(digest=hashlib.sha256(raw).hexdigest()).first()
    return None if found is None else found.is_spam


def undo_offer(client: Client) -> dict[str, object]:
    return dict(client.session["quarantine_undo"])


@pytest.mark.parametrize(("what", "scope", "value", "for_alias"), [
    ("address", "alias", "bounce@spam.example", True),
    ("address", "all", "bounce@spam.example", False),
    ("domain", "alias", "spam.example", True),
    ("domain", "all", "spam.example", False),
])
def test_block_the_sender(logged_in: Client, user: User, alias: Alias, what: str, scope: str,
                          value: str, for_alias: bool) -> None:
    other_alias = create_alias(user)
    held = hold(alias)
    response = logged_in.post(f"/quarantine/{held.pk}/block/",
                              {"what": what, "scope": scope, "next": "/quarantine/"})
    assert response.status_code == 302 and response["Location"] == "/quarantine/"
    blocked = BlockedSender.objects.get()
    assert (blocked.value, blocked.alias_id) == (value, alias.pk if for_alias else None)
    assert is_sender_blocked(alias, "bounce@spam.example")
    assert is_sender_blocked(other_alias, "bounce@spam.example") is not for_alias
    assert is_sender_blocked(alias, "friend@elsewhere.example") is False
    assert undo_offer(logged_in)["kind"] == "unblock"
    entry = Activity.objects.get()
    assert (entry.action, entry.target, entry.via) == ("block", value, "web")
    page = logged_in.get("/quarantine/").content.decode()
    assert f"Blocked {value}" in page and "Undo: Unblock" in page


def test_undo_a_block(logged_in: Client, alias: Alias) -> None:
    held = hold(alias)
    logged_in.post(f"/quarantine/{held.pk}/block/", {"what": "address", "scope": "alias"})
    offer = undo_offer(logged_in)
    response = logged_in.post("/quarantine/undo/", {"kind": offer["kind"],
                                                    "object_id": offer["object_id"]})
    assert response.status_code == 302
    assert not BlockedSender.objects.exists()
    assert list(Activity.objects.values_list("action", flat=True)) == ["unblock", "block"]


def test_blocking_again_offers_no_undo_that_would_remove_the_older_block(
        logged_in: Client, user: User, alias: Alias) -> None:
    held = hold(alias)
    logged_in.post(f"/quarantine/{held.pk}/block/", {"what": "address", "scope": "alias"})
    logged_in.post(f"/quarantine/{held.pk}/block/", {"what": "address", "scope": "alias"})
    assert "quarantine_undo" not in logged_in.session
    assert BlockedSender.objects.count() == 1
    assert Activity.objects.count() == 1


def test_the_envelope_sender_is_blocked_and_the_from_address_without_one(
        user: User, alias: Alias) -> None:
    outcome = actions.block_sender_of(hold(alias, mail_from=""), user)
    assert outcome.message == f"Blocked win@spam.example for {alias.address}."


def test_outbound_mail_has_no_sender_to_block(user: User, alias: Alias) -> None:
    held = hold(alias, direction=Direction.OUTBOUND, mail_from=alias.address)
    with pytest.raises(actions.QuarantineError, match="no sender to block"):
        actions.block_sender_of(held, user)
    assert not BlockedSender.objects.exists()


def test_disable_the_alias_and_undo(logged_in: Client, alias: Alias) -> None:
    held = hold(alias)
    response = logged_in.post(f"/quarantine/{held.pk}/disable-alias/")
    assert response["Location"] == f"/quarantine/{held.pk}/"
    alias.refresh_from_db()
    assert not alias.enabled
    offer = undo_offer(logged_in)
    assert offer == {"kind": "enable", "object_id": alias.pk,
                     "label": f"Enable {alias.address} again"}
    logged_in.post("/quarantine/undo/", {"kind": "enable", "object_id": alias.pk})
    alias.refresh_from_db()
    assert alias.enabled
    assert list(Activity.objects.values_list("action", flat=True)) == ["enable", "disable"]


def test_delete_one(logged_in: Client, alias: Alias) -> None:
    held, kept = hold(alias), hold(alias)
    response = logged_in.post(f"/quarantine/{held.pk}/delete/")
    assert response["Location"] == "/quarantine/"
    assert list(QuarantinedMessage.objects.values_list("pk", flat=True)) == [kept.pk]
    entry = Activity.objects.get()
    assert (entry.action, entry.detail, entry.target) == ("delete", "1 message", alias.address)


def test_bulk_delete_selected(logged_in: Client, alias: Alias) -> None:
    first, second, kept = hold(alias), hold(alias), hold(alias)
    logged_in.post("/quarantine/delete/", {"ids": [first.pk, second.pk, "junk", "9" * 30]})
    assert list(QuarantinedMessage.objects.values_list("pk", flat=True)) == [kept.pk]


def test_bulk_delete_needs_a_selection(logged_in: Client, alias: Alias) -> None:
    hold(alias)
    response = logged_in.post("/quarantine/delete/", {}, follow=True)
    assert "Tick the messages to delete first." in response.content.decode()
    assert QuarantinedMessage.objects.count() == 1


def test_delete_all_respects_the_filter(logged_in: Client, user: User, alias: Alias) -> None:
    other = create_alias(user)
    hold(alias), hold(alias), hold(other)
    outbound = hold(alias, direction=Direction.OUTBOUND, mail_from=alias.address)
    logged_in.post("/quarantine/delete/", {"everything": "1", "alias": alias.pk,
                                           "direction": "inbound"})
    assert sorted(QuarantinedMessage.objects.values_list("alias_id", "direction")) == sorted(
        [(other.pk, "inbound"), (outbound.alias_id, "outbound")])
    logged_in.post("/quarantine/delete/", {"everything": "1"})
    assert not QuarantinedMessage.objects.exists()


def test_release_forwards_marked_teaches_and_deletes(logged_in: Client, user: User,
                                                     alias: Alias) -> None:
    raw = spam_message(subject="Actually my newsletter")
    held = hold(alias, raw, score=6.0)
    response = logged_in.post(f"/quarantine/{held.pk}/release/", {"next": "/quarantine/"})
    assert response["Location"] == "/quarantine/"
    assert not QuarantinedMessage.objects.exists()
    queued = QueuedMessage.objects.get()
    assert queued.kind == "forward" and queued.alias_id == alias.pk
    assert list(queued.jobs.values_list("recipient", flat=True)) == [alias.mailbox.email]
    content = bytes(queued.content)
    assert content.startswith(b"X-Mailcloak-Released: yes\r\n")
    assert b"Subject: Actually my newsletter\r\n" in content
    assert b"X-Mailcloak-Alias: " + alias.address.encode() in content
    assert content.endswith(raw.partition(b"\r\n\r\n")[2])  # body and MIME untouched
    assert learned_as(raw) is False
    assert LearnedToken.objects.filter(ham=1, spam=0).count() > 10
    assert Activity.objects.get().action == "release"


def test_release_survives_an_engine_that_cannot_learn(logged_in: Client, alias: Alias,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> BuiltinEngine:
        raise EngineUnavailable("the engine is down")

    monkeypatch.setattr("mailcloak.quarantine.learning.get_engine", unavailable)
    held = hold(alias)
    logged_in.post(f"/quarantine/{held.pk}/release/")
    assert QueuedMessage.objects.count() == 1
    assert not QuarantinedMessage.objects.exists()


@pytest.mark.parametrize(("direction", "score"), [(Direction.OUTBOUND, 6.0),
                                                  (Direction.INBOUND, 10.0)])
def test_what_cannot_be_released(logged_in: Client, alias: Alias, direction: Direction,
                                 score: float) -> None:
    raw = spam_message()
    held = hold(alias, raw, direction=direction, score=score)
    response = logged_in.post(f"/quarantine/{held.pk}/release/", follow=True)
    assert "can be released" in response.content.decode()
    assert QuarantinedMessage.objects.filter(pk=held.pk).exists()
    assert not QueuedMessage.objects.filter(kind="forward").exists()
    assert learned_as(raw) is None


def test_the_owners_sensitivity_moves_the_release_line(user: User, alias: Alias) -> None:
    held = hold(alias, score=9.0)
    assert actions.can_release(held, user)
    user.spam_sensitivity = User.Sensitivity.STRICT  # reject line 10 -> 8
    assert not actions.can_release(held, user)


def test_actions_need_post(logged_in: Client, alias: Alias) -> None:
    held = hold(alias)
    for action in ("block", "disable-alias", "delete", "release"):
        assert logged_in.get(f"/quarantine/{held.pk}/{action}/").status_code == 405
    assert QuarantinedMessage.objects.filter(pk=held.pk).exists()


def test_actions_need_the_csrf_token(user: User, alias: Alias) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    held = hold(alias)
    assert client.post(f"/quarantine/{held.pk}/delete/").status_code == 403
    assert QuarantinedMessage.objects.filter(pk=held.pk).exists()


def test_next_never_leaves_the_site(logged_in: Client, alias: Alias) -> None:
    held = hold(alias)
    response = logged_in.post(f"/quarantine/{held.pk}/disable-alias/",
                              {"next": "https://evil.example/"})
    assert response["Location"] == f"/quarantine/{held.pk}/"
