"""Quarantine pages: the list (with the rejection log), one message, its safe HTML body, its
raw download, the activity log and the owner's preferences.

Every lookup is scoped to the signed-in user and to rows still within their retention, so
another user's ids (or expired ones) give 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import urlencode
from django.views.decorators.cache import never_cache
from django.views.decorators.clickjacking import xframe_options_sameorigin

from mailcloak import settings as mailcloak_settings
from mailcloak.project.web import AuthenticatedRequest, form_data
from mailcloak.quarantine.actions import can_release
from mailcloak.quarantine.crypto import QuarantineKeyError
from mailcloak.quarantine.forms import BlockForm, FilterForm, PreferencesForm
from mailcloak.quarantine.models import Activity, QuarantinedMessage, RejectionLog
from mailcloak.quarantine.reader import MessageDisplay, read_message
from mailcloak.quarantine.store import message_bytes

MESSAGES_PER_PAGE = 25
REJECTIONS_SHOWN = 50
ACTIVITY_PER_PAGE = 50
UNDO_SESSION_KEY = "quarantine_undo"

# The HTML body is served on its own, framed by the message page, under a policy that allows
# nothing but its own inline styles and inline (data:) images.
BODY_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox")


def held_messages(request: AuthenticatedRequest) -> QuerySet[QuarantinedMessage]:
    return QuarantinedMessage.objects.live().filter(user=request.user)


def owned_message(request: AuthenticatedRequest, pk: int) -> QuarantinedMessage:
    return get_object_or_404(held_messages(request).select_related("alias"), pk=pk)


def pop_undo(request: AuthenticatedRequest) -> dict[str, Any] | None:
    """The undo offer of the action just done, shown once beside its confirmation."""
    undo = request.session.pop(UNDO_SESSION_KEY, None)
    return undo if isinstance(undo, dict) else None


@login_required
def quarantine_list(request: AuthenticatedRequest) -> HttpResponse:
    filters = FilterForm(request.GET or None, user=request.user)
    held = held_messages(request).select_related("alias").defer("content")
    rejections = RejectionLog.objects.live().filter(user=request.user).select_related("alias")
    selected = {"alias": "", "direction": ""}
    if filters.is_valid():
        alias, direction = filters.cleaned_data["alias"], filters.cleaned_data["direction"]
        if alias:
            held, rejections = held.filter(alias=alias), rejections.filter(alias=alias)
            selected["alias"] = str(alias.pk)
        if direction:
            held = held.filter(direction=direction)
            selected["direction"] = direction
    page = Paginator(held, MESSAGES_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "quarantine/list.html", {
        "filters": filters, "page_obj": page,
        "filter_query": urlencode({key: value for key, value in selected.items() if value}),
        "selected_alias": selected["alias"], "selected_direction": selected["direction"],
        "retention_days": mailcloak_settings.get().quarantine_days,
        "rows": [(message, can_release(message, request.user)) for message in page],
        "rejections": rejections[:REJECTIONS_SHOWN], "block_form": BlockForm(),
        "undo": pop_undo(request),
    })


@login_required
@never_cache
def message_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    held = owned_message(request, pk)
    try:
        display = read_message(message_bytes(held))
    except QuarantineKeyError as exc:
        messages.error(request, str(exc))
        display = MessageDisplay()
    return render(request, "quarantine/detail.html", {
        "held": held, "display": display, "releasable": can_release(held, request.user),
        "block_form": BlockForm(), "undo": pop_undo(request),
    })


@login_required
@never_cache
@xframe_options_sameorigin
def message_body(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """The sanitised HTML body as a document of its own, for the sandboxed iframe."""
    held = owned_message(request, pk)
    try:
        display = read_message(message_bytes(held))
    except QuarantineKeyError:
        raise Http404("unreadable") from None
    if display.html is None:
        raise Http404("no HTML body")
    response = render(request, "quarantine/body.html", {"body": display.html.html})
    response["Content-Security-Policy"] = BODY_CSP
    response["Referrer-Policy"] = "no-referrer"
    return response


@login_required
@never_cache
def message_raw(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """The message as it arrived, as an .eml download: never shown inline."""
    held = owned_message(request, pk)
    try:
        raw = message_bytes(held)
    except QuarantineKeyError as exc:
        messages.error(request, str(exc))
        return redirect("quarantine:detail", pk=held.pk)
    response = HttpResponse(raw, content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="quarantined-{held.pk}.eml"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@login_required
def activity_log(request: AuthenticatedRequest) -> HttpResponse:
    entries = Activity.objects.live().filter(user=request.user)
    page = Paginator(entries, ACTIVITY_PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "quarantine/activity.html", {"page_obj": page, "filter_query": ""})


@login_required
def preferences(request: AuthenticatedRequest) -> HttpResponse:
    form = PreferencesForm(form_data(request), instance=request.user)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Quarantine settings saved.")
        return redirect("quarantine:settings")
    return render(request, "quarantine/settings.html", {"form": form},
                  status=400 if form.errors else 200)
