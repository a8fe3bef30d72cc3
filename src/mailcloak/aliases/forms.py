"""Forms of the alias pages. Every choice offered is limited to the signed-in user's objects."""

from __future__ import annotations

from typing import Any

from django import forms

from mailcloak.accounts.models import Mailbox, User
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import domains_for


def verified_mailboxes(user: User) -> forms.ModelChoiceField[Mailbox]:
    """A mailbox choice: nothing is ever forwarded to an unverified address."""
    return forms.ModelChoiceField(
        queryset=Mailbox.objects.filter(user=user, verified_at__isnull=False),
        empty_label=None, label="Forward to",
    )


class AliasCreateForm(forms.Form):
    custom_prefix = forms.CharField(
        required=False, max_length=40, label="Prefix (optional)",
        widget=forms.TextInput(attrs={"placeholder": "e.g. shop", "autocomplete": "off",
                                      "autocapitalize": "none", "spellcheck": "false"}),
        help_text="Empty: a fully random address. With a prefix, a random suffix is added.",
    )
    domain = forms.ChoiceField(label="Domain")
    title = forms.CharField(required=False, max_length=200, label="What is it for? (optional)")

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["domain"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = [(d.name, "@" + d.name) for d in domains_for(user)]
        if Mailbox.objects.filter(user=user, verified_at__isnull=False).count() > 1:
            self.fields["mailbox"] = verified_mailboxes(user)  # with one, it is the default


class AliasEditForm(forms.ModelForm):
    class Meta:
        model = Alias
        fields = ("title", "display_name", "notes", "mailbox", "disabled_action")
        labels = {"disabled_action": "When disabled", "display_name": "Name shown when sending"}
        widgets = {"notes": forms.Textarea(attrs={"rows": 4})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["mailbox"] = verified_mailboxes(self.instance.user)


class NewConversationForm(forms.Form):
    """Write from this alias to someone new: creates the contact and its reverse alias."""

    email = forms.EmailField(label="Their address", max_length=254)
    name = forms.CharField(label="Their name", max_length=200, required=False)


class BlockSenderForm(forms.Form):
    value = forms.CharField(
        max_length=320, label="Sender address or domain",
        widget=forms.TextInput(attrs={"placeholder": "spam@example.com or example.com",
                                      "autocapitalize": "none", "spellcheck": "false"}),
    )

    def __init__(self, *args: Any, user: User | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if user is not None:
            self.fields["alias"] = forms.ModelChoiceField(
                queryset=Alias.objects.filter(user=user), required=False,
                empty_label="All my aliases", label="For",
            )
