"""The quarantine pages: list, filters, rejection log, a message opened safely (sanitised HTML
under its own CSP, inert links, attachments listed, raw download), activity and settings."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from mailcloak.accounts.models import User
from mailcloak.aliases.models import Alias
from mailcloak.aliases.services import create_alias
from mailcloak.mail.spam.verdict import Direction, Sensitivity
from mailcloak.quarantine.models import Activity
from mailcloak.quarantine.reader import read_message
from mailcloak.quarantine.sanitize import BLOCKED_IMAGE, sanitise
from mailcloak.quarantine.store import log_rejection
from tests.support.quarantine import REMOTE_IMAGE, hold, spam_message

# --- the sanitiser -----------------------------------------------------------------------------

HOSTILE = [
    '<script>alert(1)</script>',
    '<img src="http://t.example/a.gif" onerror="alert(1)">',
    '<img srcset="http://t.example/a.png 2x" src="data:image/png;base64,iVBORw0KGgo=">',
    '<p style="background: url(http://t.example/bg.png)">x</p>',
    '<p style="background-image: u\\72l(http://t.example/bg.png)">x</p>',
    '<div style="color: red; width: expression(alert(1))">x</div>',
    '<link rel="stylesheet" href="http://t.example/s.css">',
    '<style>@import "http://t.example/s.css"; body { background: url(http://t.example/b) }</style>',
    '<table background="http://t.example/t.png"><tr><td background="http://t.example/c">x</td></tr></table>',
    '<body background="http://t.example/b.png">',
    '<iframe src="http://t.example/"></iframe><object data="http://t.example/o"></object>',
    '<embed src="http://t.example/e"><video poster="http://t.example/p.png"></video>',
    '<svg><image href="http://t.example/i.png"/></svg>',
    '<form action="http://t.example/"><input type="image" src="http://t.example/i"></form>',
    '<meta http-equiv="refresh" content="0;url=http://t.example/">',
    '<base href="http://t.example/"><a href="relative">x</a>',
    '<a href="javascript:alert(1)">x</a><a href="data:text/html,<script>alert(1)</script>">y</a>',
    '<math><mtext><table><mglyph><style><img src=http://t.example/m onerror=alert(1)>',
    '<noscript><p title="</noscript><img src=http://t.example/n onerror=alert(1)>">',
    '<img src="cid:logo@spam.example"><img src="//t.example/proto-relative.gif">',
]


@pytest.mark.parametrize("markup", HOSTILE)
def test_nothing_active_or_remote_survives(markup: str) -> None:
    safe = sanitise(markup).html
    lowered = safe.lower()
    assert "t.example" not in lowered.replace("[http", "")  # only shown as link text
    for danger in ("<script", "onerror", "onload", "javascript:", "<iframe", "<object",
                   "<embed", "<form", "<input", "<link", "<meta", "<base", "<style", "url(",
                   "srcset", "background=", "expression", "<svg", "<video"):
        assert danger not in lowered, danger


def test_remote_images_become_a_placeholder_and_are_counted() -> None:
    safe = sanitise(f'<p>Hi</p><img src="{REMOTE_IMAGE}" alt="logo"><img src="cid:x">')
    assert safe.blocked_images == 2
    assert safe.html.count(f'src="{BLOCKED_IMAGE}"') == 2
    assert REMOTE_IMAGE not in safe.html


def test_inline_data_images_stay() -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    assert f'src="{image}"' in sanitise(f'<img src="{image}">').html


def test_links_show_their_real_target_and_cannot_be_followed() -> None:
    safe = sanitise('<p><a href="https://evil.example/login?a=1&amp;b=2">Your <b>PayPal</b> '
                    'account</a> and <a href="mailto:x@evil.example">write</a></p>')
    assert "href" not in safe.html
    assert '<span class="mc-target">[https://evil.example/login?a=1&amp;b=2]</span>' in safe.html
    assert [(link.text, link.target) for link in safe.links] == [
        ("Your PayPal account", "https://evil.example/login?a=1&b=2"),
        ("write", "mailto:x@evil.example")]


def test_harmless_formatting_is_kept() -> None:
    safe = sanitise('<table><tr><td style="color: #333; padding: 4px" colspan="2">'
                    '<b>Bold</b> <font color="red">red</font></td></tr></table>').html
    assert '<td style="color:#333;padding:4px" colspan="2">' in safe
    assert "<b>Bold</b>" in safe and '<font color="red">' in safe


def test_text_that_looks_like_markup_stays_text() -> None:
    safe = sanitise("<p>&lt;script&gt;alert(1)&lt;/script&gt; 3 &lt; 4</p>").html
    assert "<script" not in safe and "&lt;script&gt;" in safe


# --- reading a message ------------------------------------------------------------------------


def test_reader_separates_bodies_and_lists_attachments() -> None:
    display = read_message(spam_message(attachment=b"MZ" + b"\0" * 98))
    assert display.text.strip() == "Claim your prize today."
    assert display.html is not None and "You won a prize" in display.html.html
    assert [(a.filename, a.content_type, a.size) for a in display.attachments] == [
        ("invoice.exe", "application/octet-stream", 100)]
    assert ("Subject", "You won a prize") in display.headers


@pytest.mark.parametrize("raw", [
    b"", b"no header at all", b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
    b"Content-Type: text/html; charset=made-up\r\n\r\n<p>\xff\xfe</p>",
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64",
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\nhello",
])
def test_reader_never_raises_on_broken_mail(raw: bytes) -> None:
    read_message(raw)


# --- pages -------------------------------------------------------------------------------------


def test_list_shows_what_the_owner_needs(logged_in: Client, alias: Alias) -> None:
    hold(alias, spam_message(subject="Cheap watches"))
    page = logged_in.get("/quarantine/").content.decode()
    for expected in ("Prize Team &lt;win@spam.example&gt;", "Cheap watches", alias.address,
                     "7.5", "Link text shows paypal.com but points to evil.example",
                     "deleted in 7 days", "Not spam", "Block sender", "Disable alias"):
        assert expected in page, expected


def test_list_filters_by_alias_and_direction(logged_in: Client, user: User, alias: Alias) -> None:
    other = create_alias(user)
    hold(alias, spam_message(subject="to the first"))
    hold(other, spam_message(subject="to the second"))
    hold(alias, spam_message(subject="sent from the first"), direction=Direction.OUTBOUND,
         mail_from=alias.address)
    page = logged_in.get("/quarantine/", {"alias": alias.pk}).content.decode()
    assert "to the first" in page and "sent from the first" in page
    assert "to the second" not in page
    page = logged_in.get("/quarantine/", {"direction": "outbound"}).content.decode()
    assert "sent from the first" in page and "to the first" not in page


def test_list_is_newest_first_and_paginated(logged_in: Client, alias: Alias) -> None:
    for number in range(27):
        hold(alias, spam_message(subject=f"message number {number:02d}"))
    first = logged_in.get("/quarantine/", {"alias": alias.pk}).content.decode()
    subjects = re.findall(r"message number (\d\d)", first)
    assert subjects[0] == "26" and len(subjects) == 25
    assert f"alias={alias.pk}&amp;page=2" in first
    second = logged_in.get("/quarantine/", {"alias": alias.pk, "page": 2}).content.decode()
    assert re.findall(r"message number (\d\d)", second) == ["01", "00"]


def test_rejections_have_their_own_section(logged_in: Client, alias: Alias) -> None:
    log_rejection(alias=alias, mail_from="x@spam.example", header_from="Spammer <x@spam.example>",
                  subject="Refused one", reason="DMARC policy of spam.example says reject")
    page = logged_in.get("/quarantine/").content.decode()
    section = page[page.index("Refused on arrival"):]
    assert "Refused one" in section and "DMARC policy of spam.example says reject" in section


def test_message_view(logged_in: Client, alias: Alias) -> None:
    held = hold(alias, spam_message(attachment=b"MZ payload"))
    response = logged_in.get(f"/quarantine/{held.pk}/")
    page = response.content.decode()
    assert response.status_code == 200
    assert f'src="/quarantine/{held.pk}/body/" sandbox=""' in page
    assert "allow-scripts" not in page and "allow-same-origin" not in page
    assert "https://evil.example/claim?id=1" in page  # the links table
    assert 'href="https://evil.example' not in page
    assert "invoice.exe" in page and "application/octet-stream" in page
    assert "Claim your prize today." in page
    assert "spf=fail smtp.mailfrom=spam.example" in page
    assert "SPF failed for spam.example" in page and "LINK_TEXT_MISMATCH" in page
    assert "2 remote images not loaded" in page
    assert "<script>window.parent" not in page
    assert response["Cache-Control"].startswith("max-age=0")


def test_body_is_served_under_its_own_strict_policy(logged_in: Client, alias: Alias) -> None:
    held = hold(alias)
    response = logged_in.get(f"/quarantine/{held.pk}/body/")
    body = response.content.decode()
    csp = response["Content-Security-Policy"]
    assert csp.startswith("default-src 'none'; style-src 'unsafe-inline'; img-src data:;")
    assert "sandbox" in csp and "frame-ancestors 'self'" in csp
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["Referrer-Policy"] == "no-referrer"
    assert "<script" not in body and "onerror" not in body and REMOTE_IMAGE not in body
    assert "You won a prize" in body
    assert "[https://evil.example/claim?id=1]" in body


def test_a_text_only_message_has_no_html_body(logged_in: Client, alias: Alias) -> None:
    held = hold(alias, spam_message(html=None))
    assert logged_in.get(f"/quarantine/{held.pk}/body/").status_code == 404
    assert "<iframe" not in logged_in.get(f"/quarantine/{held.pk}/").content.decode()


def test_raw_download(logged_in: Client, alias: Alias) -> None:
    raw = spam_message()
    held = hold(alias, raw)
    response = logged_in.get(f"/quarantine/{held.pk}/raw/")
    assert response.content == raw
    assert response["Content-Type"] == "message/rfc822"
    assert response["Content-Disposition"] == f'attachment; filename="quarantined-{held.pk}.eml"'
    assert response["X-Content-Type-Options"] == "nosniff"


def test_outbound_messages_offer_no_release_and_no_block(logged_in: Client, alias: Alias) -> None:
    held = hold(alias, direction=Direction.OUTBOUND, mail_from=alias.address)
    page = logged_in.get(f"/quarantine/{held.pk}/").content.decode()
    assert "Outgoing: held instead of sent" in page
    assert "Not spam" not in page and "Block sender" not in page
    assert "Disable alias" in page


def test_pages_need_login(client: Client, alias: Alias) -> None:
    held = hold(alias)
    for url in ("/quarantine/", f"/quarantine/{held.pk}/", f"/quarantine/{held.pk}/body/",
                f"/quarantine/{held.pk}/raw/", "/quarantine/activity/", "/quarantine/settings/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(
            "/accounts/login/"), url


def test_activity_page_lists_actions(logged_in: Client, alias: Alias) -> None:
    held = hold(alias)
    logged_in.post(f"/quarantine/{held.pk}/block/", {"what": "domain", "scope": "all"})
    page = logged_in.get("/quarantine/activity/").content.decode()
    assert "Blocked a sender" in page and "spam.example" in page and "for all your aliases" in page
    assert "You won a prize" not in page  # metadata only
    assert not any("prize" in str(value).lower()
                   for value in Activity.objects.values_list("target", "detail", "alias_address"))


def test_settings_page_saves_preferences(logged_in: Client, user: User) -> None:
    assert "One email a day at most" in logged_in.get("/quarantine/settings/").content.decode()
    response = logged_in.post("/quarantine/settings/", {"quarantine_digest": "off",
                                                        "spam_sensitivity": "strict"})
    assert response.status_code == 302
    user.refresh_from_db()
    assert (user.quarantine_digest, user.spam_sensitivity) == ("off", "strict")
    response = logged_in.post("/quarantine/settings/", {"quarantine_digest": "hourly",
                                                        "spam_sensitivity": "strict"})
    assert response.status_code == 400


def test_sensitivity_choices_are_the_spam_engines() -> None:
    assert set(User.Sensitivity.values) == {str(level) for level in Sensitivity}
    assert User._meta.get_field("spam_sensitivity").default == Sensitivity.NORMAL


def test_header_links_to_the_quarantine(logged_in: Client) -> None:
    page = logged_in.get("/quarantine/").content.decode()
    assert '<a href="/quarantine/" aria-current="page">Quarantine</a>' in page
