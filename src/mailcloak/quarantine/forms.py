"""Forms of the quarantine pages: filters, the block choices, bulk delete, undo, preferences."""

from __future__ import annotations

from typing import Any

from django import forms

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias
from mailcloak.quarantine.models import Direction


class FilterForm(forms.Form):
    alias = forms.ModelChoiceField(queryset=Alias.objects.none(), required=False,
                                   empty_label="All aliases")
    direction = forms.ChoiceField(choices=[("", "Both directions"), *Direction.choices],
                                  required=False)

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["alias"].queryset = Alias.objects.filter(user=user).order_by("address")  # type: ignore[attr-defined]


class BlockForm(forms.Form):
    """What to block: the sender's address or domain, for this alias or for all of them."""

    what = forms.ChoiceField(choices=[("address", "This address"), ("domain", "Whole domain")],
                             initial="address")
    scope = forms.ChoiceField(choices=[("alias", "This alias"), ("all", "All my aliases")],
                              initial="alias")

    @property
    def whole_domain(self) -> bool:
        return self.cleaned_data["what"] == "domain"

    @property
    def all_aliases(self) -> bool:
        return self.cleaned_data["scope"] == "all"


class UndoForm(forms.Form):
    kind = forms.ChoiceField(choices=[("unblock", "unblock"), ("enable", "enable")])
    object_id = forms.IntegerField(min_value=1, max_value=2**63 - 1)


class PreferencesForm(forms.ModelForm):
    class Meta:
        model = User
        fields = ("quarantine_digest", "spam_sensitivity")
        widgets = {"quarantine_digest": forms.RadioSelect, "spam_sensitivity": forms.RadioSelect}
        help_texts = {
            "quarantine_digest": "Emails listing held mail, with links to block a sender or "
                                 "disable an alias.",
            "spam_sensitivity": "How doubtful a message must be before it is held instead of "
                                "forwarded.",
        }


def parse_id(text: str | None) -> int:
    """A database id from a form field, or 0 for anything that cannot be one."""
    return int(text) if text and text.isascii() and text.isdigit() and len(text) < 19 else 0
