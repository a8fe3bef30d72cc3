"""Header rules: missing or malformed fields, forged mail programs, impersonated senders."""

from __future__ import annotations

import re
import time
from email.utils import mktime_tz, parsedate_tz

from mailcloak.mail.policy_email import parse_mailboxes
from mailcloak.mail.spam.features import MessageView, registered_domain
from mailcloak.mail.spam.rules.base import Hit, Rule

FUTURE_TOLERANCE = 2 * 86400  # clocks are wrong, time zones are misdeclared

# Message-IDs that Outlook programs write: <000001c2...$5d2b4c80$17815580$@host> (Outlook
# Express, Outlook 2002 and later), <[A-P]{28}.user@host> (Outlook 2000), <OE...@hotmail.com>,
# and those of Microsoft's own mail services.
_OUTLOOK_ID = re.compile(r"^<?(?:[0-9a-f]{8,16}\$[0-9a-f]{4,8}\$[0-9a-f]{4,8}|[A-P]{28}\.|OE\w+@"
                         r"|[0-9A-F]{32}@)", re.IGNORECASE)
# List software that gives each message its own Message-ID.
_LIST_ID = re.compile(r"^<?mailman\.")
_OUTLOOK_SERVICE_ID = re.compile(r"@[^>]*(?:outlook\.com|exchange|\.prod\.|\.local|hotmail)",
                                 re.IGNORECASE)
# Windows Outlook and Outlook Express always write their own Message-ID (the Macintosh
# editions did not).
_CLAIMS_OUTLOOK = re.compile(r"microsoft (?:office )?outlook(?!.*macintosh)", re.IGNORECASE)
# Apple Mail: <UUID@host> with upper-case hexadecimal.
_APPLE_ID = re.compile(r"^<?[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}@")
_CLAIMS_APPLE = re.compile(r"apple mail|mac os x mail|apple message framework|iphone mail",
                           re.IGNORECASE)
_ADDRESS_IN_NAME = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200f\u2060-\u2064\ufeff]")
_LOOKALIKE_WORD = re.compile(
    r"\b(?=\w*[a-zA-Z])(?=\w*[\u0250-\u02af\u0370-\u03ff\u0400-\u04ff])\w+")

# Brands most impersonated in phishing, with the registered domains they mail from.
BRANDS: dict[str, tuple[str, ...]] = {
    "paypal": ("paypal",), "apple": ("apple", "icloud"), "amazon": ("amazon",),
    "microsoft": ("microsoft", "office", "outlook", "live", "azure"),
    "office 365": ("microsoft", "office"), "outlook": ("microsoft", "outlook", "office"),
    "netflix": ("netflix",), "docusign": ("docusign",), "dhl": ("dhl",), "fedex": ("fedex",),
    "usps": ("usps",), "ups": ("ups",), "norton": ("norton",), "mcafee": ("mcafee",),
    "geek squad": ("geeksquad", "bestbuy"), "coinbase": ("coinbase",), "binance": ("binance",),
    "wells fargo": ("wellsfargo", "wf"), "bank of america": ("bankofamerica", "bofa"),
    "chase": ("chase",), "american express": ("americanexpress", "aexp"),
    "facebook": ("facebook", "meta", "fb"), "instagram": ("instagram", "facebook"),
    "dropbox": ("dropbox",), "adobe": ("adobe",), "walmart": ("walmart",), "costco": ("costco",),
    "irs": ("irs",), "wetransfer": ("wetransfer",),
}
_BRAND_IN_NAME = re.compile(r"\b(" + "|".join(re.escape(b) for b in BRANDS) + r")\b",
                            re.IGNORECASE)


def date_missing(view: MessageView) -> Hit | None:
    return None if view.has_header("Date") else Hit(1.0, "Date header is missing")


def date_wrong(view: MessageView) -> Hit | None:
    value = view.header("Date")
    if not value:
        return None
    parsed = parsedate_tz(value)
    if parsed is None:
        return Hit(1.0, "Date header cannot be read")
    try:
        sent = mktime_tz(parsed)
    except (OverflowError, ValueError):
        return Hit(1.0, "Date header cannot be read")
    if sent > time.time() + FUTURE_TOLERANCE:
        return Hit(1.5, "Date header is in the future")
    return None


def message_id_missing(view: MessageView) -> Hit | None:
    return None if view.header("Message-ID") else Hit(0.8, "Message-ID header is missing")


