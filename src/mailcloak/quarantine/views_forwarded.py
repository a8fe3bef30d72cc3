"""The forwarded-mail log: what reached the owner lately, with a "Spam" report for mail the
filter let through."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from mailcloak import settings as mailcloak_settings
from mailcloak.project.web import AuthenticatedRequest
from mailcloak.quarantine.forwarded import report_spam
from mailcloak.quarantine.models import ForwardedMail

PER_PAGE = 50


@login_required
def forwarded_list(request: AuthenticatedRequest) -> HttpResponse:
    mail = (ForwardedMail.objects.live().filter(user=request.user).select_related("alias")
            .defer("features"))
    return render(request, "quarantine/forwarded.html", {
        "page_obj": Paginator(mail, PER_PAGE).get_page(request.GET.get("page")),
        "retention_days": mailcloak_settings.get().quarantine_days,
        "filter_query": "",
    })


@login_required
@require_POST
def forwarded_spam(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    mail = get_object_or_404(ForwardedMail.objects.live(), pk=pk, user=request.user)
    report = report_spam(request.user, mail)
    if not report.first:
        messages.info(request, "You had already reported this message.")
    elif report.learned:
        messages.success(request, "Reported as spam: the filter has learned from it.")
    else:
        messages.success(request, "Reported as spam. The spam engine in use learns only from "
                         "whole messages, which are not kept once forwarded.")
    return redirect("quarantine:forwarded")
