"""Small helpers shared by the web app's views."""

from __future__ import annotations

from django.http import HttpRequest, QueryDict

from mailcloak.accounts.models import User


class AuthenticatedRequest(HttpRequest):
    """The request type of views behind @login_required."""

    user: User


def form_data(request: HttpRequest) -> QueryDict | None:
    """Posted data, or None for a GET: an empty POST must still bind (and validate) a form."""
    return request.POST if request.method == "POST" else None