def from_missing(view: MessageView) -> Hit | None:
    return None if view.from_address else Hit(1.5, "From header is missing or has no address")


def forged_mail_program(view: MessageView) -> Hit | None:
    """A mail program named in X-Mailer or MIME-Version that would have written a different
    Message-ID: spam tools copy the name, not the behaviour."""
    claimed = f"{view.header('X-Mailer')} {view.header('User-Agent')} {view.header('MIME-Version')}"
    message_id = view.header("Message-ID")
    if _LIST_ID.match(message_id):
        return None
    if _CLAIMS_OUTLOOK.search(claimed) and not (
            _OUTLOOK_ID.search(message_id) or _OUTLOOK_SERVICE_ID.search(message_id)):
        return Hit(2.0, "Forged Outlook headers (its Message-ID is not Outlook's)")
    if _CLAIMS_APPLE.search(claimed) and not _APPLE_ID.search(message_id):
        return Hit(2.0, "Forged Apple Mail headers (its Message-ID is not Apple Mail's)")
    return None


def brand_impersonation(view: MessageView) -> Hit | None:
    name = view.from_name
    match = _BRAND_IN_NAME.search(name) if name else None
    if match is None or not view.from_domain:
        return None
    brand = match.group(1).lower()
    domain = registered_domain(view.from_domain)
    if any(owner in domain.replace("-", "") for owner in BRANDS[brand]):
        return None
    return Hit(2.5, f"Sender name says {match.group(1)} but the mail comes from {domain}")


def address_in_name(view: MessageView) -> Hit | None:
    """A display name showing another address ("support@bank.test" <x@elsewhere.test>).
    Lists that rewrite From ("'a@b' via List") do this honestly and are left alone."""
    name = view.from_name
    if not name or " via " in name:
        return None
    for shown in _ADDRESS_IN_NAME.findall(name):
        if shown.lower() != view.from_address:
            return Hit(1.5, f"Sender name shows the address {shown} but the mail comes from "
                            f"{view.from_address}")
    return None


def reply_to_elsewhere(view: MessageView) -> Hit | None:
    """Replies diverted to a free mailbox of another domain: a sign of advance-fee fraud and
    of invoice scams."""
    replies = parse_mailboxes(view.header("Reply-To"))
    if not replies or not view.from_domain or _from_list(view):
        return None
    domain = replies[0].address.rpartition("@")[2].lower()
    if domain in FREEMAIL and registered_domain(domain) != registered_domain(view.from_domain):
        return Hit(1.5, f"Replies go to a free mailbox at {domain}, not to the sender's domain")
    return None


def _from_list(view: MessageView) -> bool:
    """A list that puts its own address in From and the poster's in Reply-To."""
    local = view.from_address.partition("@")[0]
    return any(name in local for name in view.list_names)


def subject_obfuscated(view: MessageView) -> Hit | None:
    subject = view.subject
    if subject.isascii():
        return None
    if _INVISIBLE.search(subject):
        return Hit(2.0, "Subject hides invisible characters between letters")
    if _LOOKALIKE_WORD.search(subject):
        return Hit(2.0, "Subject mixes look-alike letters from other alphabets")
    return None


FREEMAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "ymail.com", "hotmail.com", "outlook.com",
    "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mail.com", "gmx.com", "gmx.net",
    "proton.me", "protonmail.com", "yandex.com", "yandex.ru", "mail.ru", "zoho.com", "qq.com",
    "163.com", "126.com", "web.de",
})

RULES: tuple[Rule, ...] = (
    Rule("DATE_MISSING", "The Date header is missing", date_missing),
    Rule("DATE_WRONG", "The Date header cannot be read or is in the future", date_wrong),
    Rule("MESSAGE_ID_MISSING", "The Message-ID header is missing", message_id_missing),
    Rule("FROM_MISSING", "The From header is missing or has no address", from_missing),
    Rule("FORGED_MAIL_PROGRAM", "Outlook or Apple Mail named, but not their Message-ID",
         forged_mail_program),
    Rule("FROM_NAME_BRAND", "A well-known brand in the sender name, mail from another domain",
         brand_impersonation),
    Rule("FROM_NAME_ADDRESS", "The sender name shows a different address", address_in_name),
    Rule("REPLY_TO_FREEMAIL", "Replies diverted to a free mailbox of another domain",
         reply_to_elsewhere),
    Rule("SUBJECT_OBFUSCATED", "Invisible characters or look-alike letters in the subject",
         subject_obfuscated),
)
