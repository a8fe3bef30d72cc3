"""The pages behind the one-click links in quarantine emails, usable without logging in.

GET only shows what the link would do (mail scanners open links); the page's POST does it
and offers an undo. The signed token is the only authority: it names the user and the
message, and the message must still belong to that user and be within its retention.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from mailcloak.aliases.models import BlockedSender
from mailcloak.quarantine import actions
from mailcloak.quarantine.actions import Outcome, QuarantineError
from mailcloak.quarantine.forms import BlockForm, parse_id
from mailcloak.quarantine.links import BadLink, LinkAction, LinkClaim, read_token
from mailcloak.quarantine.models import Activity, QuarantinedMessage

VIA = Activity.Via.EMAIL


@never_cache
def action_link(request: HttpRequest, token: str) -> HttpResponse:
    try:
        claim = read_token(token)
    except BadLink as exc:
        return _page(request, "quarantine/link_invalid.html", {"problem": str(exc)}, 400)
    held = _claimed_message(claim)
    if held is None:
        return _page(request, "quarantine/link_invalid.html", {
            "problem": "This message is no longer in the quarantine: it was released, "
                       "deleted or has expired."}, 404)
    context: dict[str, object] = {"held": held, "action": str(claim.action),
                                  "block_form": BlockForm(), "done": None}
    if request.method == "POST":
        try:
            context["done"] = _act(request, held, claim.action)
        except QuarantineError as exc:
            context["error"] = str(exc)
    return _page(request, "quarantine/link.html", context, 200)


def _claimed_message(claim: LinkClaim) -> QuarantinedMessage | None:
    return (QuarantinedMessage.objects.live().select_related("alias", "user")
            .filter(pk=claim.message_id, user_id=claim.user_id, user__is_active=True).first())


def _act(request: HttpRequest, held: QuarantinedMessage, action: LinkAction) -> Outcome:
    user = held.user
    if request.POST.get("op") == "undo":
        return _undo(request, held, action)
    if action is LinkAction.DISABLE:
        return actions.disable_alias(held.alias, user, via=VIA)
    form = BlockForm(request.POST)
    if not form.is_valid():
        raise QuarantineError("Choose what to block.")
    return actions.block_sender_of(held, user, whole_domain=form.whole_domain,
                                   all_aliases=form.all_aliases, via=VIA)


def _undo(request: HttpRequest, held: QuarantinedMessage, action: LinkAction) -> Outcome:
    """Take back what this link did: only the block of this message's sender, or the disable
    of this message's alias."""
    if action is LinkAction.DISABLE:
        return actions.enable_alias(held.alias, held.user, via=VIA)
    blocked = BlockedSender.objects.select_related("alias").filter(
        pk=parse_id(request.POST.get("object_id")), user=held.user,
        value__in=[held.block_address, held.block_domain]).first()
    if blocked is None:
        raise QuarantineError("That block no longer exists.")
    return actions.unblock(held.user, blocked, via=VIA)


def _page(request: HttpRequest, template: str, context: dict[str, object],
          status: int) -> HttpResponse:
    response = render(request, template, context, status=status)
    response["Referrer-Policy"] = "no-referrer"  # the token is in the URL
    return response
