"""Admin views of the quarantine: metadata only. Operators never see held content here."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from mailcloak.quarantine.models import Activity, QuarantinedMessage, RejectionLog


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(QuarantinedMessage)
class QuarantinedMessageAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "alias", "direction", "mail_from", "score", "expires_at")
    list_filter = ("direction",)
    search_fields = ("alias__address", "mail_from")
    exclude = ("content", "subject", "header_from", "authentication_results", "reasons")
    list_select_related = ("alias",)


@admin.register(RejectionLog)
class RejectionLogAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "alias", "mail_from", "reason", "expires_at")
    search_fields = ("alias__address", "mail_from")
    exclude = ("subject", "header_from")
    list_select_related = ("alias",)


@admin.register(Activity)
class ActivityAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "user", "action", "via", "target")
    list_filter = ("action", "via")
    list_select_related = ("user",)
