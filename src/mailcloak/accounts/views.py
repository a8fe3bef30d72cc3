"""Account pages: the settings overview, mailboxes (add, verify, delete) and account deletion.

Login, signup, email, password and two-factor pages are allauth's, styled by our templates.
"""

from __future__ import annotations

from allauth.mfa.utils import is_mfa_enabled
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.cache import cache
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from mailcloak.accounts.forms import DeleteAccountForm, MailboxAddForm, MailboxDeleteForm
from mailcloak.accounts.links import public_link
from mailcloak.accounts.models import Mailbox, User
from mailcloak.aliases.services import delete_alias
from mailcloak.project.web import AuthenticatedRequest, form_data

VERIFY_SALT = "mailcloak.accounts.mailbox-verification"
VERIFY_MAX_AGE = 3 * 86400  # seconds a mailbox verification link stays valid
RESEND_COOLDOWN = 180  # seconds between two verification emails to one mailbox


@login_required
def account_settings(request: AuthenticatedRequest) -> HttpResponse:
    return render(request, "accounts/settings.html", {
        "mailboxes": request.user.mailboxes.all(),
        "mfa_enabled": is_mfa_enabled(request.user),
        "alias_count": request.user.aliases.count(),
    })


# --- mailboxes -------------------------------------------------------------------------------


def verification_token(mailbox: Mailbox) -> str:
    return signing.dumps({"mailbox": mailbox.pk, "email": mailbox.email}, salt=VERIFY_SALT)


def send_verification(mailbox: Mailbox) -> bool:
    """Email `mailbox` its verification link, at most once per cooldown; False if too soon."""
    if not cache.add(f"mailcloak.mailbox-verification:{mailbox.pk}", True, RESEND_COOLDOWN):
        return False
    link = public_link(reverse("accounts:mailbox_verify", args=[verification_token(mailbox)]))
    context = {"mailbox": mailbox, "link": link, "valid_days": VERIFY_MAX_AGE // 86400}
    EmailMessage(
        subject="[Mailcloak] Verify your mailbox " + mailbox.email,
        body=render_to_string("accounts/email/mailbox_verification.txt", context),
        to=[mailbox.email],
    ).send()
    return True


@login_required
def mailbox_list(request: AuthenticatedRequest) -> HttpResponse:
    form = MailboxAddForm(form_data(request), user=request.user)
    if request.method == "POST" and form.is_valid():
        mailbox = Mailbox.objects.create(user=request.user, email=form.cleaned_data["email"])
        send_verification(mailbox)
        messages.success(request, f"We sent a verification link to {mailbox.email}.")
        return redirect("accounts:mailboxes")
    mailboxes = request.user.mailboxes.annotate(alias_count=Count("aliases"))
    return render(request, "accounts/mailboxes.html", {
        "form": form, "mailboxes": mailboxes, "can_delete": len(mailboxes) > 1,
    }, status=400 if form.errors else 200)


@login_required
@require_POST
def mailbox_resend(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(Mailbox, pk=pk, user=request.user, verified_at__isnull=True)
    if send_verification(mailbox):
        messages.success(request, f"We sent a new verification link to {mailbox.email}.")
    else:
        messages.warning(request, "A link was sent a moment ago; check your inbox first.")
    return redirect("accounts:mailboxes")


@login_required
def mailbox_verify(request: AuthenticatedRequest, token: str) -> HttpResponse:
    """GET shows a confirmation button (mail scanners follow links); POST verifies."""
    try:
        claim = signing.loads(token, salt=VERIFY_SALT, max_age=VERIFY_MAX_AGE)
    except signing.BadSignature:  # also raised for expired links
        return render(request, "accounts/mailbox_verify.html", {"invalid": True}, status=400)
    mailbox = get_object_or_404(Mailbox, pk=claim["mailbox"], email=claim["email"],
                                user=request.user)
    if request.method == "POST" and not mailbox.is_verified:
        try:
            with transaction.atomic():
                mailbox.verified_at = timezone.now()
                mailbox.save(update_fields=["verified_at"])
        except IntegrityError:
            messages.error(request, f"{mailbox.email} is already verified by another account.")
        else:
            messages.success(request, f"{mailbox.email} is verified.")
        return redirect("accounts:mailboxes")
    return render(request, "accounts/mailbox_verify.html", {"mailbox": mailbox})


@login_required
def mailbox_delete(request: AuthenticatedRequest, pk: int) -> HttpResponse:
    mailbox = get_object_or_404(Mailbox, pk=pk, user=request.user)
    form = MailboxDeleteForm(form_data(request), mailbox=mailbox)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            if form.alias_count:
                mailbox.aliases.update(mailbox=form.cleaned_data["move_to"])
            mailbox.delete()
        messages.success(request, f"Deleted the mailbox {mailbox.email}.")
        return redirect("accounts:mailboxes")
    return render(request, "accounts/mailbox_delete.html", {"mailbox": mailbox, "form": form},
                  status=400 if form.errors else 200)


# --- account deletion ----------------------------------------------------------------------


def delete_account(user: User) -> None:
    """Delete `user` and everything they own; their alias addresses are retired for good."""
    with transaction.atomic():
        for alias in user.aliases.all():
            delete_alias(alias)
        user.delete()  # mailboxes, blocked senders, tokens and 2FA devices cascade


@login_required
def account_delete(request: AuthenticatedRequest) -> HttpResponse:
    form = DeleteAccountForm(form_data(request), user=request.user)
    if request.method == "POST" and form.is_valid():
        user = request.user
        logout(request)
        delete_account(user)
        messages.success(request, "Your account and all its aliases are deleted.")
        return redirect("account_login")
    return render(request, "accounts/delete.html", {
        "form": form, "alias_count": request.user.aliases.count(),
    }, status=400 if form.errors else 200)
