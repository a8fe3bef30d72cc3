"""Forms of the account pages: mailboxes and account deletion."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox, User, normalize_address
from mailcloak.aliases.models import Domain

MAX_PENDING_MAILBOXES = 5


class MailboxAddForm(forms.Form):
    email = forms.EmailField(label="Email address", max_length=254,
                             help_text="A real address you read. We send it a verification link.")

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_email(self) -> str:
        email = normalize_address(self.cleaned_data["email"])
        domain = email.rpartition("@")[2]
        # Forwarding an alias to another alias would loop through Mailcloak forever.
        alias_domain = Domain.objects.filter(name=domain).exists()
        if alias_domain or domain in mailcloak_settings.get().domains:
            raise forms.ValidationError("An alias address can't be a mailbox.")
        if self.user.mailboxes.filter(email=email).exists():
            raise forms.ValidationError("This address is already one of your mailboxes.")
        pending = self.user.mailboxes.filter(verified_at__isnull=True).count()
        if pending >= MAX_PENDING_MAILBOXES:
            raise forms.ValidationError("Verify or delete your pending mailboxes first.")
        return email


class MailboxDeleteForm(forms.Form):
    """Deleting a mailbox that aliases still use moves those aliases to another mailbox."""

    move_to = forms.ModelChoiceField(queryset=Mailbox.objects.none(), required=False,
                                     label="Move its aliases to", empty_label=None)

    def __init__(self, *args: Any, mailbox: Mailbox, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mailbox = mailbox
        self.alias_count = mailbox.aliases.count()
        field = self.fields["move_to"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = self.move_targets()
        if not self.alias_count:
            del self.fields["move_to"]

    def move_targets(self) -> QuerySet[Mailbox]:
        return Mailbox.objects.filter(user_id=self.mailbox.user_id, verified_at__isnull=False) \
            .exclude(pk=self.mailbox.pk)

    def clean(self) -> dict[str, Any] | None:
        cleaned = super().clean()
        others = Mailbox.objects.filter(user_id=self.mailbox.user_id).exclude(pk=self.mailbox.pk)
        if not others.exists():
            raise forms.ValidationError("This is your only mailbox; add another one first.")
        if self.mailbox.is_verified and not others.filter(verified_at__isnull=False).exists():
            raise forms.ValidationError(
                "This is your only verified mailbox; verify another one first.")
        if self.alias_count and not (cleaned or {}).get("move_to"):
            raise forms.ValidationError("Choose a verified mailbox for the aliases that use it.")
        return cleaned


class DeleteAccountForm(forms.Form):
    password = forms.CharField(label="Your password", strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete":
                                                                 "current-password"}))

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password: str = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise forms.ValidationError("That is not your password.")
        return password
