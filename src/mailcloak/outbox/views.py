"""The local outbox page: every mail Mailcloak could not send in local mode.

It shows verification and password-reset links, so it exists only in local mode and only for
clients on this machine. A message is shown as text, never rendered as HTML; only links into
this web app are made clickable.
"""

from __future__ import annotations

import email
import email.policy
import ipaddress
import re
from dataclasses import dataclass, field
from email.message import EmailMessage, Message

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.links import is_public_link
from mailcloak.outbox.models import LocalOutboxMessage

MESSAGES_PER_PAGE = 50
URL_PATTERN = re.compile(r"https?://[^\s<>\"']+")
# Headers a proxy adds: behind one, REMOTE_ADDR is the proxy's loopback address, not the client's.
PROXY_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")
SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID")


def is_loopback_client(request: HttpRequest) -> bool:
    if any(header in request.META for header in PROXY_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address.is_loopback


def check_access(request: HttpRequest) -> None:
    if mailcloak_settings.get().is_production:
        raise Http404("The local outbox exists only in local mode.")
    if not is_loopback_client(request):
        raise PermissionDenied("The local outbox is only shown to this machine.")


@dataclass
class Segment:
    text: str
    href: str = ""


@dataclass
class Part:
    content_type: str
    segments: list[Segment] = field(default_factory=list)
    filename: str = ""
    size: int = 0

    @property
    def is_text(self) -> bool:
        return self.content_type == "text/plain"

    @property
    def is_html(self) -> bool:
        return self.content_type == "text/html"


def link_segments(text: str) -> list[Segment]:
    """Split `text` into plain runs and URLs; only URLs into this web app get an href."""
    segments: list[Segment] = []
    position = 0
    for match in URL_PATTERN.finditer(text):
        url = match.group().rstrip(".,;:!?)]")
        segments.append(Segment(text[position:match.start()]))
        segments.append(Segment(url, href=url if is_public_link(url) else ""))
        position = match.start() + len(url)
    segments.append(Segment(text[position:]))
    return [segment for segment in segments if segment.text]


def part_text(part: Message) -> str:
    try:
        return str(part.get_content()) if isinstance(part, EmailMessage) else ""
    except (LookupError, UnicodeError, ValueError):
        # Unknown or wrong charset: show what can be decoded rather than nothing.
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


def message_parts(message: Message) -> list[Part]:
    parts: list[Part] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        content_type = part.get_content_type()
        if part.get_content_disposition() != "attachment" and content_type == "text/plain":
            parts.append(Part(content_type, link_segments(part_text(part))))
        elif part.get_content_disposition() != "attachment" and content_type == "text/html":
            parts.append(Part(content_type, [Segment(part_text(part))]))
        else:
            payload = part.get_payload(decode=True)
            parts.append(Part(content_type, filename=part.get_filename() or "",
                              size=len(payload) if isinstance(payload, bytes) else 0))
    return parts


def shown_headers(message: Message) -> list[tuple[str, str]]:
    headers = []
    for name in SHOWN_HEADERS:
        try:
            value = message.get(name)
        except (IndexError, ValueError):  # a header too broken to parse
            value = None
        if value is not None:
            headers.append((name, str(value)))
    return headers


def outbox_list(request: HttpRequest) -> HttpResponse:
    check_access(request)
    page = Paginator(LocalOutboxMessage.objects.defer("content"), MESSAGES_PER_PAGE) \
        .get_page(request.GET.get("page"))
    return render(request, "outbox/list.html", {"page_obj": page})


def outbox_detail(request: HttpRequest, pk: int) -> HttpResponse:
    check_access(request)
    stored = get_object_or_404(LocalOutboxMessage, pk=pk)
    message = email.message_from_bytes(bytes(stored.content), policy=email.policy.default)
    return render(request, "outbox/detail.html", {
        "stored": stored, "headers": shown_headers(message), "parts": message_parts(message),
    })
