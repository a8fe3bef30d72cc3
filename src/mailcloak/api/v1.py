"""Version 1 of the REST API: the NinjaAPI object, its routers and its error responses.

Every error is JSON `{"detail": "one line"}`: 400 for a request the alias rules refuse,
401 without a valid token, 404 for ids that are not the caller's, 422 for malformed input,
429 when token requests come too fast.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError

from mailcloak.accounts import tokens
from mailcloak.aliases.services import AliasError
from mailcloak.api import account, aliases, domains, forwarded, quarantine
from mailcloak.api import tokens as token_routes
from mailcloak.api.auth import BearerToken

api = NinjaAPI(
    title="Mailcloak API",
    version="1",
    description="Manage your aliases. Authenticate with `Authorization: Bearer mc_...`; "
                "create a token with POST /api/v1/tokens or on the account's tokens page.",
    urls_namespace="api-v1",
    auth=BearerToken(),
    docs_url=None,  # the interactive docs load assets from a CDN; the schema is enough
)
api.add_router("", aliases.router)
api.add_router("", account.router)
api.add_router("", domains.router)
api.add_router("", token_routes.router)
api.add_router("", quarantine.router)
api.add_router("", forwarded.router)

REFUSAL_STATUS: dict[type[tokens.TokenRefused], int] = {
    tokens.TooManyAttempts: 429,
    tokens.EmailNotVerified: 403,
}


def _error(request: HttpRequest, detail: str, status: int) -> HttpResponse:
    return api.create_response(request, {"detail": detail}, status=status)


@api.exception_handler(AliasError)
def alias_refused(request: HttpRequest, exc: AliasError) -> HttpResponse:
    return _error(request, str(exc), 400)


@api.exception_handler(tokens.TokenRefused)
def token_refused(request: HttpRequest, exc: tokens.TokenRefused) -> HttpResponse:
    response = _error(request, str(exc), REFUSAL_STATUS.get(type(exc), 401))
    if isinstance(exc, tokens.TooManyAttempts):
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(AuthenticationError)
def unauthenticated(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = _error(request, "a valid API token is required (Authorization: Bearer mc_...)",
                      401)
    response["WWW-Authenticate"] = 'Bearer realm="mailcloak"'
    return response


@api.exception_handler(PermissionDenied)
def forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    # allauth's rate limiter refuses a request whose client address it cannot determine.
    return _error(request, str(exc) or "forbidden", 403)


@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, "not found", 404)


@api.exception_handler(ValidationError)
def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return _error(request, "; ".join(_describe(error) for error in exc.errors), 422)


def _describe(error: dict[str, Any]) -> str:
    """`{"loc": ["body", "data", "title"], "msg": "..."}` -> `title: ...`."""
    loc = [str(part) for part in error.get("loc") or ()]
    where = loc[2:] if loc[:1] == ["body"] else loc[1:]
    return f"{'.'.join(where) or (loc[0] if loc else 'request')}: {error.get('msg', 'invalid')}"
