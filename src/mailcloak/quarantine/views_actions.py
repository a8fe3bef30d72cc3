"""The quick actions of the quarantine pages: one POST each, back to the page they came from
with a confirmation and, for a block or a disable, an undo button."""

from __future__ import annotations

from dataclasses import asdict

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from mailcloak.aliases.models import Alias, BlockedSender
from mailcloak.project.web import AuthenticatedRequest
from mailcloak.quarantine import actions
from mailcloak.quarantine.actions import Outcome, QuarantineError
from mailcloak.quarantine.forms import BlockForm, UndoForm, parse_id
from mailcloak.quarantine.views import UNDO_SESSION_KEY, held_messages, owned_message

MAX_BULK_IDS = 1000


def _back(request: AuthenticatedRequest, default: str) -> HttpResponse:
    """To the form's `next` field when it is a local URL, else to `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect(default)


def _report(request: AuthenticatedRequest, outcome: Outcome) -> None:
    messages.success(request, outcome.message)
    if outcome.undo is not None:
        request.session[UNDO_SESSION_KEY] = asdict(outcome.undo)
    else:
        request.session.pop(UNDO_SESSION_KEY, None)


def _list_url() -> str:
    return reverse("quarantine:list")


@login_required
@require_POST
def block(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    held = owned_message(request, pk)
    form = BlockForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose what to block.")
    else:
        try:
            _report(request, actions.block_sender_of(held, request.user,
                                                     whole_domain=form.whole_domain,
                                                     all_aliases=form.all_aliases))
        except QuarantineError as exc:
            messages.error(request, str(exc))
    return _back(request, reverse("quarantine:detail", args=[held.pk]))


@login_required
@require_POST
def disable_alias(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    held = owned_message(request, pk)
    _report(request, actions.disable_alias(held.alias, request.user))
    return _back(request, reverse("quarantine:detail", args=[held.pk]))


@login_required
@require_POST
def delete(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    held = owned_message(request, pk)
    actions.delete_messages(request.user, held_messages(request).filter(pk=held.pk))
    messages.success(request, "Deleted the message.")
    return redirect(_list_url())


@login_required
@require_POST
def release(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    held = owned_message(request, pk)
    try:
        _report(request, actions.release(held, request.user))
    except QuarantineError as exc:
        messages.error(request, str(exc))
        return _back(request, reverse("quarantine:detail", args=[held.pk]))
    return _back(request, _list_url())


@login_required
@require_POST
def bulk_delete(request: AuthenticatedRequest) -> HttpResponse:
    """Delete the ticked messages, or with `everything` all held messages (of one alias or
    direction when the list was filtered)."""
    selected = held_messages(request)
    if request.POST.get("everything"):
        if alias_id := parse_id(request.POST.get("alias", "")):
            selected = selected.filter(alias_id=alias_id)
        if request.POST.get("direction") in {"inbound", "outbound"}:
            selected = selected.filter(direction=request.POST["direction"])
    else:
        ids = [pk for pk in map(parse_id, request.POST.getlist("ids")[:MAX_BULK_IDS]) if pk]
        if not ids:
            messages.error(request, "Tick the messages to delete first.")
            return _back(request, _list_url())
        selected = selected.filter(pk__in=ids)
    count = actions.delete_messages(request.user, selected)
    messages.success(request, f"Deleted {count} message{'s' if count != 1 else ''}.")
    return _back(request, _list_url())


@login_required
@require_POST
def undo(request: AuthenticatedRequest) -> HttpResponse:
    form = UndoForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Nothing to undo.")
        return _back(request, _list_url())
    object_id = form.cleaned_data["object_id"]
    if form.cleaned_data["kind"] == "unblock":
        blocked = get_object_or_404(BlockedSender.objects.select_related("alias"),
                                    pk=object_id, user=request.user)
        _report(request, actions.unblock(request.user, blocked))
    else:
        alias = get_object_or_404(Alias, pk=object_id, user=request.user)
        _report(request, actions.enable_alias(alias, request.user))
    return _back(request, _list_url())

