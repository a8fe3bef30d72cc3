"""What forwarding changes in a message's header, field by field.

Every address the owner's mail client could answer to (From, Reply-To, To/Cc participants
other than the alias, list mailto: links, read-receipt requests) becomes a reverse address on
the alias domain, so an answer (reply-all too) goes back out through the alias and the owner's
real address never leaks. Fields that describe the original transport or could pass for ours
are removed. Everything else stays byte for byte: threading (Message-ID, In-Reply-To,
References), Date, Subject, MIME fields.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from mailcloak.mail.headers import HeaderField, format_mailbox
from mailcloak.mail.policy_email import (
    Mailbox,
    clean_text,
    is_plausible_address,
    parse_envelope_address,
    parse_mailboxes,
)

# (address, display name) -> the reverse address that stands for that correspondent
ReverseAddress = Callable[[str, str], str]

# The original transport (Return-Path, Delivered-To, Sender), signatures that our changes
# break (DKIM, the ARC sets are sealed anew later), and fields that could pass for ours.
REMOVED_FIELDS = frozenset({"dkim-signature", "return-path", "delivered-to", "sender"})
REMOVED_PREFIXES = ("arc-", "x-mailcloak-")
# Address fields a mail client may answer to directly, bypassing From.
REPLY_FIELDS = frozenset({
    "reply-to", "mail-reply-to", "mail-followup-to",
    "disposition-notification-to", "return-receipt-to",
})
# RFC 2369 fields: mailto: targets become reverse addresses, web targets stay as they are.
# Each is read once, like SINGLE_FIELDS: a repeat is dropped.
LIST_FIELDS = frozenset({
    "list-unsubscribe", "list-subscribe", "list-post", "list-help", "list-owner", "list-archive",
})
# Fields that must appear at most once: an empty one is dropped and replaced by ours.
REQUIRED_ONCE = frozenset({"message-id", "date"})
# RFC 5322 allows these once; large providers refuse mail that repeats them, so a repeat is
# dropped (the first is what mail clients show) or, for address lists, merged into the first.
SINGLE_FIELDS = frozenset({"date", "message-id", "subject", "in-reply-to", "references"})
ADDRESS_LISTS = frozenset({"to", "cc", "bcc"})
NAME_LIMIT = 100
# Addresses kept per address field: each becomes a contact (a database row) of the alias, and a
# Cc of thousands would have one message create thousands while the SMTP client waits. Past
# the limit an address is left out (never kept as is: replying to it would bypass the alias).
ADDRESS_LIMIT = 50
LIST_URL_LIMIT = 5  # URLs per RFC 2369 field, and addresses per mailto: URL

_ANGLE_URL = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")
_MAILTO_ADDRESS_PARAMS = frozenset({"to", "cc", "bcc"})


def original_sender(fields: list[HeaderField], envelope_from: str) -> Mailbox | None:
    """The first usable From address; the envelope sender when From is missing or broken."""
    for field in fields:
        if field.key == "from":
            mailboxes = parse_mailboxes(field.value)
            if mailboxes:
                return Mailbox(mailboxes[0].name[:NAME_LIMIT], mailboxes[0].address)
    envelope = parse_envelope_address(envelope_from)
    return Mailbox("", envelope) if envelope else None


def sender_display_name(sender: Mailbox, name_format: str) -> str:
    """MAILCLOAK_SENDER_NAME_FORMAT filled in; without a name the address stands for it
    (once: "a@b via Mailcloak", not "a@b (a@b) via Mailcloak")."""
    address = sender.address
    text = name_format.format(name=sender.name or address, address=address)
    return clean_text(text.replace(f"{address} ({address})", address))


@dataclass(frozen=True)
class Rewriter:
    alias_address: str
    hostname: str
    sender: Mailbox
    sender_reverse: str
    name_format: str
    reverse: ReverseAddress
    eol: bytes

    def rewrite(self, fields: list[HeaderField]) -> list[HeaderField]:
        """The new header: fields in their original order, each kept, replaced or removed.
        Repeated address fields are merged into one at the place of the first."""
        result: list[HeaderField] = []
        seen: set[str] = set()
        for field in fields:
            key = field.key
            once = key in SINGLE_FIELDS or key in LIST_FIELDS
            if self._is_removed(field) or (once and key in seen):
                continue
            if key == "from" or key in REPLY_FIELDS or key in ADDRESS_LISTS:
                if key not in seen:
                    result.extend(self._merged_field(key, fields))
            elif key in LIST_FIELDS:
                result.extend(self._list_field(field))
            else:
                result.append(field)
            seen.add(key)
        if "from" not in seen:
            result.append(self._from_field("From"))
        return result

    def _is_removed(self, field: HeaderField) -> bool:
        key = field.key
        return (key in REMOVED_FIELDS or key.startswith(REMOVED_PREFIXES)
                or (key in REQUIRED_ONCE and not field.value)
                or (key == "authentication-results" and self._claims_to_be_ours(field)))

    def _claims_to_be_ours(self, field: HeaderField) -> bool:
        """An Authentication-Results field whose authserv-id is our host name: only we may
        write those, and ours are added after this step."""
        authserv_id = _COMMENT.sub(" ", field.value).split(";", 1)[0].split()
        return bool(authserv_id) and authserv_id[0].lower().rstrip(".") == self.hostname.lower()

    def _merged_field(self, key: str, fields: list[HeaderField]) -> Iterator[HeaderField]:
        same = [field for field in fields if field.key == key]
        if key == "from":
            yield self._from_field(same[0].name)
            return
        if key in ADDRESS_LISTS:
            yield from self._participants_field(same)
            return
        mailboxes = _distinct_mailboxes(same)
        if mailboxes:  # an empty or unreadable reply field is dropped
            value = ", ".join(self._reverse_mailbox(mb) for mb in mailboxes.values())
            yield HeaderField.build(same[0].name, value, self.eol)

    def _participants_field(self, same: list[HeaderField]) -> Iterator[HeaderField]:
        """To/Cc/Bcc: every participant but the alias becomes a reverse address named like
        From, so that reply-all from the owner's client goes out through the alias too.
        A list that names nobody ("undisclosed-recipients:;") stays as it is."""
        mailboxes = _distinct_mailboxes(same)
        if not mailboxes:
            values = [field.value for field in same if field.value]
            yield same[0] if len(same) == 1 else HeaderField.build(
                same[0].name, ", ".join(values), self.eol)
            return
        value = ", ".join(self._participant(mb) for mb in mailboxes.values())
        yield HeaderField.build(same[0].name, value, self.eol)

    def _participant(self, mailbox: Mailbox) -> str:
        if mailbox.address.lower() == self.alias_address.lower():
            return format_mailbox(mailbox.name[:NAME_LIMIT], mailbox.address)
        named = Mailbox(mailbox.name[:NAME_LIMIT], mailbox.address)
        display = sender_display_name(named, self.name_format)
        return format_mailbox(display, self.reverse(mailbox.address, named.name))

    def _from_field(self, name: str) -> HeaderField:
        display = sender_display_name(self.sender, self.name_format)
        return HeaderField.build(name, format_mailbox(display, self.sender_reverse), self.eol)

    def _reverse_mailbox(self, mailbox: Mailbox) -> str:
        name = mailbox.name[:NAME_LIMIT]
        return format_mailbox(name, self._reverse_address(mailbox.address, name))

    def _reverse_address(self, address: str, name: str) -> str:
        if address.lower() == self.alias_address.lower():
            return address  # answering the alias itself reveals nothing
        return self.reverse(address, name)

    def _list_field(self, field: HeaderField) -> Iterator[HeaderField]:
        # RFC 2369: URLs in angle brackets, whitespace inside them is to be ignored.
        urls = ["".join(url.split())
                for url in _ANGLE_URL.findall(field.value)[:LIST_URL_LIMIT]]
        if not any(_is_mailto(url) for url in urls):
            yield field
            return
        kept = [url for url in map(self._reverse_url, urls) if url]
        if kept:
            yield HeaderField.build(field.name, ", ".join(f"<{url}>" for url in kept), self.eol)

    def _reverse_url(self, url: str) -> str | None:
        """A mailto: URL aimed at reverse addresses (subject and body kept, extra recipients
        dropped); None when it names no usable address. Other URLs are kept."""
        if not _is_mailto(url):
            return url
        target, _, query = url[len("mailto:"):].partition("?")
        addresses = [urllib.parse.unquote(part).strip()
                     for part in target.split(",")[:LIST_URL_LIMIT]]
        reversed_ = [self._reverse_address(a, "") for a in addresses if is_plausible_address(a)]
        if not reversed_:
            return None
        params = [p for p in query.split("&") if p and urllib.parse.unquote(
            p.split("=", 1)[0]).lower() not in _MAILTO_ADDRESS_PARAMS]
        return "mailto:" + ",".join(reversed_) + ("?" + "&".join(params) if params else "")


def _distinct_mailboxes(same: list[HeaderField]) -> dict[str, Mailbox]:
    """The first ADDRESS_LIMIT distinct addresses of `same`, by lower-cased address."""
    mailboxes: dict[str, Mailbox] = {}
    for mailbox in (mb for field in same for mb in parse_mailboxes(field.value)):
        mailboxes.setdefault(mailbox.address.lower(), mailbox)
        if len(mailboxes) == ADDRESS_LIMIT:
            break
    return mailboxes


def _is_mailto(url: str) -> bool:
    return url[:7].lower() == "mailto:"
