"""Teaching the spam engine from the owner's decisions ("not spam" releases, "spam")."""

from __future__ import annotations

import logging

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
