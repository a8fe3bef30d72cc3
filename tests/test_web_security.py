"""The web app against hostile visitors and hostile mail: CSRF on every state change, login
throttling, session cookies, security headers, and HTML from mail or users always escaped.

The CSRF and header checks walk the URL resolver, so a page added later is covered without
editing this file (or the test says which URL it could not build).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias
from mailcloak.quarantine.forwarded import record_forward
from mailcloak.quarantine.models import QuarantinedMessage
from mailcloak.quarantine.store import log_rejection
from tests.conftest import PASSWORD
from tests.support.quarantine import hold, spam_message

pytestmark = pytest.mark.django_db

SAMPLE = {"int": "1", "str": "x", "slug": "x", "path": "x/y", "uuid": str(uuid.UUID(int=1))}
_CONVERTER = re.compile(r"<(?:(?P<conv>[a-z]+):)?(?P<name>\w+)>")
_GROUP = re.compile(r"\(\?P<\w+>([^()]*)\)")
# Bearer tokens (or, for POST /api/v1/tokens, a password in the body) only: a forged request
# carries no credentials, so it is refused (4xx) without a CSRF check.
NO_SESSION_AUTH = ("/api/",)


def every_url() -> Iterator[str]:
    """A concrete URL for every pattern of the resolver, its parameters filled with samples."""
    def walk(patterns: list[URLPattern | URLResolver], prefix: str) -> Iterator[str]:
        for pattern in patterns:
            route = prefix + _concrete(str(pattern.pattern))
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            else:
                yield "/" + route

    yield from walk(get_resolver().url_patterns, "")


def _concrete(route: str) -> str:
    route = _GROUP.sub(lambda m: m.group(1).split("|")[0] if m.group(1).isidentifier()
                       or "|" in m.group(1) else "1", route)
    route = _CONVERTER.sub(lambda m: SAMPLE[m.group("conv") or "str"], route)
    return route.removeprefix("^").removesuffix("$").replace("\\", "")


def resolvable(urls: Iterator[str]) -> tuple[list[str], list[str]]:
    ok, broken = [], []
    for url in urls:
        try:
            resolve(url)
        except Resolver404:
            broken.append(url)
        else:
            ok.append(url)
    return ok, broken


@pytest.fixture
def csrf_client(user: User) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


# --- CSRF ------------------------------------------------------------------------------------


def test_every_url_can_be_built() -> None:
    urls, broken = resolvable(every_url())
    assert broken == [], "add a sample value for these patterns"
    assert len(urls) > 50 and "/aliases/1/toggle/" in urls


def test_no_state_change_without_the_csrf_token(csrf_client: Client, alias: Alias) -> None:
    """A signed-in user's browser, tricked into posting to any URL by another site, gets 403
    (the API takes no session cookie, so it answers 401)."""
    urls, _ = resolvable(every_url())
    wrong = {}
    for url in urls:
        for method in (csrf_client.post, csrf_client.put, csrf_client.delete):
            status = method(url).status_code
            refused = status >= 400 if url.startswith(NO_SESSION_AUTH) else status == 403
            if not refused:
                wrong[f"{method.__name__.upper()} {url}"] = status
    assert wrong == {}
    assert Alias.objects.get(pk=alias.pk).enabled  # nothing was toggled, deleted ...


def test_the_same_post_with_the_token_goes_through(csrf_client: Client, alias: Alias) -> None:
    """The 403s above come from the missing token, not from a URL that refuses everything."""
    page = csrf_client.get(f"/aliases/{alias.pk}/")
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
    assert token is not None
    answer = csrf_client.post(f"/aliases/{alias.pk}/toggle/",
                              {"csrfmiddlewaretoken": token.group(1).decode()})
    assert answer.status_code == 302
    assert not Alias.objects.get(pk=alias.pk).enabled


# --- login throttling ------------------------------------------------------------------------


def test_repeated_bad_logins_are_refused_even_with_the_right_password(user: User) -> None:
    cache.clear()  # the rate limits count in the cache
    client = Client()
    for _ in range(5):
        answer = client.post("/accounts/login/", {"login": user.email, "password": "wrong"})
        assert answer.status_code == 200 and b"_auth_user_id" not in answer.content
    answer = client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    assert b"Too many failed login attempts" in answer.content
    cache.clear()
    client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert client.session["_auth_user_id"] == str(user.pk)


def test_session_cookie_flags_on_login(user: User) -> None:
    cache.clear()
    client = Client()
    client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    cookie = client.cookies["sessionid"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"


def test_production_mode_makes_cookies_secure(tmp_path) -> None:
    """Settings are read once per process: production mode is loaded in a child process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILCLOAK_")}
    env.update(MAILCLOAK_MODE="production", MAILCLOAK_DATA_DIR=str(tmp_path),
               MAILCLOAK_DOMAINS="alias.example.org", MAILCLOAK_TLS_CERT=str(tmp_path / "c.pem"),
               MAILCLOAK_TLS_KEY=str(tmp_path / "k.pem"),
               MAILCLOAK_PUBLIC_URL="https://mail.example.org", MAILCLOAK_SECRET_KEY="k" * 40,
               DJANGO_SETTINGS_MODULE="mailcloak.project.settings")
    names = ["SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE",
             "CSRF_COOKIE_SECURE", "CSRF_COOKIE_HTTPONLY", "SECURE_HSTS_SECONDS", "DEBUG",
             "SECURE_PROXY_SSL_HEADER"]
    script = ("import json, django; django.setup(); from django.conf import settings; "
              f"print(json.dumps({{n: getattr(settings, n) for n in {names!r}}}))")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=60, check=True)
    values = json.loads(done.stdout.strip().splitlines()[-1])
    assert values == {
        "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax", "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_HTTPONLY": True, "SECURE_HSTS_SECONDS": 31536000, "DEBUG": False,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"]}


# --- security headers ------------------------------------------------------------------------


def test_security_headers_on_every_page(user: User, alias: Alias) -> None:
    user.is_staff = user.is_superuser = True  # the admin's pages too
    user.save()
    client = Client()
    client.force_login(user)
    hold(alias)
    urls, _ = resolvable(every_url())
    checked = 0
    for url in urls:
        if url.startswith(NO_SESSION_AUTH) or url == "/metrics":
            continue
        response = client.get(url)
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        checked += 1
        csp = response.get("Content-Security-Policy", "")
        assert "default-src 'self'" in csp or "default-src 'none'" in csp, url
        # Only the quarantine's sandboxed message body may be framed, by our own page.
        framing = "'self'" if url.endswith("/body/") else "'none'"
        assert f"frame-ancestors {framing}" in csp, url
        assert response.get("X-Content-Type-Options") == "nosniff", url
        assert response.get("Referrer-Policy") in {"same-origin", "no-referrer"}, url
        assert response.get("X-Frame-Options") == ("SAMEORIGIN" if framing == "'self'"
                                                    else "DENY"), url
        assert "script-src 'unsafe-inline'" not in csp, url
    assert checked >= 10


# --- HTML escaping ---------------------------------------------------------------------------

MARK = '<script>alert("mc")</script>'
ESCAPED = "&lt;script&gt;alert(&quot;mc&quot;)&lt;/script&gt;"


@pytest.fixture
def hostile_content(user: User) -> Alias:
    """An alias whose title and notes, and mail whose subject and sender name, carry HTML."""
    alias = create_alias(user, title=MARK, notes=MARK)
    raw = spam_message(subject=MARK, sender=f'"{MARK}" <win@spam.example>')
    hold(alias, raw)
    record_forward(raw=raw, alias=alias, queue_id="ABCDEF0123456789",
                   mail_from="win@spam.example", verdict=None)
    log_rejection(alias=alias, mail_from="win@spam.example", header_from=MARK, subject=MARK,
                  reason=MARK)
    return alias


def test_html_from_mail_and_users_is_escaped_everywhere(logged_in: Client,
                                                        hostile_content: Alias) -> None:
    held = QuarantinedMessage.objects.get(alias=hostile_content)
    pages = ["/aliases/", f"/aliases/{hostile_content.pk}/", "/quarantine/",
             f"/quarantine/{held.pk}/", "/quarantine/forwarded/", "/quarantine/activity/"]
    for page in pages:
        response = logged_in.get(page)
        assert response.status_code == 200, page
        text = response.content.decode()
        assert MARK not in text, page
        assert "<script>" not in text.replace('<script src="', ""), page
    shown = {page: ESCAPED in logged_in.get(page).content.decode() for page in pages[:5]}
    assert shown == dict.fromkeys(pages[:5], True)  # the text is shown, escaped
