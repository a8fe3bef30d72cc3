"""One logging setup for every process: key=value lines by default, JSON on request.

    log.info("message stored", extra=fields(queue_id=qid, decision="forward", reply=250))

gives (MAILCLOAK_LOG_FORMAT=text)

    time=2026-01-02T03:04:05.678Z level=info logger=mailcloak.smtpd msg="message stored" \
queue_id=4F2A... decision=forward reply=250

or one JSON object per line (MAILCLOAK_LOG_FORMAT=json). Every line, its fields and any
traceback pass through `scrub_addresses` on the way out, so an address that slipped into a
message (a remote server's error text, an exception) is redacted like the ones that were
redacted on purpose.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

from mailcloak.observability.redaction import scrub_addresses
from mailcloak.settings import Config

FIELDS = "mailcloak_fields"  # the LogRecord attribute that carries structured fields
_RESERVED = frozenset({"time", "level", "logger", "msg", "exc"})


def fields(**values: object) -> dict[str, dict[str, object]]:
    """The `extra=` of a log call with structured fields."""
    return {FIELDS: values}


class _StructuredFormatter(logging.Formatter):
    """The parts of a record every format shows, addresses scrubbed."""

    def parts(self, record: logging.LogRecord) -> dict[str, object]:
        parts: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": scrub_addresses(record.getMessage()),
        }
        for name, value in (getattr(record, FIELDS, None) or {}).items():
            key = f"field_{name}" if name in _RESERVED else name
            parts[key] = scrub_addresses(value) if isinstance(value, str) else value
        if record.exc_info:
            parts["exc"] = scrub_addresses(self.formatException(record.exc_info))
        elif record.exc_text:
            parts["exc"] = scrub_addresses(record.exc_text)
        return parts


class KeyValueFormatter(_StructuredFormatter):
    """logfmt: `key=value` pairs, values quoted when they hold spaces, quotes or `=`."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{key}={_logfmt_value(value)}"
                        for key, value in self.parts(record).items() if value is not None)


class JsonFormatter(_StructuredFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.parts(record), default=str, ensure_ascii=False)


def _logfmt_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\r\t'):
        return text
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def logging_config(config: Config) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary (also Django's LOGGING)."""
    formatter = JsonFormatter if config.log_format == "json" else KeyValueFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"mailcloak": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "mailcloak"}},
        "root": {"handlers": ["console"], "level": config.log_level.upper()},
        "loggers": {
            "django.request": {"level": "ERROR"},
            # aiosmtpd's own lines name full addresses and quote what clients send
            "mail.log": {"level": "ERROR"},
        },
    }


def configure_logging(config: Config) -> None:
    """Apply `logging_config` to this process (Django applies it at setup as LOGGING; the
    commands call this again so a process that never set up Django logs the same way)."""
    logging.config.dictConfig(logging_config(config))
