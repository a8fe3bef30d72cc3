"""API tokens: creating them with a password (and TOTP code), rate limits, the tokens page."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from typing import Any

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from allauth.mfa.utils import encrypt
from django.core.cache import cache
from django.test import Client

from mailcloak.accounts.models import ApiToken, User
from tests.conftest import PASSWORD

TOKENS = "/api/v1/tokens"
PAGE = "/account/tokens/"


@pytest.fixture(autouse=True)
def _clear_rate_limits(db: None) -> None:
    cache.clear()


@pytest.fixture
def totp_secret(user: User, settings: Any) -> str:
    """Turn on two-factor authentication for `user`; returns the TOTP secret."""
    settings.MFA_TOTP_TOLERANCE = 1  # a code computed just before a 30 s boundary still counts
    secret = base64.b32encode(secrets.token_bytes(20)).decode()
    Authenticator.objects.create(user=user, type=Authenticator.Type.TOTP,
                                 data={"secret": encrypt(secret)})
    return secret


def totp(secret: str, step: int = 0) -> str:
    """RFC 6238 code (SHA-1, 6 digits, 30 s), written independently of allauth's."""
    counter = int(time.time()) // 30 + step
    digest = hmac.new(base64.b32decode(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**6:06d}"


def wrong_code(secret: str) -> str:
    valid = {totp(secret, step) for step in (-2, -1, 0, 1, 2)}
    return next(code for code in (f"{n:06d}" for n in range(10)) if code not in valid)


def request_token(client: Client, ip: str = "192.0.2.1", **body: Any) -> Any:
    body = {"email": "owner@mailbox.test", "password": PASSWORD} | body
    return client.post(TOKENS, body, content_type="application/json", REMOTE_ADDR=ip)


def can_list_aliases(token: str) -> bool:
    response = Client(headers={"Authorization": f"Bearer {token}"}).get("/api/v1/aliases")
    return response.status_code == 200


# --- POST /api/v1/tokens ----------------------------------------------------------------------


def test_token_for_email_and_password(client: Client, user: User):
    response = request_token(client, email="Owner@Mailbox.TEST", name="backup script")
    assert response.status_code == 201
    data = response.json()
    assert data["token"].startswith("mc_") and data["name"] == "backup script"
    stored = ApiToken.objects.get(pk=data["id"], user=user)
    assert stored.token_hash == ApiToken.hash(data["token"]) != data["token"]
    assert can_list_aliases(data["token"])


@pytest.mark.parametrize("body", [{"password": "not the password"},
                                  {"email": "nobody@mailbox.test"}])
def test_wrong_credentials_get_401_and_no_token(client: Client, user: User, body: dict[str, str]):
    response = request_token(client, **body)
    assert response.status_code == 401
    assert response.json() == {"detail": "wrong email or password"}
    assert not ApiToken.objects.exists()


def test_no_token_for_an_unverified_account(client: Client, user: User):
    EmailAddress.objects.filter(user=user).update(verified=False)
    response = request_token(client)
    assert response.status_code == 403
    assert not ApiToken.objects.exists()


def test_no_token_for_a_deactivated_account(client: Client, user: User):
    user.is_active = False
    user.save()
    assert request_token(client).status_code == 401


def test_two_factor_account_needs_the_current_code(client: Client, user: User, totp_secret: str):
    missing = request_token(client)
    assert missing.status_code == 401
    assert "send the current code as otp" in missing.json()["detail"]

    wrong = request_token(client, otp=wrong_code(totp_secret))
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "wrong or already used two-factor code"}

    wrong_password = request_token(client, password="guess", otp=totp(totp_secret))
    assert wrong_password.status_code == 401
    assert not ApiToken.objects.exists()

    code = totp(totp_secret)
    response = request_token(client, otp=code)
    assert response.status_code == 201
    assert can_list_aliases(response.json()["token"])
    assert Authenticator.objects.get(user=user).last_used_at is not None

    replayed = request_token(client, otp=code)
    assert replayed.status_code == 401
    assert ApiToken.objects.count() == 1


