"""Request and response bodies of the REST API (they are also its OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from ninja.schema import DjangoGetter
from pydantic import AfterValidator, ConfigDict, model_validator

from mailcloak.aliases.models import Alias, Contact
from mailcloak.aliases.services import is_sender_blocked

MAX_ID = 2**63 - 1  # the largest database id; anything above can only be a bad request
DisabledAction = Literal["reject", "drop"]


def _no_surrogates(value: str) -> str:
    # Lone surrogates survive JSON decoding but cannot be stored as UTF-8.
    if any("\ud800" <= char <= "\udfff" for char in value):
        raise ValueError("must be valid Unicode text")
    return value


def _line(max_length: int) -> object:
    """One line of text: no control characters."""
    return Field(max_length=max_length, pattern=r"^[^\x00-\x1f\x7f]*$")


Line = Annotated[str, AfterValidator(_no_surrogates)]
Notes = Annotated[str, AfterValidator(_no_surrogates),
                  Field(max_length=10_000, pattern=r"^[^\x00]*$")]
Title = Annotated[Line, _line(200)]
RecordId = Annotated[int, Field(ge=1, le=MAX_ID)]


class RequestBody(Schema):
    """A JSON object; unknown fields are refused, so a misspelt field cannot go unnoticed."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        # Schema reads attributes of any object, so `[]` or `"x"` would otherwise pass as {}.
        # With extra="forbid" ninja validates the raw body first, then again wrapped in a
        # DjangoGetter: the raw pass is the one that must be an object.
        if not isinstance(value, dict | DjangoGetter):
            raise ValueError("expected a JSON object")
        return value


class ErrorOut(Schema):
    detail: str = Field(description="What went wrong, in one line.")


def errors(*statuses: int) -> dict[int, type[ErrorOut]]:
    """Response declarations for the error statuses an operation can answer with."""
    return dict.fromkeys(statuses, ErrorOut)


class AliasOut(Schema):
    id: int
    address: str
    domain: str
    enabled: bool
    title: str
    display_name: str = Field(description="The name shown in From when sending from the alias.")
    notes: str
    created_at: datetime
    mailbox: str = Field(description="The verified address mail to this alias is forwarded to.")
    mailbox_id: int
    forwarded_count: int
    blocked_count: int
    replied_count: int
    disabled_action: DisabledAction = Field(
        description="What happens to mail while the alias is disabled: `reject` it "
                    "(550 5.1.1) or accept and silently `drop` it.")

    @staticmethod
    def resolve_domain(alias: Alias) -> str:
        return alias.domain.name

    @staticmethod
    def resolve_mailbox(alias: Alias) -> str:
        return alias.mailbox.email


class ContactOut(Schema):
    id: int
    email: str = Field(description="The contact's real address.")
    display_name: str
    reverse_address: str = Field(description="Write to this address from your verified "
                                             "mailbox to send to the contact from the alias.")
    blocked: bool = Field(description="Whether one of your blocked-sender rules (for this "
                                      "alias or all of them) stops the contact's mail.")
    forwarded_count: int
    replied_count: int
    created_at: datetime

    @staticmethod
    def resolve_blocked(contact: Contact) -> bool:
        return is_sender_blocked(contact.alias, contact.email)


class ContactCreate(RequestBody):
    email: Annotated[Line, _line(254)] = Field(description="The address to write to.")
    name: Title = Field("", description="Their name, shown in To.")


class AliasPage(Schema):
    items: list[AliasOut]
    count: int = Field(description="Number of aliases matching the query, on every page.")
    limit: int
    offset: int


class AliasCreate(RequestBody):
    prefix: Annotated[Line, _line(64)] | None = Field(
        None, description="Readable start of the address; a random suffix is appended. "
                          "Omit for a fully random address.")
    domain: Annotated[Line, _line(253)] | None = Field(
        None, description="One of your alias domains (GET /domains); default: the first.")
    title: Title = ""
    notes: Notes = ""
    mailbox_id: RecordId | None = Field(
        None, description="Verified mailbox to forward to; default: your first one.")


class AliasUpdate(RequestBody):
    """Fields left out (or null) are not changed."""

    enabled: bool | None = None
    title: Title | None = None
    display_name: Title | None = Field(None, description="The name shown in From when "
                                                         "sending from the alias.")
    notes: Notes | None = None
    disabled_action: DisabledAction | None = None
    mailbox_id: RecordId | None = None


class DomainOut(Schema):
    name: str
    shared: bool = Field(description="An instance domain rather than one of your own.")
    default: bool = Field(description="Used when creating an alias without a domain.")


class MailboxOut(Schema):
    id: int
    email: str
    verified: bool = Field(description="Only verified mailboxes receive forwarded mail.")
    created_at: datetime


class TokenCreate(RequestBody):
    email: Annotated[Line, _line(254)]
    password: Annotated[str, AfterValidator(_no_surrogates), Field(max_length=4096)]
    otp: Annotated[Line, _line(32)] | None = Field(
        None, description="Current TOTP code; required when two-factor authentication is on.")
    name: Annotated[Line, _line(100)] = Field(
        "API token", description="A label to recognise the token by on the tokens page.")


class TokenOut(Schema):
    id: int
    name: str
    token: str = Field(description="The bearer token. It is shown only this once.")
    created_at: datetime
