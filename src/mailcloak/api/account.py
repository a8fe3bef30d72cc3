"""/mailboxes: the token owner's real addresses that aliases forward to (domains: domains.py)."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from mailcloak.accounts.models import Mailbox
from mailcloak.api.auth import token_user
from mailcloak.api.schemas import MailboxOut, errors

router = Router()


@router.get("/mailboxes", response={200: list[MailboxOut], **errors(401)}, tags=["account"],
            operation_id="list_mailboxes",
            summary="Your real addresses that aliases forward to")
def list_mailboxes(request: HttpRequest) -> list[MailboxOut]:
    mailboxes = Mailbox.objects.filter(user=token_user(request)).order_by("created_at", "id")
    return [MailboxOut(id=mailbox.id, email=mailbox.email, verified=mailbox.is_verified,
                       created_at=mailbox.created_at) for mailbox in mailboxes]
