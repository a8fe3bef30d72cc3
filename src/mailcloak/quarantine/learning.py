"""Teaching the spam engine from the owner's decisions ("not spam" releases, "spam")."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from asgiref.sync import async_to_sync

from mailcloak.mail.spam.engine import get_engine
from mailcloak.mail.spam.verdict import EngineUnavailable

log = logging.getLogger(__name__)


def teach(raw: bytes, *, is_spam: bool) -> bool:
    """Tell the configured engine that `raw` is spam or wanted mail; False when it could not
    learn (engine down, no learning store). The owner's action stands either way."""
    label = "spam" if is_spam else "ham"
    try:
        engine = get_engine()
        learn_sync = getattr(engine, "learn_sync", None)  # the builtin engine's: no thread hop
        if callable(learn_sync):
            learn_sync(raw, is_spam=is_spam)
        else:
            async_to_sync(engine.learn)(raw, is_spam=is_spam)
    except EngineUnavailable as exc:
        log.warning("spam engine could not learn a message as %s: %s", label, exc)
        return False
    except Exception as exc:  # an engine's failure must never undo the owner's action
        log.warning("spam engine could not learn a message as %s: %s", label,
                    type(exc).__name__)
        return False
    return True


def teach_features(features: Sequence[int], *, digest: str, is_spam: bool) -> bool:
    """Teach the engine from a verdict's features (Verdict.features) when the message itself
    is gone; False when the configured engine cannot learn that way."""
    engine = get_engine()
    learn_features = getattr(engine, "learn_features", None)
    if not features or not callable(learn_features):
        return False
    try:
        learn_features(features, is_spam=is_spam, digest=digest)
    except Exception as exc:  # the owner's report stands either way
        log.warning("spam engine could not learn reported features: %s", type(exc).__name__)
        return False
    return True
