"""GET /metrics for Prometheus, behind a bearer token.

Without MAILCLOAK_METRICS_TOKEN the endpoint does not exist (404); with it, a request without
the token gets 401. The figures name no address and no content, but queue sizes and remote
domains are still nobody else's business.
"""

from __future__ import annotations

import hmac

from django.http import Http404, HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from mailcloak import settings as mailcloak_settings
from mailcloak.observability.metrics import CONTENT_TYPE, exposition


def bearer_token(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    expected = mailcloak_settings.get().metrics_token
    if not expected:
        raise Http404("metrics are off (MAILCLOAK_METRICS_TOKEN is not set)")
    if not hmac.compare_digest(bearer_token(request).encode(), expected.encode()):
        response = HttpResponse("401 Unauthorized: send Authorization: Bearer "
                                "<MAILCLOAK_METRICS_TOKEN>\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="mailcloak metrics"'
        return response
    return HttpResponse(exposition(), content_type=CONTENT_TYPE)
