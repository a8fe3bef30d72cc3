"""Token counts learned from owners' "spam" / "not spam" decisions, on top of the shipped
model. Rows hold counts and message digests only, never message content."""

from __future__ import annotations

from django.db import models


class LearnedToken(models.Model):
    """In how many learned spam and ham messages a token was seen."""

    token = models.BigIntegerField(primary_key=True)  # the token's 32-bit id (tokenize.token_ids)
    spam = models.IntegerField(default=0)
    ham = models.IntegerField(default=0)

    class Meta:
        verbose_name = "learned token"

    def __str__(self) -> str:
        return f"token {self.token}: {self.spam} spam, {self.ham} ham"


class LearnedMessage(models.Model):
    """A message learned once, so that learning it again with the other label moves it
    instead of counting it twice."""

    digest = models.CharField(max_length=64, unique=True)  # SHA-256 of the raw message
    is_spam = models.BooleanField()
    learned_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "learned message"

    def __str__(self) -> str:
        return f"{'spam' if self.is_spam else 'ham'} {self.digest[:12]}"
