"""Link rules: text that shows one site and leads to another, numeric hosts, shorteners."""

from __future__ import annotations

import re

from mailcloak.mail.spam.features import MessageView, registered_domain, url_host
from mailcloak.mail.spam.rules.base import Hit, Rule

# Link text that looks like an address: "paypal.com", "https://www.paypal.com/signin".
_SHOWN_HOST = re.compile(r"^(?:https?://)?(?:www\.)?((?:[a-z0-9-]+\.)+[a-z]{2,24})(?:[/:?#]\S*)?$",
                         re.IGNORECASE)
_IP_HOST = re.compile(r"^(?:\d{1,3}\.){3}\d{1,3}$|^\[?[0-9a-f:]+\]?$", re.IGNORECASE)
SHORTENERS = frozenset({
    "bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "cutt.ly", "rebrand.ly",
    "shorturl.at", "tiny.cc", "buff.ly", "rb.gy", "t.ly", "s.id", "v.gd", "shorte.st",
})
_WEB = ("http://", "https://", "www.")


def link_text_mismatch(view: MessageView) -> Hit | None:
    for link in view.links:
        shown = _SHOWN_HOST.match(link.text.strip())
        if shown is None or not link.href.lower().startswith(_WEB):
            continue
        shown_domain = registered_domain(shown.group(1).lower())
        target = url_host(link.href)
        if target and registered_domain(target) != shown_domain:
            return Hit(2.5, f"Link text shows {shown_domain} but points to "
                            f"{registered_domain(target)}")
    return None


def numeric_link(view: MessageView) -> Hit | None:
    for url in view.urls:
        host = url_host(url)
        if host and _IP_HOST.match(host) and url.lower().startswith(_WEB):
            return Hit(1.5, f"Link to a numeric address ({host}) instead of a name")
    return None


def shortened_link(view: MessageView) -> Hit | None:
    for url in view.urls:
        host = url_host(url)
        if host.removeprefix("www.") in SHORTENERS:
            return Hit(0.8, f"Link through a URL shortener ({host}) hides where it leads")
    return None


def punycode_link(view: MessageView) -> Hit | None:
    for url in view.urls:
        host = url_host(url)
        if host.startswith("xn--") or ".xn--" in host:
            return Hit(1.0, f"Link to an internationalised name that may imitate another ({host})")
    return None


def links_to_sender(view: MessageView) -> Hit | None:
    """A good sign: every web link leads to the sender's own domain. Senders who forge their
    address, or send for someone else's site, rarely manage that."""
    if not view.from_domain:
        return None
    sender = registered_domain(view.from_domain)
    hosts = {url_host(url) for url in view.urls if url.lower().startswith(_WEB)}
    hosts.discard("")
    if hosts and all(registered_domain(host) == sender for host in hosts):
        return Hit(-1.0, f"Every link leads to the sender's own domain ({sender})")
    return None


RULES: tuple[Rule, ...] = (
    Rule("LINK_TEXT_MISMATCH", "Link text shows one site, the link leads to another",
         link_text_mismatch),
    Rule("LINK_NUMERIC_HOST", "A link to a numeric IP address", numeric_link),
    Rule("LINK_SHORTENER", "A link through a URL shortener", shortened_link),
    Rule("LINK_PUNYCODE", "A link to an internationalised (punycode) name", punycode_link),
    Rule("LINKS_TO_SENDER", "Every link leads to the sender's own domain (a good sign)",
         links_to_sender),
)
