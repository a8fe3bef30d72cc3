"""Forms of the domain pages."""

from __future__ import annotations

from typing import Any

from django import forms

from mailcloak.accounts.models import Mailbox, User
from mailcloak.aliases.forms import verified_mailboxes

_ADDRESS_INPUT = {"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"}


class DomainAddForm(forms.Form):
    name = forms.CharField(
        max_length=253, label="Domain",
        widget=forms.TextInput(attrs={"placeholder": "example.com", **_ADDRESS_INPUT}),
    )


class NamedAliasForm(forms.Form):
    """An alias on one of the user's own domains, at the address they choose."""

    local_part = forms.CharField(
        max_length=64, label="Address",
        widget=forms.TextInput(attrs={"placeholder": "e.g. shop", **_ADDRESS_INPUT}),
    )
    title = forms.CharField(required=False, max_length=200, label="What is it for? (optional)")

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if Mailbox.objects.filter(user=user, verified_at__isnull=False).count() > 1:
            self.fields["mailbox"] = verified_mailboxes(user)  # with one, it is the default


class CatchAllForm(forms.Form):
    enabled = forms.BooleanField(required=False)
