"""Held-mail helpers for the quarantine tests: messages that look like real spam, verdicts,
and storing them through the same entry point the mail path uses."""

from __future__ import annotations

from email.message import EmailMessage

from mailcloak.aliases.models import Alias
from mailcloak.mail.spam.verdict import Action, Direction, Reason, Verdict
from mailcloak.quarantine.models import QuarantinedMessage
from mailcloak.quarantine.store import quarantine_message

REMOTE_IMAGE = "http://tracker.example/pixel.gif"

SPAM_HTML = f"""<html><head>
<script>window.parent.document.title = "pwned"; document.title = "pwned";</script>
<link rel="stylesheet" href="http://tracker.example/style.css">
</head><body>
<h1>You won a prize</h1>
<p>Dear winner, <a href="https://evil.example/claim?id=1">claim it at paypal.com</a> today.</p>
<img src="{REMOTE_IMAGE}" alt="logo">
<img src=x onerror="document.body.dataset.pwned = 'yes'">
</body></html>"""


def spam_message(*, subject: str = "You won a prize", sender: str = "Prize Team <win@spam.example>",
                 to: str = "someone@alias.test", text: str = "Claim your prize today.",
                 html: str | None = SPAM_HTML, attachment: bytes | None = None) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Tue, 03 Feb 2026 10:00:00 +0000"
    message["Message-ID"] = "<prize-1@spam.example>"
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        message.add_attachment(attachment, maintype="application", subtype="octet-stream",
                               filename="invoice.exe")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


DEFAULT_REASONS = (
    Reason("SPF_FAIL", "SPF failed for spam.example", 3.0),
    Reason("LINK_TEXT_MISMATCH", "Link text shows paypal.com but points to evil.example", 4.0),
    Reason("BAYES_50", "Text: the classifier is unsure", 0.5),
)


def spam_verdict(score: float = 7.5, action: Action = Action.QUARANTINE,
                 reasons: tuple[Reason, ...] = DEFAULT_REASONS) -> Verdict:
    return Verdict(score, action, reasons, engine="builtin")


def hold(alias: Alias, raw: bytes | None = None, *, direction: Direction = Direction.INBOUND,
         score: float = 7.5, mail_from: str = "bounce@spam.example",
         authentication_results: str = "mail.alias.test; spf=fail smtp.mailfrom=spam.example",
         reasons: tuple[Reason, ...] = DEFAULT_REASONS) -> QuarantinedMessage:
    return quarantine_message(raw=raw if raw is not None else spam_message(), alias=alias,
                              direction=direction, verdict=spam_verdict(score, reasons=reasons),
                              mail_from=mail_from,
                              authentication_results=authentication_results)
