"""/quarantine: the token owner's held mail, its rejection log, and every quick action.

Lookups are scoped to the token's user and to rows within their retention: another user's
message id (or an expired one) is simply not found (404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Field, P, PathEx, QueryEx, Router, Schema
from ninja.responses import Status

from mailcloak.accounts.models import User
from mailcloak.aliases.models import BlockedSender
from mailcloak.api.auth import token_user
from mailcloak.api.schemas import MAX_ID, RecordId, RequestBody, errors
from mailcloak.quarantine import actions
from mailcloak.quarantine.actions import Outcome, QuarantineError
from mailcloak.quarantine.crypto import QuarantineKeyError
from mailcloak.quarantine.models import Activity, QuarantinedMessage, RejectionLog
from mailcloak.quarantine.store import message_bytes

router = Router(tags=["quarantine"])

MessageId = PathEx[int, P(ge=1, le=MAX_ID, description="The held message's id.")]
Limit = QueryEx[int, P(ge=1, le=200, description="Page size.")]
Offset = QueryEx[int, P(ge=0, le=MAX_ID, description="Entries to skip.")]
VIA = Activity.Via.API


class ReasonOut(Schema):
    code: str = Field(description="Stable identifier of the rule or signal, e.g. SPF_FAIL.")
    text: str = Field(description="What it found, in words for the owner.")
    score: float = Field(description="Points it added (negative for good signs).")


class HeldOut(Schema):
    id: int
    alias_id: int
    alias: str = Field(description="The alias address.")
    direction: Literal["inbound", "outbound"] = Field(
        description="`inbound`: sent to the alias, held instead of forwarded; `outbound`: "
                    "sent from it, held instead of sent.")
    mail_from: str = Field(description="Envelope sender (empty for <>).")
    header_from: str
    subject: str
    sent_at: datetime | None = Field(description="The message's Date field.")
    received_at: datetime
    expires_at: datetime = Field(description="When it is deleted for good.")
    size: int
    score: float
    top_reasons: list[ReasonOut]
    releasable: bool = Field(description="Whether POST .../release may forward it.")

    @staticmethod
    def resolve_alias(held: QuarantinedMessage) -> str:
        return held.alias.address

    @staticmethod
    def resolve_top_reasons(held: QuarantinedMessage) -> list[dict[str, object]]:
        return held.top_reasons()

    @staticmethod
    def resolve_releasable(held: QuarantinedMessage) -> bool:
        return actions.can_release(held, held.user)


class HeldDetailOut(HeldOut):
    reasons: list[ReasonOut] = Field(description="Every reason, highest score first.")
    authentication_results: str
    engine: str


class HeldPage(Schema):
    items: list[HeldOut]
    count: int = Field(description="Number of held messages matching the query.")
    limit: int
    offset: int


class RejectionOut(Schema):
    id: int
    alias_id: int
    mail_from: str
    header_from: str
    subject: str
    reason: str
    created_at: datetime
    expires_at: datetime


class RejectionPage(Schema):
    items: list[RejectionOut]
    count: int
    limit: int
    offset: int


class ActionOut(Schema):
    detail: str = Field(description="What was done, in one line.")


class BlockIn(RequestBody):
    what: Literal["address", "domain"] = Field(
        "address", description="Block the sender's address or its whole domain.")
    scope: Literal["alias", "all"] = Field(
        "alias", description="For the alias the message came to, or for all your aliases.")


class BlockOut(ActionOut):
    blocked_sender_id: int | None = Field(
        description="The new block, to undo it (DELETE .../blocked-senders/{id}); null when "
                    "it already existed.")


class DeleteIn(RequestBody):
    ids: list[RecordId] = Field([], max_length=1000, description="Held messages to delete.")
    everything: bool = Field(False, description="Delete every held message instead "
                                                "(of one alias or direction, if given).")
    alias_id: RecordId | None = None
    direction: Literal["inbound", "outbound"] | None = None


class DeletedOut(Schema):
    deleted: int


class PreferencesOut(Schema):
    quarantine_digest: Literal["off", "daily", "immediately"]
    spam_sensitivity: Literal["relaxed", "normal", "strict"]


class PreferencesIn(RequestBody):
    quarantine_digest: Literal["off", "daily", "immediately"] | None = None
    spam_sensitivity: Literal["relaxed", "normal", "strict"] | None = None


# --- reading -------------------------------------------------------------------------------


@router.get("/quarantine", response={200: HeldPage, **errors(401, 422)},
            operation_id="list_quarantine", summary="List your held mail, newest first")
def list_held(request: HttpRequest,
              alias_id: QueryEx[int | None, P(ge=1, le=MAX_ID,
                                              description="Only mail of this alias.")] = None,
              direction: QueryEx[Literal["inbound", "outbound"] | None,
                                 P(description="Only this direction.")] = None,
              limit: Limit = 50, offset: Offset = 0) -> dict[str, object]:
    held = _held(token_user(request))
    if alias_id is not None:
        held = held.filter(alias_id=alias_id)
    if direction is not None:
        held = held.filter(direction=direction)
    return {"items": list(held[offset:offset + limit]), "count": held.count(),
            "limit": limit, "offset": offset}


@router.get("/quarantine/rejections", response={200: RejectionPage, **errors(401, 422)},
            operation_id="list_rejections",
            summary="Mail refused on arrival (metadata only), newest first")
def list_rejections(request: HttpRequest, limit: Limit = 50,
                    offset: Offset = 0) -> dict[str, object]:
    rejections = RejectionLog.objects.live().filter(user=token_user(request))
    return {"items": list(rejections[offset:offset + limit]), "count": rejections.count(),
            "limit": limit, "offset": offset}


@router.get("/quarantine/preferences", response={200: PreferencesOut, **errors(401)},
            operation_id="get_quarantine_preferences",
            summary="Your digest frequency and spam sensitivity")
def get_preferences(request: HttpRequest) -> User:
    return token_user(request)


@router.patch("/quarantine/preferences", response={200: PreferencesOut, **errors(400, 401, 422)},
              operation_id="update_quarantine_preferences",
              summary="Change your digest frequency or spam sensitivity")
def update_preferences(request: HttpRequest, data: PreferencesIn) -> User:
    user = token_user(request)
    changes = data.model_dump(exclude_none=True)
    for field, value in changes.items():
        setattr(user, field, value)
    if changes:
        user.save(update_fields=list(changes))
    return user


@router.post("/quarantine/delete", response={200: DeletedOut, **errors(400, 401, 422)},
             operation_id="delete_held_messages",
             summary="Delete several held messages, or all of them")
def delete_many(request: HttpRequest, data: DeleteIn) -> dict[str, int] | Status[dict[str, str]]:
    user = token_user(request)
    selected = _held(user)
    if data.everything:
        if data.alias_id is not None:
            selected = selected.filter(alias_id=data.alias_id)
        if data.direction is not None:
            selected = selected.filter(direction=data.direction)
    elif data.ids:
        selected = selected.filter(pk__in=data.ids)
    else:
        return Status(400, {"detail": "give the ids to delete, or everything: true"})
    return {"deleted": actions.delete_messages(user, selected, via=VIA)}


@router.get("/quarantine/{message_id}", response={200: HeldDetailOut, **errors(401, 404, 422)},
            operation_id="get_held_message",
            summary="One held message: metadata, every reason, authentication results")
def read(request: HttpRequest, message_id: MessageId) -> QuarantinedMessage:
    return _own(request, message_id)


@router.get("/quarantine/{message_id}/raw", response={200: None, **errors(401, 404, 422, 500)},
            operation_id="get_held_message_raw",
            summary="Download the held message as it arrived (message/rfc822)",
            openapi_extra={"responses": {200: {
                "description": "The message, byte for byte.",
                "content": {"message/rfc822": {"schema": {"type": "string",
                                                          "format": "binary"}}}}}})
def raw(request: HttpRequest,
        message_id: MessageId) -> HttpResponse | Status[dict[str, str]]:
    held = _own(request, message_id)
    try:
        content = message_bytes(held)
    except QuarantineKeyError as exc:
        return Status(500, {"detail": str(exc)})
    response = HttpResponse(content, content_type="message/rfc822")
    response["Content-Disposition"] = f'attachment; filename="quarantined-{held.pk}.eml"'
    return response


# --- acting --------------------------------------------------------------------------------


@router.post("/quarantine/{message_id}/release",
             response={200: ActionOut, **errors(400, 401, 404, 422)},
             operation_id="release_held_message",
             summary="Not spam: forward it to your mailbox after all and teach the filter")
def release(request: HttpRequest,
            message_id: MessageId) -> dict[str, str] | Status[dict[str, str]]:
    held = _own(request, message_id)
    try:
        return _done(actions.release(held, token_user(request), via=VIA))
    except QuarantineError as exc:
        return Status(400, {"detail": str(exc)})


@router.post("/quarantine/{message_id}/block",
             response={200: BlockOut, **errors(400, 401, 404, 422)},
             operation_id="block_held_message_sender",
             summary="Block the sender (address or domain; this alias or all)")
def block(request: HttpRequest, message_id: MessageId,
          data: BlockIn) -> dict[str, object] | Status[dict[str, str]]:
    held = _own(request, message_id)
    try:
        outcome = actions.block_sender_of(held, token_user(request),
                                          whole_domain=data.what == "domain",
                                          all_aliases=data.scope == "all", via=VIA)
    except QuarantineError as exc:
        return Status(400, {"detail": str(exc)})
    return {"detail": outcome.message,
            "blocked_sender_id": outcome.undo.object_id if outcome.undo else None}


@router.delete("/quarantine/blocked-senders/{blocked_id}",
               response={200: ActionOut, **errors(401, 404, 422)},
               operation_id="undo_block", summary="Undo a block made from the quarantine")
def undo_block(request: HttpRequest,
               blocked_id: PathEx[int, P(ge=1, le=MAX_ID)]) -> dict[str, str]:
    user = token_user(request)
    blocked = get_object_or_404(BlockedSender.objects.select_related("alias"),
                                pk=blocked_id, user=user)
    return _done(actions.unblock(user, blocked, via=VIA))


@router.post("/quarantine/{message_id}/disable-alias",
             response={200: ActionOut, **errors(401, 404, 422)},
             operation_id="disable_held_message_alias",
             summary="Disable the alias the message was sent to or from")
def disable_alias(request: HttpRequest, message_id: MessageId) -> dict[str, str]:
    held = _own(request, message_id)
    return _done(actions.disable_alias(held.alias, token_user(request), via=VIA))


@router.delete("/quarantine/{message_id}", response={204: None, **errors(401, 404, 422)},
               operation_id="delete_held_message", summary="Delete a held message")
def delete(request: HttpRequest, message_id: MessageId) -> Status[None]:
    held = _own(request, message_id)
    actions.delete_messages(token_user(request), _held(held.user).filter(pk=held.pk), via=VIA)
    return Status(204, None)


# --- helpers ---------------------------------------------------------------------------------


def _held(user: User) -> QuerySet[QuarantinedMessage]:
    return (QuarantinedMessage.objects.live().filter(user=user)
            .select_related("alias", "user").defer("content"))


def _own(request: HttpRequest, message_id: int) -> QuarantinedMessage:
    held = QuarantinedMessage.objects.live().select_related("alias", "user")
    return get_object_or_404(held, pk=message_id, user=token_user(request))



def _done(outcome: Outcome) -> dict[str, str]:
    return {"detail": outcome.message}
