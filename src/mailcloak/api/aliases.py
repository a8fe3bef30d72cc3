"""/aliases: list, create, read, change and delete the token owner's aliases.

Every lookup is scoped to the token's user: someone else's alias id is simply not found (404),
so the API never confirms that an id exists.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import P, PathEx, QueryEx, Router
from ninja.responses import Status

from mailcloak.accounts.models import Mailbox, User
from mailcloak.aliases.models import Alias, Contact
from mailcloak.aliases.services import AliasError, create_alias, delete_alias
from mailcloak.api.auth import token_user
from mailcloak.api.schemas import (
    MAX_ID,
    AliasCreate,
    AliasOut,
    AliasPage,
    AliasUpdate,
    ContactCreate,
    ContactOut,
    errors,
)
from mailcloak.mail.contacts import contact_for

router = Router(tags=["aliases"])

AliasId = PathEx[int, P(ge=1, le=MAX_ID, description="The alias id.")]
LINE_PATTERN = r"^[^\x00-\x1f\x7f]*$"


@router.get("/aliases", response={200: AliasPage, **errors(401, 422)},
            operation_id="list_aliases", summary="List your aliases, newest first")
def list_aliases(
    request: HttpRequest,
    q: QueryEx[str, P(max_length=200, pattern=LINE_PATTERN,
                      description="Only aliases whose address, title or notes contain this.")] = "",
    limit: QueryEx[int, P(ge=1, le=200, description="Page size.")] = 50,
    offset: QueryEx[int, P(ge=0, le=MAX_ID, description="Aliases to skip.")] = 0,
) -> dict[str, object]:
    aliases = _aliases_of(token_user(request))
    if q := q.strip():
        aliases = aliases.filter(
            Q(address__icontains=q) | Q(title__icontains=q) | Q(notes__icontains=q))
    return {"items": list(aliases[offset:offset + limit]), "count": aliases.count(),
            "limit": limit, "offset": offset}


@router.post("/aliases", response={201: AliasOut, **errors(400, 401, 404, 422)},
             operation_id="create_alias", summary="Create an alias")
def create(request: HttpRequest, data: AliasCreate) -> Status[Alias]:
    user = token_user(request)
    mailbox = _own_mailbox(user, data.mailbox_id) if data.mailbox_id is not None else None
    alias = create_alias(user, domain=data.domain or None, prefix=data.prefix or None,
                         mailbox=mailbox, title=data.title, notes=data.notes)
    return Status(201, alias)


@router.get("/aliases/{alias_id}", response={200: AliasOut, **errors(401, 404, 422)},
            operation_id="get_alias", summary="Get an alias")
def read(request: HttpRequest, alias_id: AliasId) -> Alias:
    return _own_alias(token_user(request), alias_id)


@router.patch("/aliases/{alias_id}", response={200: AliasOut, **errors(400, 401, 404, 422)},
              operation_id="update_alias",
              summary="Change an alias: enable or disable it, edit its notes, move it")
def update(request: HttpRequest, alias_id: AliasId, data: AliasUpdate) -> Alias:
    user = token_user(request)
    alias = _own_alias(user, alias_id)
    changes = data.model_dump(exclude_none=True)
    if "mailbox_id" in changes:
        alias.mailbox = _own_mailbox(user, changes.pop("mailbox_id"))
        if not alias.mailbox.is_verified:
            raise AliasError(f"{alias.mailbox.email} is not verified yet")
        changes["mailbox"] = alias.mailbox
    for field, value in changes.items():
        setattr(alias, field, value)
    if changes:
        alias.save(update_fields=list(changes))
    return alias


@router.get("/aliases/{alias_id}/contacts",
            response={200: list[ContactOut], **errors(401, 404, 422)},
            operation_id="list_contacts",
            summary="List an alias's contacts and the reverse aliases to write to them")
def list_contacts(request: HttpRequest, alias_id: AliasId) -> list[Contact]:
    return list(_own_alias(token_user(request), alias_id).contacts.all())


@router.post("/aliases/{alias_id}/contacts",
             response={201: ContactOut, **errors(400, 401, 404, 422)},
             operation_id="create_contact",
             summary="Start a conversation from an alias: the contact and its reverse alias")
def create_contact(request: HttpRequest, alias_id: AliasId,
                   data: ContactCreate) -> Status[Contact]:
    alias = _own_alias(token_user(request), alias_id)
    try:
        validate_email(data.email.strip())
    except ValidationError:
        raise AliasError(f"{data.email!r} is not a valid email address") from None
    return Status(201, contact_for(alias, data.email, data.name.strip()))


@router.delete("/aliases/{alias_id}", response={204: None, **errors(401, 404, 422)},
               operation_id="delete_alias",
               summary="Delete an alias; its address is never issued again")
def delete(request: HttpRequest, alias_id: AliasId) -> Status[None]:
    delete_alias(_own_alias(token_user(request), alias_id))
    return Status(204, None)


def _aliases_of(user: User) -> QuerySet[Alias]:
    return Alias.objects.filter(user=user).select_related("domain", "mailbox")


def _own_alias(user: User, alias_id: int) -> Alias:
    return get_object_or_404(_aliases_of(user), pk=alias_id)


def _own_mailbox(user: User, mailbox_id: int) -> Mailbox:
    return get_object_or_404(Mailbox, user=user, pk=mailbox_id)
