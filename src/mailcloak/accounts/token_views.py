"""The tokens page (/account/tokens/): create API tokens and revoke them.

A new token is shown once, in the response to the form that created it, and never stored in
the session or a flash message. With two-factor authentication on, creating a token needs the
current TOTP code again, so a borrowed signed-in browser is not enough to mint API access.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from mailcloak.accounts import tokens
from mailcloak.accounts.models import User


class AuthenticatedRequest(HttpRequest):
    user: User


class TokenForm(forms.Form):
    name = forms.CharField(max_length=tokens.NAME_MAX_LENGTH, initial=tokens.DEFAULT_NAME,
                           help_text="A label to recognise the token by, e.g. the script using it.")

    def __init__(self, *args: Any, needs_otp: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if needs_otp:
            self.fields["otp"] = forms.CharField(
                label="Two-factor code", max_length=32,
                help_text="The current code from your authenticator app.",
                widget=forms.TextInput(attrs={"autocomplete": "one-time-code",
                                              "inputmode": "numeric"}))


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def token_list(request: AuthenticatedRequest) -> HttpResponse:
    user = request.user
    form = TokenForm(request.POST or None, needs_otp=tokens.requires_second_factor(user))
    new_token = None
    status = 200
    if request.method == "POST" and form.is_valid():
        try:
            _, new_token = tokens.issue_for_user(request, user, name=form.cleaned_data["name"],
                                                 otp=form.cleaned_data.get("otp"))
        except tokens.TokenRefused as exc:
            form.add_error("otp" if "otp" in form.fields else None, str(exc))
            status = 429 if isinstance(exc, tokens.TooManyAttempts) else 400
        else:
            form = TokenForm(needs_otp=tokens.requires_second_factor(user))
    elif request.method == "POST":
        status = 400
    context = {"form": form, "new_token": new_token,
               "tokens": user.api_tokens.order_by("-created_at", "-id"),
               "nav_section": "settings", "settings_section": "tokens"}
    return render(request, "accounts/tokens.html", context, status=status)


@login_required
@require_POST
def token_revoke(request: AuthenticatedRequest, token_id: int) -> HttpResponse:
    if not tokens.revoke(request.user, token_id):
        raise Http404("no such token")
    messages.success(request, "Token revoked: programs using it can no longer sign in.")
    return redirect("accounts:tokens")
