"""Domain pages: the user's own domains, the records to publish with their status, checks,
catch-all, and aliases at any address on a verified domain.

Every lookup is scoped to the signed-in user, so another user's ids give 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from mailcloak.aliases.domains import (
    DomainError,
    add_domain,
    create_named_alias,
    delete_domain,
    records_to_publish,
    set_catch_all,
)
from mailcloak.aliases.forms_domains import CatchAllForm, DomainAddForm, NamedAliasForm
from mailcloak.aliases.models import Domain
from mailcloak.aliases.services import AliasError
from mailcloak.aliases.verification import check_domain_now
from mailcloak.mail.dkimkeys import signing_keys
from mailcloak.project.web import AuthenticatedRequest, form_data


def _own_domain(request: AuthenticatedRequest, pk: int) -> Domain:
    return get_object_or_404(Domain, pk=pk, owner=request.user)


@login_required
def domain_list(request: AuthenticatedRequest) -> HttpResponse:
    form = DomainAddForm(form_data(request))
    if request.method == "POST" and form.is_valid():
        try:
            domain = add_domain(request.user, form.cleaned_data["name"])
        except DomainError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, f"Added {domain.name}. Publish the records below, then "
                                      "check the domain.")
            return redirect("aliases:domain_detail", pk=domain.pk)
    domains = Domain.objects.filter(owner=request.user)
    return render(request, "aliases/domain_list.html", {"form": form, "domains": domains},
                  status=400 if form.errors else 200)


@login_required
def domain_detail(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = _own_domain(request, pk)
    return _detail(request, domain, NamedAliasForm(user=request.user))


def _detail(request: AuthenticatedRequest, domain: Domain, alias_form: NamedAliasForm,
            status: int = 200) -> HttpResponse:
    keys = signing_keys()
    return render(request, "aliases/domain_detail.html", {
        "domain": domain, "records": records_to_publish(domain, keys), "keys": keys,
        "checks": domain.check_results, "alias_form": alias_form,
        "aliases": domain.aliases.select_related("mailbox")[:50],
        "alias_count": domain.aliases.count(),
    }, status=status)


@login_required
@require_POST
def domain_check(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = _own_domain(request, pk)
    try:
        outcome = check_domain_now(domain)
    except DomainError as exc:
        messages.error(request, str(exc))
        return redirect("aliases:domain_detail", pk=domain.pk)
    if domain.verified_at is not None and outcome.proven:
        messages.success(request, f"{domain.name} is verified and receives mail.")
    elif domain.verified_at is not None:
        messages.error(request, f"{domain.name} failed this check; it keeps receiving mail "
                                "for a grace period. Fix the records marked below.")
    else:
        messages.error(request, f"{domain.name} is not verified yet: fix the records marked "
                                "below (DNS changes can take a while to be seen).")
    return redirect("aliases:domain_detail", pk=domain.pk)


@login_required
@require_POST
def domain_catch_all(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = _own_domain(request, pk)
    form = CatchAllForm(request.POST)
    enabled = form.is_valid() and form.cleaned_data["enabled"]
    set_catch_all(domain, enabled)
    messages.success(request, f"Catch-all is {'on' if enabled else 'off'} for {domain.name}.")
    return redirect("aliases:domain_detail", pk=domain.pk)


@login_required
@require_POST
def domain_alias_create(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = _own_domain(request, pk)
    form = NamedAliasForm(request.POST, user=request.user)
    if form.is_valid():
        try:
            alias = create_named_alias(request.user, domain.name,
                                       form.cleaned_data["local_part"],
                                       mailbox=form.cleaned_data.get("mailbox"),
                                       title=form.cleaned_data["title"])
        except AliasError as exc:
            form.add_error("local_part", str(exc))
        else:
            messages.success(request, f"Created {alias.address}.")
            return redirect("aliases:domain_detail", pk=domain.pk)
    return _detail(request, domain, form, status=400)


@login_required
def domain_delete(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    domain = _own_domain(request, pk)
    if request.method == "POST":
        count = delete_domain(domain)
        messages.success(request, f"Removed {domain.name} and its {count} "
                                  f"alias{'es' if count != 1 else ''}.")
        return redirect("aliases:domain_list")
    return render(request, "aliases/domain_delete.html", {
        "domain": domain, "alias_count": domain.aliases.count()})
