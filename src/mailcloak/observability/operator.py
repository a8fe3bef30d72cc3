"""The operator's page in the admin: mail waiting for a retry, with "retry now" and "give up
and bounce", and today's figures as charts. Staff with the delivery job view permission may
look; acting needs the change permission (superusers have both)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.utils import timezone

from mailcloak.mail.jobs import give_up, retry_now
from mailcloak.mail.models import DeliveryJob
from mailcloak.observability import figures
from mailcloak.observability.charts import bar_chart

VIEW_PERMISSION = "mail.view_deliveryjob"
OPERATE_PERMISSION = "mail.change_deliveryjob"
SHOWN = 200  # deferred jobs listed, soonest retry first
HOUR_LABELS = [f"{hour:02d}" for hour in range(24)]


def can_operate(request: HttpRequest) -> bool:
    return bool(request.user.is_staff and request.user.has_perm(OPERATE_PERMISSION))


def deferred_jobs() -> QuerySet[DeliveryJob]:
    """Waiting jobs that failed at least once."""
    return (DeliveryJob.objects.filter(state=DeliveryJob.State.QUEUED, attempts__gt=0)
            .select_related("message").order_by("next_attempt_at", "id"))


def act(request: HttpRequest, action: str, job_ids: list[int]) -> None:
    """Carry out "retry" or "bounce" on `job_ids` and tell the operator what came of it."""
    if not can_operate(request):
        raise PermissionDenied
    if action == "retry":
        done = retry_now(job_ids)
        verb = "will be retried within seconds"
    elif action == "bounce":
        done = give_up(job_ids)
        verb = "bounced (recorded for their owners, content dropped)"
    else:
        messages.error(request, "Unknown action.")
        return
    messages.success(request, f"{done} of {len(job_ids)} deliveries {verb}.")
    if done < len(job_ids):
        messages.warning(request, f"{len(job_ids) - done} were skipped: already finished, "
                         "or in a worker's hands right now (try again in a minute).")


def roughly(seconds: float) -> str:
    """`3 days`, `5 hours`, `1 minute`, `40 seconds`: the largest whole unit."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' * (count != 1)}"
    count = int(seconds)
    return f"{count} second{'s' * (count != 1)}"


def operator_view(request: HttpRequest, site: admin.AdminSite) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    if request.method == "POST":
        ids = [int(value) for value in request.POST.getlist("job") if value.isdigit()]
        act(request, request.POST.get("action", ""), ids)
        return redirect(request.path)
    now = timezone.now()
    queue = figures.queue_state(now)
    context: dict[str, Any] = {
        **site.each_context(request),
        "title": "Mail queue and today's figures",
        "queue": queue,
        "oldest_age": roughly(queue.oldest_age),
        "jobs": deferred_jobs()[:SHOWN],
        "shown": SHOWN,
        "can_operate": can_operate(request),
        "day": figures.day_start(now),
        "charts": [(series, bar_chart(f"{series.title} by hour (UTC)", series.hours,
                                      HOUR_LABELS))
                   for series in figures.day_by_hour(now)],
    }
    return TemplateResponse(request, "admin/mail/operator.html", context)
