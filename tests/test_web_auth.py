"""Sign up, email verification, login, password reset and two-factor login, through the pages."""

from __future__ import annotations

import re
import time
from urllib.parse import urlsplit

import pytest
from allauth.mfa.models import Authenticator
from allauth.mfa.recovery_codes.internal.auth import RecoveryCodes
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.core import mail
from django.core.cache import cache
from django.test import Client

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox, User
from tests.conftest import PASSWORD

LINK = re.compile(r"https?://\S+")


@pytest.fixture(autouse=True)
def _no_rate_limits_from_other_tests(db: None) -> None:
    cache.clear()


def emailed_link(message: mail.EmailMessage) -> str:
    match = LINK.search(str(message.body))
    assert match, message.body
    return match.group()


def path_of(url: str) -> str:
    return urlsplit(url).path


def totp_code(secret: str) -> str:
    return format_hotp_value(hotp_value(secret, int(time.time()) // 30))


def log_in(client: Client, email: str, password: str = PASSWORD) -> str:
    response = client.post("/accounts/login/", {"login": email, "password": password})
    assert response.status_code == 302, response.content.decode()
    return str(response["Location"])


def is_logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def test_signup_creates_a_mailbox_that_email_confirmation_verifies(
        client: Client, db: None, mailoutbox: list[mail.EmailMessage]) -> None:
    response = client.post("/accounts/signup/", {
        "email": "New.Person@Mailbox.test", "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 302
    user = User.objects.get(email="new.person@mailbox.test")
    mailbox = Mailbox.objects.get(user=user)
    assert not mailbox.is_verified

    assert len(mailoutbox) == 1 and mailoutbox[0].to == ["new.person@mailbox.test"]
    link = emailed_link(mailoutbox[0])
    # Links are built from PUBLIC_URL, never from the request's Host header.
    assert link.startswith(mailcloak_settings.get().public_url + "/accounts/confirm-email/")

    page = client.get(path_of(link))
    assert page.status_code == 200 and b"Confirm" in page.content
    mailbox.refresh_from_db()
    assert not mailbox.is_verified  # a GET (a mail scanner, say) verifies nothing

    response = client.post(path_of(link))
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert mailbox.is_verified
    assert is_logged_in(client)
    assert client.get("/aliases/").status_code == 200


def test_unverified_signup_cannot_log_in(client: Client, db: None,
                                         mailoutbox: list[mail.EmailMessage]) -> None:
    client.post("/accounts/signup/", {"email": "new@mailbox.test", "password1": PASSWORD,
                                      "password2": PASSWORD})
    client.post("/accounts/logout/")
    location = log_in(client, "new@mailbox.test")
    assert "confirm-email" in location
    assert not is_logged_in(client)


def test_closed_signups_say_so_and_link_nowhere(client: Client, db: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILCLOAK_SIGNUPS", "false")
    mailcloak_settings.reset()

    page = client.get("/accounts/signup/")
    assert page.status_code == 200
    assert b"Signups are closed" in page.content
    assert b"/accounts/signup/" not in client.get("/accounts/login/").content
    assert b"/accounts/signup/" not in page.content

    client.post("/accounts/signup/", {"email": "new@mailbox.test", "password1": PASSWORD,
                                      "password2": PASSWORD})
    assert not User.objects.filter(email="new@mailbox.test").exists()


def test_open_signups_are_linked_from_the_login_page(client: Client, db: None) -> None:
    assert b'href="/accounts/signup/"' in client.get("/accounts/login/").content


def test_login_and_logout(client: Client, user: User) -> None:
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b"/static/mailcloak/style.css" in page.content  # our layout, not allauth's bare one

    assert log_in(client, user.email) == "/aliases/"
    assert is_logged_in(client)
    assert client.post("/accounts/logout/").status_code == 302
    assert not is_logged_in(client)


def test_wrong_password_is_refused_with_a_message(client: Client, user: User) -> None:
    response = client.post("/accounts/login/", {"login": user.email, "password": "wrong"})
    assert response.status_code == 200
    assert b"errorlist" in response.content
    assert not is_logged_in(client)


def test_password_reset_by_email(client: Client, user: User,
                                 mailoutbox: list[mail.EmailMessage]) -> None:
    client.post("/accounts/password/reset/", {"email": user.email})
    assert len(mailoutbox) == 1
    link = emailed_link(mailoutbox[0])
    assert link.startswith(mailcloak_settings.get().public_url + "/accounts/password/reset/")

    form_page = client.get(path_of(link), follow=True)
    assert form_page.status_code == 200
    new_password = "a brand new passphrase"
    response = client.post(form_page.redirect_chain[-1][0],
                           {"password1": new_password, "password2": new_password})
    assert response.status_code == 302

    log_in(client, user.email, new_password)
    assert is_logged_in(client)


def activate_totp(client: Client) -> str:
    """Turn on TOTP through the pages; returns the secret."""
    # Changing 2FA asks for the password again, even right after logging in.
    asked = client.get("/accounts/2fa/totp/activate/")
    assert asked.status_code == 302 and "/accounts/reauthenticate/" in asked["Location"]
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    assert b'class="qr"' in page.content
    secret = page.context["form"].secret
    response = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    return str(secret)


def test_totp_two_factor_login(client: Client, user: User) -> None:
    log_in(client, user.email)
    secret = activate_totp(client)
    assert Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
    client.post("/accounts/logout/")

    assert log_in(client, user.email) == "/accounts/2fa/authenticate/"
    assert not is_logged_in(client)  # the password alone is not enough
    refused = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert refused.status_code == 200 and not is_logged_in(client)

    response = client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    assert response.status_code == 302
    assert is_logged_in(client)


def test_recovery_code_replaces_a_lost_authenticator(client: Client, user: User) -> None:
    log_in(client, user.email)
    activate_totp(client)
    codes_page = client.get("/accounts/2fa/recovery-codes/")
    assert codes_page.status_code == 200
    recovery = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)
    code = RecoveryCodes(recovery).get_unused_codes()[0]
    assert code.encode() in codes_page.content
    client.post("/accounts/logout/")

    log_in(client, user.email)
    client.post("/accounts/2fa/authenticate/", {"code": code})
    assert is_logged_in(client)
    assert code not in RecoveryCodes(Authenticator.objects.get(pk=recovery.pk)).get_unused_codes()


def test_two_factor_pages_sit_in_account_settings(client: Client, user: User) -> None:
    log_in(client, user.email)
    settings_page = client.get("/account/")
    assert b'href="/accounts/2fa/"' in settings_page.content
    mfa_page = client.get("/accounts/2fa/")
    assert mfa_page.status_code == 200
    assert b'aria-current="page">Two-factor authentication' in mfa_page.content
    assert b"Authenticator App" in mfa_page.content


ENTRANCE_PAGES = ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/",
                  "/accounts/password/reset/done/", "/accounts/confirm-email/",
                  "/accounts/confirm-email/not-a-key/"]
MANAGE_PAGES = ["/accounts/email/", "/accounts/password/change/", "/accounts/2fa/",
                "/accounts/2fa/totp/activate/", "/accounts/2fa/recovery-codes/generate/"]


def assert_in_our_layout(client: Client, url: str) -> bytes:
    page = client.get(url)
    assert page.status_code == 200, url
    assert b"/static/mailcloak/style.css" in page.content, url
    assert b"<title>" in page.content and b" \xc2\xb7 Mailcloak</title>" in page.content, url
    assert b"Menu:" not in page.content, url  # allauth's unstyled layout
    return bytes(page.content)


def test_every_allauth_page_uses_our_layout(client: Client, user: User) -> None:
    for url in ENTRANCE_PAGES:
        assert b'class="narrow"' in assert_in_our_layout(client, url), url
    log_in(client, user.email)
    client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    for url in [*MANAGE_PAGES, "/accounts/reauthenticate/", "/accounts/logout/"]:
        assert_in_our_layout(client, url)
    for url in MANAGE_PAGES:
        assert b'class="settings-nav"' in assert_in_our_layout(client, url), url
