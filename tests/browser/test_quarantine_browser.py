"""The quarantine in a real browser: log in, open held spam whose HTML tries to run script and
load remote images (neither happens), then block its sender, disable the alias (and undo),
delete a message and release another."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailcloak.accounts.services import create_user_with_mailbox
from mailcloak.aliases.models import Alias, BlockedSender
from mailcloak.aliases.services import create_alias
from mailcloak.mail.models import QueuedMessage
from mailcloak.mail.spam.verdict import Reason
from mailcloak.quarantine.models import QuarantinedMessage
from mailcloak.quarantine.store import log_rejection
from tests.browser.conftest import RecordedPage
from tests.support.quarantine import hold, spam_message

PASSWORD = "correct horse battery staple"
OFFSITE_IMAGE = "http://tracker.invalid/open.gif?who=you"
PIXEL_PATH = "/pixel-from-spam.gif"

HOSTILE_HTML = """<html><head>
<script>parent.document.body.dataset.pwned = "script";</script>
<link rel="stylesheet" href="http://tracker.invalid/style.css">
<style>body {{ background: url({pixel}?via=css) }}</style>
</head><body>
<h2 style="color:#b42318">Your account is suspended</h2>
<p>Dear customer, we could not verify your payment details. Restore access within 24 hours:</p>
<p><a href="https://paypa1-secure.example/restore?id=8812">https://www.paypal.com/restore</a></p>
<img src="{offsite}" alt="banner"> <img src="{pixel}" alt="pixel" width="1" height="1">
<img src="x" onerror="parent.document.body.dataset.pwned = 'onerror'">
<p>Regards,<br>Account Security</p>
</body></html>"""


def held_mail(alias: Alias, pixel_url: str) -> QuarantinedMessage:
    """A realistic quarantine: the hostile phishing message is the newest."""
    hold(alias, spam_message(subject="Cheap meds, no prescription", sender="Pharmacy "
                             "<deals@pills.example>", html=None), score=8.9,
         mail_from="deals@pills.example", reasons=(
             Reason("BAYES_99", "Text resembles spam the filter has learned (spam likelihood "
                                "99%)", 7.0),
             Reason("DKIM_NONE", "The message carries no DKIM signature", 1.9)))
    hold(alias, spam_message(subject="Weekly digest", sender="Newsletter <news@shop.example>",
                             html="<p>This week's offers</p>"), score=5.4,
         mail_from="bounce-77@mailer.shop.example", reasons=(
             Reason("BULK_NO_UNSUBSCRIBE", "Bulk mail without a List-Unsubscribe field", 2.5),
             Reason("HTML_MOSTLY_IMAGES", "The HTML part is mostly images", 1.5),
             Reason("BAYES_60", "Text: the classifier is unsure (spam likelihood 64%)", 1.4)))
    log_rejection(alias=alias, mail_from="x7@botnet.example",
                  header_from="Prize <x7@botnet.example>", subject="You have won 1,000,000",
                  reason="Spam score 17.0 over the reject line")
    phishing = spam_message(subject="Your account is suspended",
                            sender="PayPal Security <service@paypa1-secure.example>",
                            html=HOSTILE_HTML.format(offsite=OFFSITE_IMAGE, pixel=pixel_url))
    return hold(alias, phishing, score=9.2, mail_from="service@paypa1-secure.example", reasons=(
        Reason("LINK_TEXT_MISMATCH", "Link text shows www.paypal.com but points to "
                                     "paypa1-secure.example", 4.0),
        Reason("DMARC_FAIL", "DMARC failed for paypa1-secure.example (policy quarantine)", 3.0),
        Reason("SPF_FAIL", "SPF failed for paypa1-secure.example", 2.2)))


@pytest.mark.django_db(transaction=True)
def test_quarantine_in_the_browser(live_server: object, browser_page: RecordedPage,
                                   screenshot_dir: Path) -> None:
    base = str(live_server.url)  # type: ignore[attr-defined]
    user = create_user_with_mailbox("owner@mailbox.test", password=PASSWORD)
    alias = create_alias(user, prefix="shop")
    pixel = base + PIXEL_PATH
    phishing = held_mail(alias, pixel)
    page = browser_page.page

    # Log in.
    page.goto(base + "/accounts/login/")
    page.fill("input[name=login]", user.email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(base + "/aliases/")

    # The list.
    page.click("nav >> text=Quarantine")
    page.wait_for_url(base + "/quarantine/")
    assert page.locator("table.held-list tbody tr").count() == 3
    assert page.locator("text=deleted in 7 days").count() == 3
    assert page.locator("text=You have won 1,000,000").is_visible()
    page.screenshot(path=str(screenshot_dir / "quarantine-list.png"), full_page=True)

    # The hostile message: no script runs, nothing remote (or tracking) is fetched.
    page.click("text=Your account is suspended")
    page.wait_for_url(f"{base}/quarantine/{phishing.pk}/")
    frame_element = page.wait_for_selector("iframe.mail-frame")
    frame = frame_element.content_frame()
    assert frame is not None
    frame.wait_for_load_state("load")
    page.wait_for_load_state("networkidle")
    assert frame.locator("text=Your account is suspended").is_visible()
    assert frame.locator("text=[https://paypa1-secure.example/restore?id=8812]").is_visible()
    assert frame.locator("a[href]").count() == 0
    assert frame.locator("script").count() == 0
    assert page.evaluate("document.body.dataset.pwned") is None
    assert frame_element.get_attribute("sandbox") == ""
    page.screenshot(path=str(screenshot_dir / "quarantine-message.png"), full_page=True)

    assert browser_page.refused == []
    assert not any(url.startswith(pixel) for url in browser_page.requests)
    assert not any("tracker.invalid" in url for url in browser_page.requests)
    assert all(url.startswith((base, "data:")) for url in browser_page.requests)

    # Block the sender (this address, this alias), from the message view.
    page.click("summary:has-text('Block sender')")
    page.click("text=Block service@paypa1-secure.example for this alias")
    assert page.locator("text=Blocked service@paypa1-secure.example for").is_visible()
    blocked = BlockedSender.objects.get()
    assert (blocked.value, blocked.alias_id) == ("service@paypa1-secure.example", alias.pk)

    # Disable the alias, then take it back with the undo button.
    page.click("button:has-text('Disable alias')")
    assert page.locator(f"text=Disabled {alias.address}").is_visible()
    alias.refresh_from_db()
    assert not alias.enabled
    page.click(f"text=Undo: Enable {alias.address} again")
    assert page.locator(f"text={alias.address} is enabled again.").is_visible()
    alias.refresh_from_db()
    assert alias.enabled

    # Delete it.
    page.goto(f"{base}/quarantine/{phishing.pk}/")
    page.click("button:has-text('Delete')")
    page.wait_for_url(base + "/quarantine/")
    assert page.locator("text=Deleted the message.").is_visible()
    assert not QuarantinedMessage.objects.filter(pk=phishing.pk).exists()

    # Release the newsletter from the list.
    row = page.locator("table.held-list tbody tr", has_text="Weekly digest")
    row.locator("button:has-text('Not spam')").click()
    assert page.locator("text=Released: the message is on its way").is_visible()
    released = QueuedMessage.objects.get(kind="forward")
    assert bytes(released.content).startswith(b"X-Mailcloak-Released: yes")
    assert QuarantinedMessage.objects.count() == 1
    assert browser_page.refused == []