def test_attempts_per_account_are_limited(client: Client, user: User, other_user: User):
    # Five guesses, each from a different address: the sixth request is refused even with the
    # right password, while other accounts are unaffected.
    for n in range(5):
        assert request_token(client, ip=f"198.51.100.{n}", password="guess").status_code == 401
    refused = request_token(client, ip="198.51.100.99")
    assert refused.status_code == 429
    assert refused.json() == {"detail": "too many attempts; try again in a few minutes"}
    assert refused["Retry-After"] == "300"
    assert not ApiToken.objects.filter(user=user).exists()
    assert request_token(client, ip="198.51.100.99",
                         email="intruder@elsewhere.test").status_code == 201


def test_attempts_per_client_address_are_limited(client: Client, user: User):
    for n in range(10):
        assert request_token(client, email=f"guess{n}@mailbox.test").status_code == 401
    assert request_token(client).status_code == 429
    assert request_token(client, ip="192.0.2.2").status_code == 201


@pytest.mark.parametrize("body", [{"email": "owner@mailbox.test"}, {"password": PASSWORD},
                                  {"email": "owner@mailbox.test", "password": PASSWORD,
                                   "scope": "all"}])
def test_incomplete_token_request_is_422(client: Client, user: User, body: dict[str, str]):
    response = client.post(TOKENS, body, content_type="application/json")
    assert response.status_code == 422
    assert not ApiToken.objects.exists()


# --- the tokens page ----------------------------------------------------------------------------


def test_tokens_page_needs_login(client: Client):
    response = client.get(PAGE)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_create_token_on_the_page_shows_it_once(logged_in: Client, user: User):
    response = logged_in.post(PAGE, {"name": "laptop"})
    assert response.status_code == 200
    token = response.context["new_token"]
    assert token.startswith("mc_") and token in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    assert can_list_aliases(token)
    assert ApiToken.objects.get(user=user).name == "laptop"

    later = logged_in.get(PAGE)
    page = later.content.decode()
    assert "laptop" in page and token not in page


def test_page_with_two_factor_needs_the_code(logged_in: Client, user: User, totp_secret: str):
    assert logged_in.post(PAGE, {"name": "laptop"}).status_code == 400
    wrong = logged_in.post(PAGE, {"name": "laptop", "otp": wrong_code(totp_secret)})
    assert wrong.status_code == 400
    assert "wrong or already used two-factor code" in wrong.content.decode()
    assert not ApiToken.objects.exists()

    response = logged_in.post(PAGE, {"name": "laptop", "otp": totp(totp_secret)})
    assert response.status_code == 200
    assert can_list_aliases(response.context["new_token"])


def test_page_code_guesses_are_limited(logged_in: Client, user: User, totp_secret: str):
    statuses = [logged_in.post(PAGE, {"name": "x", "otp": wrong_code(totp_secret)}).status_code
                for _ in range(6)]
    assert statuses == [400] * 5 + [429]
    assert logged_in.post(PAGE, {"name": "x", "otp": totp(totp_secret)}).status_code == 429
    assert not ApiToken.objects.exists()


def test_revoke_token(logged_in: Client, user: User):
    row, token = ApiToken.issue(user, "old")
    response = logged_in.post(f"{PAGE}{row.pk}/revoke/")
    assert response.status_code == 302 and response["Location"] == PAGE
    assert not ApiToken.objects.filter(pk=row.pk).exists()
    assert not can_list_aliases(token)


def test_cannot_revoke_another_users_token(logged_in: Client, other_user: User):
    row, token = ApiToken.issue(other_user, "theirs")
    assert logged_in.post(f"{PAGE}{row.pk}/revoke/").status_code == 404
    assert logged_in.post(f"{PAGE}99999999999999999999999/revoke/").status_code == 404
    assert logged_in.get(f"{PAGE}{row.pk}/revoke/").status_code == 405
    assert can_list_aliases(token)
