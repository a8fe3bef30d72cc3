"""Admin for the mail queue and bounces. Message content is never shown here."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from mailcloak.mail.models import Bounce, DeliveryJob, QueuedMessage, RateCounter, RefusedReply


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


@admin.register(DeliveryJob)
class DeliveryJobAdmin(ReadOnlyAdmin):
    list_display = ("message", "recipient", "state", "attempts", "next_attempt_at",
                    "delivered_to", "expires_at")
    list_filter = ("state",)
    search_fields = ("recipient", "domain", "message__queue_id")
    list_select_related = ("message",)


@admin.register(Bounce)
class BounceAdmin(ReadOnlyAdmin):
    list_display = ("recipient", "alias", "source", "created_at")
    list_filter = ("source",)
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
