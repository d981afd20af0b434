"""Logging for every process: structured, and never holding personal data.

``configure_logging`` is called once by each entry point (the CLI, the API app
factory, the scheduler). It installs one handler on the root logger that writes
readable text on a terminal and one JSON object per line everywhere else (in
production always: a log collector reads it).

Every handler we install carries ``RedactionFilter``. It rewrites the record
before any formatter sees it: the message with its arguments, the exception
with its traceback (exception messages and ``repr``s can hold a BSN) and any
``extra`` fields all go through ``adapter.redaction.redact``; ``extra`` fields
named after personal data (``bsn``, ``surname``, ``geslachtsnaam``, ...) are
dropped outright, and so are such keys inside a dict or list an ``extra`` field
holds, because a name or a birth date cannot be recognised in text. Our
formatters redact their final output once more, so a handler someone builds
with them but without the filter is still safe.

Other libraries' handlers (gunicorn's) get the same treatment through
``prepare_handler``.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Literal, TextIO

from adapter.redaction import redact

LogFormat = Literal["auto", "text", "json"]

# ``extra`` keys that name personal data: the value is dropped, whatever it holds. Also the source systems' own
# names (PASS/GPASS: voornaam, initialen, tussenvoegsel, achternaam; StUF back offices: voornamen, voorvoegsel,
# geslachtsnaam), compared without case, "_" or "-" ("firstName", "date-of-birth"), and the same keys inside a
# dict or list an ``extra`` field holds (a record logged whole).
PERSONAL_FIELDS = frozenset({
    "bsn", "first_name", "first_names", "initials", "surname", "surname_prefix", "last_name",
    "full_name", "birth_date", "date_of_birth", "geboortedatum", "voornaam", "achternaam",
    "voornamen", "voorletters", "initialen", "voorvoegsel", "tussenvoegsel", "geslachtsnaam",
    "burgerservicenummer",
})
REMOVED = "[removed]"
_PERSONAL_KEYS = frozenset(name.replace("_", "") for name in PERSONAL_FIELDS)
# How deep a logged container is searched for personal keys; deeper, it is dropped whole.
_MAX_DEPTH = 8

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_OURS = "_adapter_handler"


class RedactionFilter(logging.Filter):
    """Masks BSNs and pass numbers in a record, in place, and drops personal ``extra`` fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_adapter_redacted", False):
            return True  # a second handler on the same record: already done
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not lose the record
            message = f"{record.msg!r} (arguments did not match the format)"
        record.msg, record.args = redact(message), None
        if record.exc_info:
            exception_text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            # Formatters append exc_text when it is set; without exc_info they cannot re-render it unredacted.
            record.exc_text, record.exc_info = redact(exception_text), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key in _extra_keys(record):
            value = getattr(record, key)
            if is_personal_field(key):
                setattr(record, key, REMOVED)
            elif isinstance(value, str):
                setattr(record, key, redact(value))
            elif not isinstance(value, (bool, int, float, type(None))):
                setattr(record, key, redact(repr(_without_personal_fields(value))))
            elif isinstance(value, int) and not isinstance(value, bool) and len(str(abs(value))) >= 8:
                setattr(record, key, redact(str(value)))  # a BSN or pass number someone stored as a number
        record._adapter_redacted = True
        return True


def is_personal_field(name: object) -> bool:
    """Whether a field called ``name`` holds personal data (``PERSONAL_FIELDS``, in any spelling of case,
    "_" and "-")."""
    return isinstance(name, str) and name.lower().replace("_", "").replace("-", "") in _PERSONAL_KEYS


def _without_personal_fields(value: Any, depth: int = 0) -> Any:
    """``value`` with the values of personal keys in its dicts, and in the dicts of its lists, replaced."""
    if isinstance(value, Mapping):
        if depth >= _MAX_DEPTH:
            return REMOVED
        return {key: REMOVED if is_personal_field(key) else _without_personal_fields(item, depth + 1)
                for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        if depth >= _MAX_DEPTH:
            return REMOVED
        return [_without_personal_fields(item, depth + 1) for item in value]
    return value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _extra_keys(record):
            entry[key] = getattr(record, key)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        return redact(json.dumps(entry, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """For a person at a terminal: time, level, logger, message, then ``key=value`` extras."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = " ".join(f"{key}={getattr(record, key)}" for key in _extra_keys(record))
        if extras:
            first_line, newline, rest = text.partition("\n")
            text = f"{first_line} [{extras}]{newline}{rest}"
        return redact(text)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the moment of writing (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def prepare_handler(handler: logging.Handler, *, json_lines: bool) -> logging.Handler:
    """Give ``handler`` the redaction filter and one of our formatters; returns it."""
    if not any(isinstance(existing, RedactionFilter) for existing in handler.filters):
        handler.addFilter(RedactionFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    return handler


def use_json(log_format: LogFormat, *, production: bool, stream: TextIO | None = None) -> bool:
    if log_format != "auto":
        return log_format == "json"
    stream = stream or sys.stderr
    return production or not (hasattr(stream, "isatty") and stream.isatty())


def configure_logging(settings: Any = None) -> None:
    """Install (or replace) our root handler from ``settings`` (an ``adapter.settings.Settings``).

    Safe to call again: the CLI calls it once before the configuration is read
    and once after. Handlers others added to the root logger are left alone.
    """
    level = settings.logging.level if settings is not None else "INFO"
    log_format: LogFormat = settings.logging.format if settings is not None else "auto"
    production = settings is not None and not settings.is_development
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
    handler = prepare_handler(_StderrHandler(), json_lines=use_json(log_format, production=production))
    setattr(handler, _OURS, True)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    _route_uncaught_exceptions()


def _route_uncaught_exceptions() -> None:
    """A crash's traceback goes through the log handlers (and so the filter), not raw to stderr."""
    crash_log = logging.getLogger("adapter.crash")

    def log_uncaught(kind: type[BaseException], error: BaseException, traceback: TracebackType | None) -> None:
        if issubclass(kind, KeyboardInterrupt):
            sys.__excepthook__(kind, error, traceback)
            return
        crash_log.critical("uncaught exception; the process stops", exc_info=(kind, error, traceback))

    def log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
        crash_log.critical("uncaught exception in thread %s", args.thread.name if args.thread else "?",
                           exc_info=(args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback))

    sys.excepthook = log_uncaught
    threading.excepthook = log_uncaught_in_thread


def _extra_keys(record: logging.LogRecord) -> list[str]:
    return [key for key in vars(record) if key not in _STANDARD_ATTRIBUTES and not key.startswith("_")]
