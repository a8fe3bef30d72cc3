"""Admin for users, mailboxes and API tokens (only a token's hash is stored, never shown)."""

from __future__ import annotations

from typing import Any, ClassVar

from allauth.account.models import EmailAddress
from django import forms
from django.contrib import admin
from django.contrib.admin.options import InlineModelAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.http import HttpRequest
from django.utils import timezone

from mailcloak.accounts.models import ApiToken, Mailbox, User, normalize_address


class UserAddForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        email = normalize_address(self.cleaned_data["email"])
        if Mailbox.objects.filter(email=email, verified_at__isnull=False).exists():
            raise forms.ValidationError("This address is another user's verified mailbox.")
        return email


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class MailboxInline(admin.TabularInline):
    model = Mailbox
    extra = 0
    fields = ("email", "verified_at", "created_at")


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserAddForm
    form = UserEditForm
    inlines: ClassVar = [MailboxInline]
    list_display = ("email", "is_active", "is_staff", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("email",)
    ordering = ("email",)
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups",
                                    "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "usable_password", "password1",
                                                 "password2")}),
    )

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[InlineModelAdmin[Any, Any]]]:
        return list(self.inlines) if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        """A user added by an operator has a verified login address and first mailbox, as
        `mailcloak user add` gives."""
        super().save_model(request, obj, form, change)
        if not change:
            EmailAddress.objects.create(user=obj, email=obj.email, verified=True, primary=True)
            Mailbox.objects.create(user=obj, email=obj.email, verified_at=timezone.now())


@admin.register(Mailbox)
class MailboxAdmin(admin.ModelAdmin):
    list_display = ("email", "user", "verified_at", "created_at")
    list_filter = (("verified_at", admin.EmptyFieldListFilter),)
    search_fields = ("email", "user__email")
    raw_id_fields = ("user",)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "created_at", "last_used_at")
    search_fields = ("name", "user__email")
    raw_id_fields = ("user",)
    readonly_fields = ("token_hash", "created_at", "last_used_at")

    def has_add_permission(self, request: object) -> bool:
        return False  # a token is shown to its owner once; the admin could never show it
