"""One logging setup for the gateway, uvicorn and SQLAlchemy: ``text`` for people, ``json`` for
log collectors (``LINKGATE_LOG_FORMAT``), at ``LINKGATE_LOG_LEVEL``.

Every record written while a request runs carries its request id (``request_id``), read from
``linkgate.observation``'s context variable, so a warning deep in a resolver can be joined to
the access line of its request. The access line itself is written by
``linkgate.observation.ObserveRequests``; uvicorn's own access log is switched off, since it
knows neither the request id nor the GraphQL operation.

Nothing logged here may hold a secret: the access line names the path without its query
string (``/invoices/download?token=…`` carries a signed link), SQL is logged without its
parameters (``hide_parameters`` on the engine) and only at DEBUG.
"""

from __future__ import annotations

import json
import logging
import logging.config
import time
from typing import Any, Literal

LogFormat = Literal["text", "json"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]

# The attributes every LogRecord has; anything else on a record came from ``extra=`` and is
# written as a field of its own in JSON (and appended as key=value in text).
_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    """Puts the current request's id on every record (``-`` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            from linkgate.observation import current_request_id

            record.request_id = current_request_id() or "-"
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value for key, value in vars(record).items()
        if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")
        # uvicorn's colour hints are not data.
        and key != "color_message"
    }


class TextFormatter(logging.Formatter):
    """``2026-12-07T10:00:00.123Z INFO linkgate.access [request-id] message key=value…``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record)

    def formatMessage(self, record: logging.LogRecord) -> str:
        # A client can put a newline or a terminal escape into what is logged (a request's
        # path is percent-decoded): one record stays one line, and shows what was sent.
        record.message = _printable(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        said = getattr(record, "in_message", ())  # fields the message already shows
        extras = [
            f"{key}={text_value(value)}" for key, value in _extras(record).items()
            if value is not None and key not in said and key != "in_message"
        ]
        if extras:
            head, newline, rest = line.partition("\n")  # a traceback stays below the line
            line = f"{head} {' '.join(extras)}{newline}{rest}"
        return line


def utc_time(record: logging.LogRecord) -> str:
    """``2026-12-07T10:00:00.123Z``: UTC, to the millisecond, in every format."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _printable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def text_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        value = ",".join(map(str, value))
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if not text or not text.isprintable() or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)  # quoted, control characters escaped
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the extras, and
    the exception as one string (a traceback is one record, never many lines)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            **{key: value for key, value in _extras(record).items() if key != "in_message"},
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def logging_config(log_format: LogFormat = "text", level: LogLevel = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary; also handed to uvicorn (``log_config``),
    which applies it in each ``--workers`` process."""
    formatter = "json" if log_format == "json" else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {
            "text": {"()": TextFormatter},
            "json": {"()": JsonFormatter},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": formatter,
                "filters": ["request_id"],
            },
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's loggers carry their own handlers by default: route them through ours.
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": True},
            # Statements (never their parameters) only when debugging.
            "sqlalchemy.engine": {"level": "INFO" if level == "DEBUG" else "WARNING"},
            "sqlalchemy.pool": {"level": "WARNING"},
            "alembic": {"level": "WARNING" if level != "DEBUG" else "INFO"},
            "aiosqlite": {"level": "WARNING"},
            # An HTTP client logs every URL it calls at INFO, query string and all.
            "httpx": {"level": "WARNING"},
            # Two INFO lines per API call, with request details: ours say what matters.
            "stripe": {"level": "WARNING"},
            # fontTools logs each step of subsetting an invoice PDF's fonts at INFO.
            "fontTools": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            "asyncio": {"level": "WARNING"},
        },
    }


def configure_logging(log_format: LogFormat = "text", level: LogLevel = "INFO") -> None:
    logging.config.dictConfig(logging_config(log_format, level))
