"""Admin for the local outbox: metadata only; the web app's outbox page shows the text."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from mailcloak.outbox.models import LocalOutboxMessage


@admin.register(LocalOutboxMessage)
class LocalOutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("recipient", "subject", "mail_from", "created_at")
    search_fields = ("recipient", "subject", "mail_from")
    exclude = ("content",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
