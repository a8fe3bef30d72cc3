"""/forwarded: mail forwarded to the token owner lately (metadata only), and the "Spam"
report for what the filter let through."""

from __future__ import annotations

from datetime import datetime

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Field, P, PathEx, Router, Schema

from mailcloak.api.auth import token_user
from mailcloak.api.quarantine import Limit, Offset
from mailcloak.api.schemas import MAX_ID, errors
from mailcloak.quarantine.forwarded import report_spam
from mailcloak.quarantine.models import Activity, ForwardedMail

router = Router(tags=["forwarded"])

MailId = PathEx[int, P(ge=1, le=MAX_ID, description="The forwarded-mail entry's id.")]


class ForwardedOut(Schema):
    id: int
    alias_id: int
    alias: str = Field(description="The alias address.")
    mail_from: str = Field(description="Envelope sender (empty for <>).")
    header_from: str
    subject: str
    score: float = Field(description="The spam score it was forwarded with.")
    forwarded_at: datetime = Field(alias="created_at")
    expires_at: datetime = Field(description="When this entry is deleted for good.")
    reported_spam_at: datetime | None

    @staticmethod
    def resolve_alias(mail: ForwardedMail) -> str:
        return mail.alias.address


class ForwardedPage(Schema):
    items: list[ForwardedOut]
    count: int
    limit: int
    offset: int


class SpamReportOut(Schema):
    detail: str
    learned: bool = Field(description="Whether the spam filter learned from it (the builtin "
                                      "engine can; engines that need the whole message cannot).")


@router.get("/forwarded", response={200: ForwardedPage, **errors(401, 422)},
            operation_id="list_forwarded",
            summary="Mail forwarded to you in the retention period, newest first")
def list_forwarded(request: HttpRequest, limit: Limit = 50,
                   offset: Offset = 0) -> dict[str, object]:
    mail = (ForwardedMail.objects.live().filter(user=token_user(request))
            .select_related("alias").defer("features"))
    return {"items": list(mail[offset:offset + limit]), "count": mail.count(),
            "limit": limit, "offset": offset}


@router.post("/forwarded/{mail_id}/spam", response={200: SpamReportOut, **errors(401, 404, 422)},
             operation_id="report_forwarded_spam",
             summary="Report forwarded mail as spam; the filter learns from it")
def report_forwarded_spam(request: HttpRequest, mail_id: MailId) -> dict[str, object]:
    user = token_user(request)
    mail = get_object_or_404(ForwardedMail.objects.live(), pk=mail_id, user=user)
    report = report_spam(user, mail, via=Activity.Via.API)
    detail = "reported as spam" if report.first else "already reported"
    return {"detail": detail, "learned": report.learned}
