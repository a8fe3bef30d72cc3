"""/domains: the domains the token owner can create aliases on, and their own domains.

Add a domain, read the records to publish and the last check, check it now, turn its
catch-all on or off, create aliases at any address on it once verified, remove it. Every
lookup is scoped to the token's user: someone else's domain id is simply not found (404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, P, PathEx, Router, Schema
from ninja.responses import Status

from mailcloak import settings as mailcloak_settings
from mailcloak.accounts.models import Mailbox, User
from mailcloak.aliases.domains import (
    add_domain,
    create_named_alias,
    delete_domain,
    records_to_publish,
    set_catch_all,
)
from mailcloak.aliases.models import Alias, Domain
from mailcloak.aliases.services import domains_for
from mailcloak.aliases.verification import check_domain_now
from mailcloak.api.auth import token_user
from mailcloak.api.schemas import (
    MAX_ID,
    AliasOut,
    DomainOut,
    Line,
    Notes,
    RecordId,
    RequestBody,
    Title,
    errors,
)

router = Router(tags=["domains"])

DomainId = PathEx[int, P(ge=1, le=MAX_ID, description="The domain id.")]
OneLine = r"^[^\x00-\x1f\x7f]*$"


class RecordOut(Schema):
    name: str
    type: str
    value: str
    purpose: str


class CheckOut(Schema):
    kind: str = Field(description="ownership, mx, spf, dkim, dmarc...")
    name: str
    status: str = Field(description="ok, missing, wrong or error")
    found: str
    expected: str
    fix: str = Field(description="What to change, when the status is not ok.")


class OwnDomainOut(Schema):
    id: int
    name: str
    verified: bool = Field(description="Ownership and MX proven: the domain receives mail.")
    verified_at: datetime | None
    checked_at: datetime | None
    failed_checks: int = Field(description="Failed checks in a row of a verified domain; "
                                           "past the grace period it loses verification.")
    active: bool = Field(description="False when the operator suspended the domain.")
    catch_all: bool = Field(description="Mail to an unknown address creates the alias.")
    records: list[RecordOut] = Field(description="Every record to publish.")
    checks: list[CheckOut] = Field(description="The result of the last check.")


class DomainCreate(RequestBody):
    name: Annotated[Line, Field(max_length=253, pattern=OneLine)] = Field(
        description="The domain, e.g. example.com.")


class DomainUpdate(RequestBody):
    catch_all: bool | None = None


class NamedAliasCreate(RequestBody):
    local_part: Annotated[Line, Field(max_length=64, pattern=OneLine)] = Field(
        description="The part before the @: 1-64 characters of a-z, 0-9, '.', '_', '-'.")
    title: Title = ""
    notes: Notes = ""
    mailbox_id: RecordId | None = Field(
        None, description="Verified mailbox to forward to; default: your first one.")


def _out(domain: Domain) -> OwnDomainOut:
    checks = [CheckOut(**{field: str(check.get(field, "")) for field in CheckOut.model_fields})
              for check in domain.check_results]
    records = [RecordOut(name=r.name, type=r.type, value=r.value, purpose=r.purpose)
               for r in records_to_publish(domain)]
    return OwnDomainOut(
        id=domain.pk, name=domain.name, verified=domain.verified_at is not None,
        verified_at=domain.verified_at, checked_at=domain.checked_at,
        failed_checks=domain.failed_checks, active=domain.active, catch_all=domain.catch_all,
        records=records, checks=checks)


def _own_domain(user: User, domain_id: int) -> Domain:
    return get_object_or_404(Domain, pk=domain_id, owner=user)


@router.get("/domains", response={200: list[DomainOut], **errors(401)}, tags=["account"],
            operation_id="list_domains",
            summary="Domains you can create aliases on")
def list_domains(request: HttpRequest) -> list[DomainOut]:
    default = mailcloak_settings.get().primary_domain
    return [DomainOut(name=domain.name, shared=domain.is_shared, default=domain.name == default)
            for domain in domains_for(token_user(request))]


@router.get("/domains/own", response={200: list[OwnDomainOut], **errors(401)},
            operation_id="list_own_domains",
            summary="Your own domains, verified or not, with the records to publish")
def list_own(request: HttpRequest) -> list[OwnDomainOut]:
    return [_out(domain) for domain in Domain.objects.filter(owner=token_user(request))]


@router.post("/domains", response={201: OwnDomainOut, **errors(400, 401, 422)},
             operation_id="add_domain",
             summary="Add your own domain; publish its records, then verify it")
def create(request: HttpRequest, data: DomainCreate) -> Status[OwnDomainOut]:
    return Status(201, _out(add_domain(token_user(request), data.name)))


@router.get("/domains/{domain_id}", response={200: OwnDomainOut, **errors(401, 404, 422)},
            operation_id="get_domain", summary="One of your own domains")
def read(request: HttpRequest, domain_id: DomainId) -> OwnDomainOut:
    return _out(_own_domain(token_user(request), domain_id))


@router.post("/domains/{domain_id}/verify",
             response={200: OwnDomainOut, **errors(400, 401, 404, 422)},
             operation_id="verify_domain",
             summary="Check the domain's DNS records now (verifies it when they are right)")
def verify(request: HttpRequest, domain_id: DomainId) -> OwnDomainOut:
    domain = _own_domain(token_user(request), domain_id)
    check_domain_now(domain)
    return _out(domain)


@router.patch("/domains/{domain_id}",
              response={200: OwnDomainOut, **errors(400, 401, 404, 422)},
              operation_id="update_domain", summary="Turn the domain's catch-all on or off")
def update(request: HttpRequest, domain_id: DomainId, data: DomainUpdate) -> OwnDomainOut:
    domain = _own_domain(token_user(request), domain_id)
    if data.catch_all is not None:
        set_catch_all(domain, data.catch_all)
    return _out(domain)


@router.post("/domains/{domain_id}/aliases",
             response={201: AliasOut, **errors(400, 401, 404, 422)},
             operation_id="create_domain_alias",
             summary="Create an alias at the address you choose on your verified domain")
def create_alias(request: HttpRequest, domain_id: DomainId,
                 data: NamedAliasCreate) -> Status[Alias]:
    user = token_user(request)
    domain = _own_domain(user, domain_id)
    mailbox = (get_object_or_404(Mailbox, user=user, pk=data.mailbox_id)
               if data.mailbox_id is not None else None)
    alias = create_named_alias(user, domain.name, data.local_part, mailbox=mailbox,
                               title=data.title, notes=data.notes)
    return Status(201, alias)


@router.delete("/domains/{domain_id}", response={204: None, **errors(400, 401, 404, 422)},
               operation_id="delete_domain",
               summary="Remove your domain; its aliases are deleted and never issued again")
def delete(request: HttpRequest, domain_id: DomainId) -> Status[None]:
    delete_domain(_own_domain(token_user(request), domain_id))
    return Status(204, None)
