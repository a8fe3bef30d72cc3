"""The MTA-STS policy file (RFC 8461) at https://mta-sts.DOMAIN/.well-known/mta-sts.txt.

Senders fetch it to learn that mail for DOMAIN must travel over TLS to our MX. Every domain we
take mail for (MAILCLOAK_DOMAINS and users' verified domains) shares one policy, built by
mailcloak.mail.dnsrecords, whose hash is the `id=` of the _mta-sts record `mailcloak dns` prints.

It is answered by a middleware placed first, before Django validates the Host header: in
production ALLOWED_HOSTS names only the web app's own host, and a user's domain can be
verified at any time. The host is checked here instead, against the domains we serve; every
other request passes through untouched.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.http.request import split_domain_port

from mailcloak import settings as mailcloak_settings
from mailcloak.mail.dnsrecords import MTA_STS_PATH, MTA_STS_PREFIX, mta_sts_policy

Handler = Callable[[HttpRequest], HttpResponse]


def policy_domain(request: HttpRequest) -> str:
    """The DOMAIN of an mta-sts.DOMAIN Host header ("" for any other host)."""
    host, _port = split_domain_port(request.META.get("HTTP_HOST", ""))
    return host.removeprefix(MTA_STS_PREFIX) if host.startswith(MTA_STS_PREFIX) else ""


def serves_domain(domain: str) -> bool:
    """Whether we take mail for `domain`, so it may publish our policy."""
    if not domain:
        return False
    if domain in mailcloak_settings.get().domains:
        return True
    from mailcloak.aliases.models import Domain

    return Domain.objects.accepting_mail().filter(name=domain).exists()


def policy_response(request: HttpRequest) -> HttpResponse:
    if not serves_domain(policy_domain(request)):
        return HttpResponse("no MTA-STS policy for this host\n", status=404,
                            content_type="text/plain; charset=utf-8")
    return HttpResponse(mta_sts_policy(mailcloak_settings.get()),
                        content_type="text/plain; charset=utf-8")


class MtaStsPolicyMiddleware:
    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path == MTA_STS_PATH and request.method in {"GET", "HEAD"}:
            return policy_response(request)
        return self.get_response(request)
