"""Bearer-token authentication: `Authorization: Bearer mc_...`, one token per client.

The API accepts tokens only, never the session cookie, so no request to it can be forged
from another site and it needs no CSRF protection.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja.errors import AuthenticationError
from ninja.security import HttpBearer

from mailcloak.accounts.models import ApiToken, User

MAX_TOKEN_LENGTH = 128  # issued tokens are ~46 characters; don't hash arbitrary input


class BearerToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> User | None:
        token = token.strip()
        if not token.startswith(ApiToken.PREFIX) or len(token) > MAX_TOKEN_LENGTH:
            return None
        return ApiToken.authenticate(token)


def token_user(request: HttpRequest) -> User:
    """The user whose token authenticated this request."""
    user = getattr(request, "auth", None)
    if not isinstance(user, User):
        raise AuthenticationError()
    return user
