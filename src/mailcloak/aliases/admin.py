"""Admin for domains, aliases, retired addresses, contacts and blocked senders."""

from __future__ import annotations

from django.contrib import admin

from mailcloak.aliases.models import Alias, BlockedSender, Contact, DeletedAlias, Domain


@admin.register(Domain)
class DomainAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "active", "verified_at", "checked_at", "catch_all",
                    "created_at")
    list_filter = ("active", "catch_all")
    search_fields = ("name", "owner__email")
    raw_id_fields = ("owner",)
    readonly_fields = ("verification_token", "checked_at", "failing_since", "failed_checks",
                       "check_results")


@admin.register(Alias)
class AliasAdmin(admin.ModelAdmin):
    list_display = ("address", "user", "mailbox", "enabled", "forwarded_count", "blocked_count",
                    "replied_count", "created_at")
    list_filter = ("enabled", "disabled_action", "domain")
    search_fields = ("address", "title", "user__email", "mailbox__email")
    raw_id_fields = ("user", "mailbox", "domain")
    readonly_fields = ("forwarded_count", "blocked_count", "replied_count")


@admin.register(DeletedAlias)
class DeletedAliasAdmin(admin.ModelAdmin):
    list_display = ("address", "deleted_at")
    search_fields = ("address",)


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ("email", "alias", "reverse_address", "forwarded_count", "replied_count",
                    "created_at")
    search_fields = ("email", "reverse_address", "alias__address")
    raw_id_fields = ("alias",)


@admin.register(BlockedSender)
class BlockedSenderAdmin(admin.ModelAdmin):
    list_display = ("value", "kind", "user", "alias", "created_at")
    list_filter = ("kind",)
    search_fields = ("value", "user__email", "alias__address")
    raw_id_fields = ("user", "alias")
