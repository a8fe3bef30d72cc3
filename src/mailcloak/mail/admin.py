"""Admin for the mail queue and bounces. Message content is never shown here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path
from django.utils import timezone

from mailcloak.mail import jobs
from mailcloak.mail.models import (
    Bounce,
    DeliveryJob,
    QueuedMessage,
    RateCounter,
    RefusedReply,
    SendingPause,
)
from mailcloak.observability.operator import OPERATE_PERMISSION, operator_view


class ReadOnlyAdmin(admin.ModelAdmin):
    """The queue is written by the mail server and workers only; the admin looks and deletes."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class DeliveryJobInline(admin.TabularInline):
    model = DeliveryJob
    extra = 0
    fields = ("recipient", "state", "attempts", "next_attempt_at", "last_error")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(QueuedMessage)
class QueuedMessageAdmin(ReadOnlyAdmin):
    list_display = ("queue_id", "kind", "mail_from", "size", "alias", "created_at")
    list_filter = ("kind",)
    search_fields = ("queue_id", "mail_from", "alias__address")
    exclude = ("content",)
    inlines = (DeliveryJobInline,)


class DeferredFilter(admin.SimpleListFilter):
    title = "waiting"
    parameter_name = "waiting"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("deferred", "Deferred (failed at least once)"), ("new", "Not yet tried")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        queued = queryset.filter(state=DeliveryJob.State.QUEUED)
        if self.value() == "deferred":
            return queued.filter(attempts__gt=0)
        if self.value() == "new":
            return queued.filter(attempts=0)
        return queryset


@admin.register(DeliveryJob)
class DeliveryJobAdmin(ReadOnlyAdmin):
    """The queue. Its operator page (queue and today's figures) is at operator/."""

    list_display = ("message", "domain", "recipient", "state", "attempts", "next_attempt_at",
                    "short_error", "delivered_to", "expires_at")
    list_filter = ("state", DeferredFilter)
    search_fields = ("recipient", "domain", "message__queue_id")
    list_select_related = ("message",)
    actions = ("retry_now", "give_up")

    def get_urls(self) -> list[URLPattern]:
        operator = self.admin_site.admin_view(
            lambda request: operator_view(request, self.admin_site))
        return [path("operator/", operator, name="mail_operator"), *super().get_urls()]

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(OPERATE_PERMISSION)

    @admin.display(description="last error")
    def short_error(self, job: DeliveryJob) -> str:
        return job.last_error[:120]

    @admin.action(description="Retry now", permissions=("operate",))
    def retry_now(self, request: HttpRequest, queryset: QuerySet[DeliveryJob]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        self.message_user(request, f"{jobs.retry_now(ids)} of {len(ids)} deliveries will be "
                          "retried within seconds (finished or in-hand ones are skipped).")

    @admin.action(description="Give up and bounce", permissions=("operate",))
    def give_up(self, request: HttpRequest, queryset: QuerySet[DeliveryJob]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        self.message_user(request, f"{jobs.give_up(ids)} of {len(ids)} deliveries bounced "
                          "(finished or in-hand ones are skipped).")


@admin.register(Bounce)
class BounceAdmin(ReadOnlyAdmin):
    list_display = ("recipient", "alias", "source", "kind", "created_at")
    list_filter = ("source", "kind")
    search_fields = ("recipient", "alias__address")


@admin.register(RefusedReply)
class RefusedReplyAdmin(ReadOnlyAdmin):
    """Forged or unauthenticated replies through reverse aliases: attacks on an alias."""

    list_display = ("alias", "kind", "mail_from", "header_from", "peer_ip", "reason",
                    "created_at")
    list_filter = ("kind",)
    search_fields = ("alias__address", "mail_from", "header_from", "peer_ip")
    list_select_related = ("alias",)


@admin.register(RateCounter)
class RateCounterAdmin(ReadOnlyAdmin):
    """Sending and alias creation limits in use (scope "user-..." keys are user ids, "alias-..."
    keys alias ids)."""

    list_display = ("scope", "key", "window_start", "count")
    list_filter = ("scope",)
    search_fields = ("scope", "key")


class ActivePauseFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Paused now"), ("lifted", "Resumed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(lifted_at__isnull=True)
        if self.value() == "lifted":
            return queryset.filter(lifted_at__isnull=False)
        return queryset


@admin.register(SendingPause)
class SendingPauseAdmin(ReadOnlyAdmin):
    """Aliases and accounts whose sending mail.reputation paused; resuming is the action."""

    list_display = ("user", "alias", "reason", "created_at", "lifted_at")
    list_filter = (ActivePauseFilter,)
    search_fields = ("user__email", "alias__address", "reason")
    list_select_related = ("user", "alias")
    actions = ("resume_sending",)

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> HttpResponse:
        active = SendingPause.objects.filter(lifted_at__isnull=True).count()
        if active:
            self.message_user(request, f"{active} alias(es) or account(s) have sending paused "
                              "for bounces or spam complaints.", messages.WARNING)
        return super().changelist_view(request, extra_context)

    @admin.action(description="Resume sending")
    def resume_sending(self, request: HttpRequest, queryset: QuerySet[SendingPause]) -> None:
        resumed = queryset.filter(lifted_at__isnull=True).update(lifted_at=timezone.now())
        self.message_user(request, f"Sending resumed for {resumed} pause(s).")
