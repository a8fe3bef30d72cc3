"""Issuing and revoking API tokens: the rules shared by the REST API and the web page.

A token is issued for an email and password (plus a TOTP code when the user has two-factor
authentication on), or to a logged-in user who re-enters their TOTP code. Every attempt counts
against allauth's `login_failed` rate limits (per client IP and per account), so guessing a
password or a 6-digit code through the API is no easier than through the login form.
"""

from __future__ import annotations

from allauth.account.utils import has_verified_email
from allauth.core import ratelimit
from allauth.mfa.models import Authenticator
from django.contrib.auth import authenticate
from django.http import HttpRequest

from mailcloak.accounts.models import ApiToken, User, normalize_address

DEFAULT_NAME = "API token"
NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length or 100


class TokenRefused(Exception):
    """A token request that cannot be honoured; str() is the reason to show."""


class InvalidCredentials(TokenRefused):
    def __init__(self) -> None:
        super().__init__("wrong email or password")


class SecondFactorRequired(TokenRefused):
    def __init__(self) -> None:
        super().__init__("two-factor authentication is on: send the current code as otp")


class SecondFactorInvalid(TokenRefused):
    def __init__(self) -> None:
        super().__init__("wrong or already used two-factor code")


class EmailNotVerified(TokenRefused):
    def __init__(self) -> None:
        super().__init__("verify your email address before creating a token")


class TooManyAttempts(TokenRefused):
    retry_after = 300  # seconds: the longest window of the `login_failed` rate limits

    def __init__(self) -> None:
        super().__init__("too many attempts; try again in a few minutes")


def issue_for_credentials(request: HttpRequest, *, email: str, password: str,
                          otp: str | None = None, name: str = DEFAULT_NAME,
                          ) -> tuple[ApiToken, str]:
    """A new token for the account `email`; returns the row and the token (shown once)."""
    email = normalize_address(email)
    _consume_attempt(request, email)
    user = authenticate(request, email=email, password=password)
    if not isinstance(user, User):
        raise InvalidCredentials()
    _check_second_factor(user, otp)
    if not has_verified_email(user):
        raise EmailNotVerified()
    return ApiToken.issue(user, name or DEFAULT_NAME)


def issue_for_user(request: HttpRequest, user: User, *, otp: str | None = None,
                   name: str = DEFAULT_NAME) -> tuple[ApiToken, str]:
    """A new token for a logged-in user, who must re-enter a TOTP code when 2FA is on."""
    if requires_second_factor(user):
        _consume_attempt(request, user.email)
        _check_second_factor(user, otp)
    return ApiToken.issue(user, name or DEFAULT_NAME)


def requires_second_factor(user: User) -> bool:
    return _totp_authenticator(user) is not None


def revoke(user: User, token_id: int) -> bool:
    """Delete one of `user`'s tokens; False when there is no such token of theirs."""
    deleted, _ = ApiToken.objects.filter(user=user, pk=token_id).delete()
    return deleted > 0


def _consume_attempt(request: HttpRequest, email: str) -> None:
    # Counted before the password is checked, so parallel guesses cannot outrun the limit.
    if not ratelimit.consume(request, action="login_failed", key=f"api-token:{email}"):
        raise TooManyAttempts()


def _check_second_factor(user: User, otp: str | None) -> None:
    authenticator = _totp_authenticator(user)
    if authenticator is None:
        return
    if not otp:
        raise SecondFactorRequired()
    # validate_code() also refuses a code already used within its time step (no replay).
    if not authenticator.wrap().validate_code(otp.strip()):
        raise SecondFactorInvalid()
    authenticator.record_usage()


def _totp_authenticator(user: User) -> Authenticator | None:
    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
