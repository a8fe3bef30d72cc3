"""/domains and /mailboxes: what the token owner can create aliases on and forward to."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox
from mailcloak.aliases.services import domains_for
from mailcloak.api.auth import token_user
from mailcloak.api.schemas import DomainOut, MailboxOut, errors

router = Router()


@router.get("/domains", response={200: list[DomainOut], **errors(401)}, tags=["account"],
            operation_id="list_domains",
            summary="Domains you can create aliases on")
def list_domains(request: HttpRequest) -> list[DomainOut]:
    default = mailcloak_settings.get().primary_domain
    return [DomainOut(name=domain.name, shared=domain.is_shared, default=domain.name == default)
            for domain in domains_for(token_user(request))]


@router.get("/mailboxes", response={200: list[MailboxOut], **errors(401)}, tags=["account"],
            operation_id="list_mailboxes",
            summary="Your real addresses that aliases forward to")
def list_mailboxes(request: HttpRequest) -> list[MailboxOut]:
    mailboxes = Mailbox.objects.filter(user=token_user(request)).order_by("created_at", "id")
    return [MailboxOut(id=mailbox.id, email=mailbox.email, verified=mailbox.is_verified,
                       created_at=mailbox.created_at) for mailbox in mailboxes]
