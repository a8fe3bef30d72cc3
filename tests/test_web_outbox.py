"""The local outbox page: local mode and loopback clients only; mail shown as text, never HTML."""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from django.core import mail
from django.core.cache import cache
from django.test import Client

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox
from mailcloak.outbox.models import LocalOutboxMessage


def production_config(tmp_path: Path) -> mailcloak_settings.Config:
    return mailcloak_settings.load({
        "MAILCLOAK_MODE": "production", "MAILCLOAK_DATA_DIR": str(tmp_path),
        "MAILCLOAK_DOMAINS": "alias.example", "MAILCLOAK_PUBLIC_URL": "https://mc.example",
        "MAILCLOAK_TLS_CERT": "/etc/ssl/cert.pem", "MAILCLOAK_TLS_KEY": "/etc/ssl/key.pem",
        "MAILCLOAK_SECRET_KEY": "s" * 40,
    })


def store(message: EmailMessage) -> LocalOutboxMessage:
    return LocalOutboxMessage.objects.create(
        mail_from="noreply@alias.test", recipient=str(message["To"]),
        subject=str(message["Subject"]), content=message.as_bytes())


def verification_mail(link: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Mailcloak <noreply@alias.test>"
    message["To"] = "new@mailbox.test"
    message["Subject"] = "[Mailcloak] Please Confirm Your Email Address"
    message.set_content(f"Hello!\n\nConfirm here: {link}.\nOr not: https://evil.example/x\n")
    message.add_alternative(f'<p>Confirm <a href="{link}">here</a><script>alert(1)</script></p>',
                            subtype="html")
    return message


@pytest.fixture
def own_link() -> str:
    return mailcloak_settings.get().public_url + "/accounts/confirm-email/KEY123/"


def test_list_shows_messages_newest_first(client: Client, db: None) -> None:
    older = store(verification_mail("http://x/1"))
    newer = store(verification_mail("http://x/2"))
    LocalOutboxMessage.objects.filter(pk=newer.pk).update(subject="Newer one")
    page = client.get("/outbox/")
    assert page.status_code == 200
    content = page.content.decode()
    assert content.index(f"/outbox/{newer.pk}/") < content.index(f"/outbox/{older.pk}/")
    assert "Newer one" in content


def test_detail_links_only_our_own_urls(client: Client, db: None, own_link: str) -> None:
    stored = store(verification_mail(own_link))
    content = client.get(f"/outbox/{stored.pk}/").content.decode()
    assert f'<a href="{own_link}">{own_link}</a>.' in content  # trailing dot left outside
    assert "https://evil.example/x" in content
    assert 'href="https://evil.example' not in content


def test_look_alike_hosts_are_not_linked(client: Client, db: None) -> None:
    base = mailcloak_settings.get().public_url
    stored = store(verification_mail(base + ".evil.example/accounts/confirm-email/K/"))
    content = client.get(f"/outbox/{stored.pk}/").content.decode()
    assert "evil.example/accounts/confirm-email/K/" in content
    assert 'href="' + base + ".evil" not in content


def test_html_parts_are_shown_as_escaped_source(client: Client, db: None, own_link: str) -> None:
    stored = store(verification_mail(own_link))
    content = client.get(f"/outbox/{stored.pk}/").content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "&lt;a href=" in content


def test_undecodable_charsets_and_attachments_still_show(client: Client, db: None) -> None:
    raw = (b"From: a@example.org\r\nTo: b@mailbox.test\r\nSubject: odd\r\nMIME-Version: 1.0\r\n"
           b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
           b"Content-Type: text/plain; charset=x-no-such-charset\r\n\r\ncaf\xe9 text\r\n--b\r\n"
           b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=a.pdf\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b--\r\n")
    stored = LocalOutboxMessage.objects.create(recipient="b@mailbox.test", subject="odd",
                                               content=raw)
    response = client.get(f"/outbox/{stored.pk}/")
    assert response.status_code == 200
    assert "caf\ufffd text" in response.content.decode()
    assert b"a.pdf" in response.content


def test_header_links_to_the_outbox_in_local_mode(client: Client, db: None) -> None:
    assert b'href="/outbox/"' in client.get("/accounts/login/").content


def test_production_mode_has_no_outbox(client: Client, db: None, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    stored = store(verification_mail("http://x/1"))
    config = production_config(tmp_path)
    monkeypatch.setattr(mailcloak_settings, "get", lambda: config)
    assert client.get("/outbox/").status_code == 404
    assert client.get(f"/outbox/{stored.pk}/").status_code == 404
    assert b'href="/outbox/"' not in client.get("/accounts/login/").content


@pytest.mark.parametrize("address", ["192.0.2.10", "10.0.0.1", "::ffff:192.0.2.1", "not-an-ip"])
def test_other_machines_are_refused(client: Client, db: None, address: str) -> None:
    stored = store(verification_mail("http://x/1"))
    assert client.get("/outbox/", REMOTE_ADDR=address).status_code == 403
    response = client.get(f"/outbox/{stored.pk}/", REMOTE_ADDR=address)
    assert response.status_code == 403
    assert b"confirm" not in response.content.lower()
    assert b'href="/outbox/"' not in client.get("/accounts/login/", REMOTE_ADDR=address).content


@pytest.mark.parametrize("address", ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"])
def test_loopback_clients_see_it(client: Client, db: None, address: str) -> None:
    stored = store(verification_mail("http://x/1"))
    assert client.get("/outbox/", REMOTE_ADDR=address).status_code == 200
    assert client.get(f"/outbox/{stored.pk}/", REMOTE_ADDR=address).status_code == 200


def test_requests_through_a_proxy_are_refused(client: Client, db: None) -> None:
    # Behind a reverse proxy every client would come from loopback.
    response = client.get("/outbox/", REMOTE_ADDR="127.0.0.1",
                          HTTP_X_FORWARDED_FOR="192.0.2.10")
    assert response.status_code == 403


def test_signup_verification_can_be_followed_from_the_outbox(
        client: Client, db: None, mailoutbox: list[mail.EmailMessage]) -> None:
    """The local-mode flow: sign up, find the mail in the outbox, click its link."""
    cache.clear()
    password = "correct horse battery staple"
    client.post("/accounts/signup/", {"email": "new@mailbox.test", "password1": password,
                                      "password2": password})
    sent = mailoutbox[0].message()
    stored = LocalOutboxMessage.objects.create(recipient="new@mailbox.test",
                                               subject=str(sent["Subject"]),
                                               content=sent.as_bytes())
    content = client.get(f"/outbox/{stored.pk}/").content.decode()
    base = mailcloak_settings.get().public_url
    match = re.search(f'<a href="{re.escape(base)}(/accounts/confirm-email/[^"]+)"', content)
    assert match
    client.post(match.group(1))
    assert Mailbox.objects.get(email="new@mailbox.test").is_verified
