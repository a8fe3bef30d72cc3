"""Alias pages: the list (search, create, quick toggle), one alias's details, blocked senders.

Every lookup is scoped to the signed-in user, so another user's ids give 404.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from mailcloak.accounts.models import User
from mailcloak.aliases.forms import (
    AliasCreateForm,
    AliasEditForm,
    BlockSenderForm,
    NewConversationForm,
)
from mailcloak.aliases.models import Alias, BlockedSender, Contact
from mailcloak.aliases.services import (
    AliasError,
    block_sender,
    create_alias,
    delete_alias,
    domain_and_parents,
)
from mailcloak.mail.contacts import contact_for
from mailcloak.mail.models import Bounce, RefusedReply
from mailcloak.mail.reputation import is_paused
from mailcloak.project.web import AuthenticatedRequest, form_data

ALIASES_PER_PAGE = 25
RECENT_BOUNCES = 10


def _back(request: HttpRequest, default: str) -> HttpResponse:
    """Redirect to the form's `next` field when it is a local URL, else to `default`."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return redirect(target)
    return redirect(default)


def search_aliases(user: User, query: str) -> QuerySet[Alias]:
    aliases = Alias.objects.filter(user=user).select_related("mailbox")
    if query:
        aliases = aliases.filter(Q(address__icontains=query) | Q(title__icontains=query)
                                 | Q(notes__icontains=query))
    return aliases


@login_required
def alias_list(request: AuthenticatedRequest) -> HttpResponse:
    form = AliasCreateForm(form_data(request), user=request.user)
    if request.method == "POST" and form.is_valid():
        try:
            alias = create_alias(request.user, domain=form.cleaned_data["domain"],
                                 prefix=form.cleaned_data["custom_prefix"] or None,
                                 mailbox=form.cleaned_data.get("mailbox"),
                                 title=form.cleaned_data["title"])
        except AliasError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Created {alias.address}.")
            return redirect("aliases:list")
    query = request.GET.get("q", "").strip()
    page = Paginator(search_aliases(request.user, query), ALIASES_PER_PAGE) \
        .get_page(request.GET.get("page"))
    return render(request, "aliases/list.html", {
        "create_form": form, "query": query, "page_obj": page,
        "has_aliases": query or page.paginator.count,
    }, status=400 if form.errors else 200)


@login_required
def alias_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    alias = get_object_or_404(Alias.objects.select_related("mailbox"), pk=pk, user=request.user)
    form = AliasEditForm(form_data(request), instance=alias)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Alias saved.")
        return redirect("aliases:detail", pk=alias.pk)
    return render(request, "aliases/detail.html", {
        "alias": alias, "form": form, "block_form": BlockSenderForm(),
        "blocked_senders": alias.blocked_senders.all(),
        "contacts": _contacts_with_blocks(alias),
        "bounces": Bounce.objects.filter(alias=alias)[:RECENT_BOUNCES],
        "conversation_form": NewConversationForm(),
        "refused_replies": RefusedReply.objects.filter(alias=alias)[:RECENT_BOUNCES],
        "sending_paused": is_paused(alias),
    }, status=400 if form.errors else 200)


@dataclass(frozen=True)
class ContactRow:
    contact: Contact
    block: BlockedSender | None  # the owner's rule that stops this contact's mail, if any


def _contacts_with_blocks(alias: Alias) -> list[ContactRow]:
    """The alias's contacts with the rule blocking each, if any: one for this alias or for all
    of the owner's aliases, naming the address or one of its parent domains."""
    rules = {(rule.kind, rule.value): rule for rule in BlockedSender.objects.filter(
        Q(alias=alias) | Q(alias__isnull=True), user_id=alias.user_id).order_by("alias_id")}
    rows = []
    for contact in alias.contacts.all():
        candidates = [(BlockedSender.Kind.ADDRESS, contact.email)] + [
            (BlockedSender.Kind.DOMAIN, domain) for domain in domain_and_parents(contact.email)]
        rows.append(ContactRow(contact, next((rules[c] for c in candidates if c in rules), None)))
    return rows


@login_required
@require_POST
def alias_new_conversation(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """A contact for a new address, so the owner can write to it from the alias."""
    alias = get_object_or_404(Alias.objects.select_related("domain"), pk=pk, user=request.user)
    form = NewConversationForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a valid email address to write to.")
        return redirect("aliases:detail", pk=alias.pk)
    contact = contact_for(alias, form.cleaned_data["email"], form.cleaned_data["name"])
    messages.success(request, f"To write to {contact.email} from this alias, send your message "
                              f"to {contact.reverse_address}.")
    return redirect("aliases:detail", pk=alias.pk)


@login_required
@require_POST
def alias_toggle(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    alias = get_object_or_404(Alias, pk=pk, user=request.user)
    alias.enabled = not alias.enabled
    alias.save(update_fields=["enabled"])
    state = "enabled" if alias.enabled else "disabled"
    messages.success(request, f"{alias.address} is now {state}.")
    return _back(request, reverse("aliases:detail", args=[alias.pk]))


@login_required
def alias_delete(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    alias = get_object_or_404(Alias, pk=pk, user=request.user)
    if request.method == "POST":
        address = alias.address
        delete_alias(alias)
        messages.success(request, f"Deleted {address}. The address will never be issued again.")
        return redirect("aliases:list")
    return render(request, "aliases/delete.html", {"alias": alias})


@login_required
@require_POST
def alias_block(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    """Block a sender for this alias only (from the alias page or one of its contacts)."""
    alias = get_object_or_404(Alias, pk=pk, user=request.user)
    form = BlockSenderForm(request.POST)
    if form.is_valid():
        try:
            blocked = block_sender(request.user, form.cleaned_data["value"], alias=alias)
        except AliasError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Blocked {blocked.value} for {alias.address}.")
    else:
        messages.error(request, "Enter a sender address or domain to block.")
    return redirect("aliases:detail", pk=alias.pk)


@login_required
def blocked_list(request: AuthenticatedRequest) -> HttpResponse:
    form = BlockSenderForm(form_data(request), user=request.user)
    if request.method == "POST" and form.is_valid():
        alias = form.cleaned_data["alias"]
        try:
            blocked = block_sender(request.user, form.cleaned_data["value"], alias=alias)
        except AliasError as exc:
            form.add_error("value", str(exc))
        else:
            scope = alias.address if alias else "all your aliases"
            messages.success(request, f"Blocked {blocked.value} for {scope}.")
            return redirect("aliases:blocked")
    blocked_senders = BlockedSender.objects.filter(user=request.user).select_related("alias")
    return render(request, "aliases/blocked.html", {"form": form,
                                                    "blocked_senders": blocked_senders},
                  status=400 if form.errors else 200)


@login_required
@require_POST
def blocked_delete(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    blocked = get_object_or_404(BlockedSender, pk=pk, user=request.user)
    blocked.delete()
    messages.success(request, f"Unblocked {blocked.value}.")
    return _back(request, reverse("aliases:blocked"))
