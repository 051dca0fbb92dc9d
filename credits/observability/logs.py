"""Log lines as JSON objects (production) or text, each with the current request id.

:func:`configure_logging` installs one handler on the root logger, writing to
standard error where the container runtime collects it. A JSON line carries
``time``, ``level``, ``logger``, ``message``, ``request_id`` (or null) and, when
an exception is logged, ``exception``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TextIO

from credits.observability.request_ids import current_request_id
from credits.settings import LogFormat, Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# Marks our handler, so configuring twice (a test, a reload) replaces it, not doubles it.
_HANDLER_NAME = "credits-observability"


class RequestIdFilter(logging.Filter):
    """Stamps every record with the request id current where it was logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line; a message's newlines stay inside its string."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, ensure_ascii=False, default=str)


def make_handler(log_format: LogFormat, stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RequestIdFilter())
    if log_format is LogFormat.JSON:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(
    settings: Settings, *, stream: TextIO | None = None, level: int | str | None = None
) -> None:
    """Routes the root logger through one handler in the settings' format, at ``level``
    (default INFO, or the logger's own when it is already lower)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    root.addHandler(make_handler(settings.effective_log_format, stream))
    if level is not None:
        root.setLevel(level)
    elif root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
