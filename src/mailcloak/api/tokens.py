"""/tokens: trade an email and password (and TOTP code) for a new API token.

This is the one operation that takes no token; it is rate-limited like the login form.
"""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router
from ninja.responses import Status

from mailcloak.accounts import tokens
from mailcloak.api.schemas import TokenCreate, TokenOut, errors

router = Router(tags=["tokens"])


@router.post("/tokens", auth=None, response={201: TokenOut, **errors(400, 401, 403, 422, 429)},
             operation_id="create_token", summary="Create an API token (shown once)")
def create_token(request: HttpRequest, data: TokenCreate) -> Status[TokenOut]:
    row, token = tokens.issue_for_credentials(request, email=data.email, password=data.password,
                                              otp=data.otp, name=data.name)
    return Status(201, TokenOut(id=row.pk, name=row.name, token=token, created_at=row.created_at))
